"""The memory plan (`rlhf plan`) against the measured peak resident memory of real runs.

Each workload is a real `rlhf train-*` run in its own process (`--child`), so its peak RSS
(`resource.getrusage`) is its own; the prediction is `rlhf.planning.plan_config` on the same
config, made before anything loads. Models have random weights and real tokenizers:

- PPO at GPT-2-small (124M) and GPT-2-medium size (355M: n_embd 1024, 24 layers, 16 heads)
  with a RoBERTa-base-size reward model (125M, its own tokenizer), real dolly prompts (at
  most 64 tokens), batch 8, 32 new tokens, 2 PPO epochs x 1 minibatch, 2 iterations;
- critic-free (GRPO, 2 prompts x 4 samples, no reference: algo.kl_penalty=none and with one),
  SFT and reward-model training at GPT-2-small / RoBERTa-base size on Anthropic HH dialogues
  cut to 128 tokens (long dialogues: every batch reaches the limit);
- PPO with LoRA (r 16 on every linear layer, policy and value), with gradient checkpointing
  and with the shared value head (model.value=shared).

A workload whose prediction exceeds --max-rss is not run (the machine is shared).

    .venv/bin/python benchmarks/memory_plan.py [--workloads ppo-small ppo-medium ...]

Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DOLLY = SHARED / "dolly-15k-prompts-oneill"
HH = SHARED / "hh-rlhf-harmless-base-test" / "test.jsonl.gz"
RESULTS = ROOT / "benchmarks" / "results" / "memory_plan.json"
ITERATIONS = 2

PPO = ["data.template=dolly", f"data.path={DOLLY}", "data.max_prompt_tokens=64",
       "model.reward_template=pair", "generate.max_new_tokens=32", "generate.temperature=0.7",
       "ppo.ppo_epochs=2", "ppo.num_minibatches=1", "ppo.score_normalization=none",
       f"ppo.total_episodes={8 * ITERATIONS}", "train.batch_size=8", "samples_every=0"]
CRITIC_FREE = ["data.template=dolly", f"data.path={DOLLY}", "data.max_prompt_tokens=64",
               "model.reward_template=pair", "generate.max_new_tokens=32",
               "generate.temperature=0.7", "generate.num_samples=4", "algo.advantage=grpo",
               "algo.update_epochs=2", "algo.num_minibatches=1",
               f"algo.total_prompts={2 * ITERATIONS}", "train.batch_size=2", "samples_every=0"]
SUPERVISED = [f"data.path={HH}", "data.max_length=128", "data.max_samples=64",
              "train.batch_size=8", "train.eval_batch_size=16", "train.max_steps=4",
              "train.epochs=1"]

WORKLOADS = {  # name -> (stage, policy size, overrides)
    "ppo-small": ("ppo", "small", PPO),
    "ppo-medium": ("ppo", "medium", PPO),
    "ppo-small-lora": ("ppo", "small", [*PPO, "lora.r=16"]),
    "ppo-medium-lora": ("ppo", "medium", [*PPO, "lora.r=16"]),
    "ppo-small-checkpointing": ("ppo", "small", [*PPO, "train.gradient_checkpointing=true"]),
    "ppo-medium-checkpointing": ("ppo", "medium",
                                 [*PPO, "train.gradient_checkpointing=true"]),
    "ppo-small-lora-checkpointing": ("ppo", "small", [*PPO, "lora.r=16",
                                                      "train.gradient_checkpointing=true"]),
    "ppo-small-shared": ("ppo", "small", [*PPO, "model.value=shared"]),
    "ppo-medium-shared": ("ppo", "medium", [*PPO, "model.value=shared"]),
    "ppo-medium-lora-checkpointing": ("ppo", "medium", [*PPO, "lora.r=16",
                                                        "train.gradient_checkpointing=true"]),
    "ppo-medium-lora-micro4": ("ppo", "medium", [*PPO, "lora.r=16", "train.micro_batch_size=4"]),
    "ppo-medium-lora-shared": ("ppo", "medium", [*PPO, "lora.r=16", "model.value=shared"]),
    "ppo-medium-lora-shared-checkpointing": ("ppo", "medium", [
        *PPO, "lora.r=16", "model.value=shared", "train.gradient_checkpointing=true"]),
    "critic_free-small": ("critic_free", "small", [*CRITIC_FREE, "algo.kl_penalty=loss"]),
    "critic_free-medium": ("critic_free", "medium", [*CRITIC_FREE, "algo.kl_penalty=loss"]),
    "critic_free-medium-no-kl": ("critic_free", "medium",
                                 [*CRITIC_FREE, "algo.kl_penalty=none"]),
    "sft-small": ("sft", "small", SUPERVISED),
    "reward-small": ("reward", "small", [*SUPERVISED, "data.template=pair"]),
}


def make_models(folder: Path) -> None:
    """Random-weight GPT-2-small and -medium policies and a RoBERTa-base reward model, each
    with its real tokenizer (the small policy and reward as in benchmarks/ppo_step.py)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from ppo_step import make_models as make_small
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config

    make_small(folder)
    torch.manual_seed(0)
    medium = GPT2Config(n_embd=1024, n_layer=24, n_head=16)
    AutoModelForCausalLM.from_config(medium).save_pretrained(folder / "medium")
    AutoTokenizer.from_pretrained(SHARED / "gpt2-tokenizer").save_pretrained(folder / "medium")


