"""DPO step time and peak memory at GPT-2-small size, with the reference's log-probs precomputed
once and computed on the fly (and with LoRA, where the reference is the adapters-off policy).

A 124M GPT-2 (random weights, real GPT-2 tokenizer) runs `rlhf train-dpo` on the package's
synthetic descriptiveness pairs (prompt + response 20-60 tokens): batch 8 pairs, 6 steps. Each
variant is its own process (own peak RSS); they alternate over the repeats. Step time is the
median over steps 2-6 of the time inside `dpo_update` (the first step warms up); the one-off
reference pass before training is timed on its own.

    .venv/bin/python benchmarks/dpo_step.py [--repeats 2]

Needs ../shared/data beside the repository (the GPT-2 tokenizer).
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VARIANTS = {
    "precomputed": ["dpo.reference_logprobs=precompute"],
    "on the fly": ["dpo.reference_logprobs=on_the_fly"],
    "LoRA r=16, precomputed": ["lora.r=16", "lora.merge=false"],
    "LoRA r=16, on the fly": ["lora.r=16", "lora.merge=false",
                              "dpo.reference_logprobs=on_the_fly"],
}
STEPS = 6


def make_policy(folder: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(GPT2Config()).save_pretrained(folder)
    AutoTokenizer.from_pretrained(SHARED / "gpt2-tokenizer").save_pretrained(folder)
    return folder


def child(spec: dict) -> None:
    """One DPO run in this process; prints its timings and peak RSS as JSON."""
    import rlhf.stages.dpo.train as dpo_train
    from rlhf.config import DPOConfig, load_config

    steps: list[float] = []
    reference: list[float] = []

    def timed(function, into):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            result = function(*args, **kwargs)
            into.append(time.perf_counter() - started)
            return result
        return wrapper

    dpo_train.dpo_update = timed(dpo_train.dpo_update, steps)
    dpo_train.compute_table = timed(dpo_train.compute_table, reference)
    dpo_train.train_dpo(load_config(DPOConfig, ROOT / "configs/dpo/tiny.yaml", spec["overrides"]))
    print("RESULT " + json.dumps({
        "step_s": statistics.median(steps[1:]), "reference_pass_s": sum(reference),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)


def launch(name: str, policy: Path, folder: Path) -> dict:
    overrides = [f"run.output_dir={folder / name.replace(' ', '_')}", "run.progress=false",
                 f"model.name_or_path={policy}", "data.max_samples=64", "train.batch_size=8",
                 "train.eval_batch_size=16", f"train.max_steps={STEPS}", "run.eval_every=0",
                 "run.save_every=0", "train.learning_rate=1e-6", *VARIANTS[name]]
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(
        {"overrides": overrides})], cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        policy = make_policy(Path(tmp) / "policy")
        for repeat in range(args.repeats):
            for name in VARIANTS:
                results[name].append(launch(name, policy, Path(tmp) / str(repeat)))
                print(name, results[name][-1], flush=True)
    print(f"\nCPU: {cpu_name()}; GPT-2-small, batch 8 pairs, {STEPS} steps, "
          f"{args.repeats} runs per variant (medians)\n")
    print("| reference | step s | reference pass before training s | peak RSS MB |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r['step_s'] for r in runs):.2f} | "
              f"{statistics.median(r['reference_pass_s'] for r in runs):.1f} | "
              f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f} |")
    out = ROOT / "benchmarks" / "results" / "dpo_step.json"
    out.write_text(json.dumps({"cpu": cpu_name(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
