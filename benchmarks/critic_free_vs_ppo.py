"""PPO side by side with the critic-free methods (RLOO, GRPO, Dr. GRPO, REINFORCE++): score gain,
KL to the reference, time per iteration and peak memory, several seeds, in one run.

Two workloads, each method with the same number of responses per iteration:

- `demo`: the shipped tiny configs (configs/ppo/tiny.yaml, configs/critic_free/<method>_tiny.yaml):
  the package's synthetic scene openings, a 2-layer policy, the vivid-word rule as reward; 62
  iterations of 32 responses.
- `gpt2`: a GPT-2-small-sized policy (124M, random weights, the real GPT-2 tokenizer) and a
  125M RoBERTa reward model with its own tokenizer (random weights: the cross-tokenizer path),
  real dolly prompts, 8 responses of 32 new tokens per iteration, 2 update epochs, 4
  iterations, `run.mixed_precision=auto` (fp32 on a CPU, bf16 on a GPU that has it). Random
  weights make its score meaningless: it measures time and memory.

Each run is its own process (`--child`), so its peak resident memory is its own; the score
gain is the raw score's mean over the last 5 iterations minus the first 5 (the first and last
iteration for `gpt2`).

    .venv/bin/python benchmarks/critic_free_vs_ppo.py [--seeds 3] [--workloads demo gpt2]

Needs ../shared/data beside the repository for `gpt2`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["ppo", "rloo", "grpo", "dr_grpo", "reinforce_pp"]
GPT2_ITERATIONS = 4


def config_overrides(workload: str, method: str, seed: int, folder: Path) -> tuple[str, list]:
    """(config file, overrides) of one run."""
    stage_config = ROOT / ("configs/ppo/tiny.yaml" if method == "ppo"
                           else f"configs/critic_free/{method}_tiny.yaml")
    common = [f"run.output_dir={folder / 'run'}", f"run.seed={seed}", "run.progress=false",
              "run.save_every=0", "samples_every=0"]
    if workload == "demo":
        return str(stage_config), common
    models = folder.parent / "models"
    shared = ROOT.parent / "shared" / "data"
    gpt2 = [f"data.path={shared / 'dolly-15k-prompts-oneill'}", "data.template=dolly",
            "data.max_prompt_tokens=64", f"model.policy={models / 'policy'}",
            f"model.reward={models / 'reward'}", "model.reward_template=pair",
            "generate.max_new_tokens=32", "generate.temperature=0.7", "run.mixed_precision=auto"]
    if method == "ppo":
        return str(stage_config), [*common, *gpt2, "train.batch_size=8", "ppo.ppo_epochs=2",
                                   "ppo.num_minibatches=1", "ppo.score_normalization=none",
                                   f"ppo.total_episodes={8 * GPT2_ITERATIONS}",
                                   "train.learning_rate=1e-5"]
    samples = 1 if method == "reinforce_pp" else 4
    return str(stage_config), [*common, *gpt2, f"train.batch_size={8 // samples}",
                               f"generate.num_samples={samples}", "algo.update_epochs=2",
                               "algo.num_minibatches=1", "train.learning_rate=1e-5",
                               f"algo.total_prompts={8 // samples * GPT2_ITERATIONS}"]


def make_gpt2_models(folder: Path) -> None:
    """The random-weight GPT-2-small policy and RoBERTa reward model, as in ppo_step.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ppo_step import make_models

    make_models(folder)


def child(spec: dict) -> None:
    """One training run in this process; prints its summary as JSON."""
    from rlhf.config import CriticFreeConfig, PPOConfig, load_config

    if spec["method"] == "ppo":
        from rlhf.stages.ppo.train import train_ppo as train
        schema = PPOConfig
    else:
        from rlhf.stages.critic_free.train import train_critic_free as train
        schema = CriticFreeConfig
    train(load_config(schema, spec["config"], spec["overrides"]))
    rows = [json.loads(line) for line in (Path(spec["folder"]) / "run" / "metrics.jsonl").open()]
    window = 5 if len(rows) >= 10 else 1
    raw = [r["objective/raw_score"] for r in rows]
    print("RESULT " + json.dumps({
        "score_gain": statistics.mean(raw[-window:]) - statistics.mean(raw[:window]),
        "final_kl": statistics.mean(r["objective/kl"] for r in rows[-window:]),
        "seconds_per_iteration": statistics.median(r["time/iteration"] for r in rows[1:]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "iterations": len(rows)}), flush=True)


def launch(workload: str, method: str, seed: int, folder: Path) -> dict:
    config, overrides = config_overrides(workload, method, seed, folder)
    spec = {"method": method, "config": config, "overrides": overrides, "folder": str(folder)}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{workload}/{method}/seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def cell(runs: list[dict], key: str, digits: int) -> str:
    """'mean ± std' of a result over seeds."""
    values = [r[key] for r in runs]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def table(results: dict, seeds: int) -> str:
    """Markdown: mean ± std over seeds per method; memory relative to PPO's."""
    lines = ["| workload | method | score gain | KL (nats/seq) | s / iteration | peak RSS (MB) "
             "| RSS vs PPO |", "|---|---|---|---|---|---|---|"]
    for workload, by_method in results.items():
        ppo_rss = statistics.mean(r["peak_rss_mb"] for r in by_method["ppo"])
        for method, runs in by_method.items():
            rss = statistics.mean(r["peak_rss_mb"] for r in runs)
            lines.append(f"| {workload} | {method} | {cell(runs, 'score_gain', 3)} | "
                         f"{cell(runs, 'final_kl', 2)} | "
                         f"{cell(runs, 'seconds_per_iteration', 2)} | "
                         f"{rss:.0f} | {rss - ppo_rss:+.0f} |")
    return "\n".join(lines) + f"\n\n{seeds} seeds each; CPU: {cpu_name()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=["demo", "gpt2"])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/critic_free_vs_ppo.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if "gpt2" in args.workloads:
            make_gpt2_models(Path(tmp) / "models")
        for workload in args.workloads:
            for seed in range(args.seeds):  # seeds outermost: drift hits every method alike
                for method in args.methods:
                    folder = Path(tmp) / f"{workload}-{method}-{seed}"
                    result = launch(workload, method, seed, folder)
                    results.setdefault(workload, {}).setdefault(method, []).append(result)
                    print(workload, method, seed, result, flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results, args.seeds))


if __name__ == "__main__":
    main()