def stage_config(name: str, models: Path, run_dir: Path):
    """(stage, loaded config) of a workload."""
    from rlhf.config import load_config
    from rlhf.config.docs import STAGES

    stage, size, overrides = WORKLOADS[name]
    policy = models / ("policy" if size == "small" else "medium")
    common = [f"run.output_dir={run_dir}", "run.progress=false", "run.save_every=0",
              "run.mixed_precision=no"]
    if stage in ("ppo", "critic_free"):
        common += [f"model.policy={policy}", f"model.reward={models / 'reward'}"]
    else:
        trained = policy if stage == "sft" else models / "reward"
        common += [f"model.name_or_path={trained}"]
    return stage, load_config(STAGES[stage], None, [*common, *overrides])


def child(spec: dict) -> None:
    """One training run in this process; prints its peak RSS as JSON."""
    stage, cfg = stage_config(spec["name"], Path(spec["models"]), Path(spec["run_dir"]))
    if stage == "ppo":
        from rlhf.stages.ppo.train import train_ppo as train
    elif stage == "critic_free":
        from rlhf.stages.critic_free.train import train_critic_free as train
    elif stage == "sft":
        from rlhf.stages.sft import train_sft as train
    else:
        from rlhf.stages.reward import train_reward as train
    started = time.perf_counter()
    train(cfg)
    print("RESULT " + json.dumps({
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "seconds": time.perf_counter() - started}), flush=True)


def launch(args: list[str]) -> str:
    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout


def predict(name: str, models: Path, run_dir: Path) -> dict:
    """The plan's peak and its parts for a workload (this process loads no weights)."""
    from rlhf.planning import plan_config

    stage, cfg = stage_config(name, models, run_dir)
    plan = plan_config(stage, cfg, 1, "cpu")
    return {"stage": stage, "predicted": plan.peak, "phase": plan.peak_phase.name,
            "held": plan.held, "phase_bytes": plan.peak_phase.bytes,
            "models": {m.role: {"params": m.params, "trainable": m.trainable}
                       for m in plan.models}}


def measure(name: str, models: Path, folder: Path, max_rss: int) -> dict:
    row = predict(name, models, folder / name) | {"workload": name}
    if row["predicted"] > max_rss:
        return row | {"measured": None,
                      "skipped": f"predicted above --max-rss {max_rss / 2**30:.0f} GiB"}
    spec = {"name": name, "models": str(models), "run_dir": str(folder / name)}
    try:
        output = launch(["--child", json.dumps(spec)])
    except RuntimeError as error:
        return row | {"measured": None, "skipped": f"the run failed: {str(error)[-300:]}"}
    result = json.loads(output.split("RESULT ", 1)[1])
    error = (row["predicted"] - result["peak_rss"]) / result["peak_rss"]
    return row | {"measured": result["peak_rss"], "error": error, "seconds": result["seconds"],
                  **iteration_times(folder / name)}


def iteration_times(run_dir: Path) -> dict:
    """Seconds of the last iteration (the first one also warms the allocator) and its phases,
    for the RL stages (they log `time/*` per iteration)."""
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    rows = [row for row in rows if "time/iteration" in row]
    if not rows:
        return {}
    return {"iteration_s": rows[-1]["time/iteration"],
            "phases_s": {key: value for key, value in rows[-1].items()
                         if key.startswith("time/") and key != "time/iteration"}}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def table(rows: list[dict]) -> str:
    mib = 2**20
    lines = ["| workload | predicted peak (MiB) | phase | measured peak RSS (MiB) | error |",
             "|---|---|---|---|---|"]
    for row in rows:
        measured = f"{row['measured'] / mib:.0f}" if row.get("measured") else \
            f"not run: {row['skipped']}"
        error = f"{100 * row['error']:+.1f} %" if row.get("measured") else "-"
        lines.append(f"| {row['workload']} | {row['predicted'] / mib:.0f} | {row['phase']} | "
                     f"{measured} | {error} |")
    return "\n".join(lines)


def time_table(rows: list[dict]) -> str:
    """Peak memory and seconds per iteration of the RL runs, each against the first row."""
    timed = [row for row in rows if row.get("iteration_s")]
    if not timed:
        return ""
    first = timed[0]
    lines = ["| workload | peak RSS (MiB) | x first | s/iteration | x first | update s |",
             "|---|---|---|---|---|---|"]
    for row in timed:
        lines.append(
            f"| {row['workload']} | {row['measured'] / 2**20:.0f} | "
            f"{row['measured'] / first['measured']:.2f} | {row['iteration_s']:.1f} | "
            f"{row['iteration_s'] / first['iteration_s']:.2f} | "
            f"{row['phases_s'].get('time/update', float('nan')):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS),
                        choices=list(WORKLOADS))
    parser.add_argument("--max-rss", type=float, default=13.0,
                        help="GiB: do not run a workload predicted above this (default: about "
                        "14 GB, what a process may take on the shared 24 GB build machine)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--make-models", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.make_models:
        return make_models(Path(args.make_models))
    rows = []
    with tempfile.TemporaryDirectory(prefix="memory-plan-") as tmp:
        models = Path(tmp) / "models"
        launch(["--make-models", str(models)])  # in a child: the big weights never live here
        for name in args.workloads:
            rows.append(measure(name, models, Path(tmp), int(args.max_rss * 2**30)))
            print(name, {k: v for k, v in rows[-1].items() if k != "models"}, flush=True)
    import torch

    Path(args.out).write_text(json.dumps({"cpu": cpu_name(), "torch": torch.__version__,
                                          "rows": rows}, indent=1) + "\n")
    print(table(rows) + "\n\n" + time_table(rows) + f"\n\nCPU: {cpu_name()}")


if __name__ == "__main__":
    main()
