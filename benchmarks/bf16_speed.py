"""One PPO iteration at GPT-2-small size in float32 and in bf16, alternating in one run.

The workload of `ppo_step.py` (GPT-2-small policy and value, RoBERTa-base reward, real dolly
prompts, batch 8, N new tokens, 4 PPO epochs x 1 minibatch) runs as `rlhf train-ppo` with
`run.mixed_precision=no` and `bf16`, in the order fp32, bf16, fp32, bf16, ... so that the
machine's drift hits both alike, each run in a fresh process (its own allocator state and
peak RSS). Each run's per-phase seconds are the medians of its own metrics.jsonl over the
timed iterations (after a warm-up iteration); the table gives the median over the rounds, the
fp32/bf16 ratio per phase and each side's peak RSS. The CPU and whether it has the
bf16 matrix units (AMX, AVX512-BF16) head the table: without them bf16 is not expected to help.

    .venv/bin/python benchmarks/bf16_speed.py [--rounds 2] [--iterations 2] [--new-tokens 32]
        [--overrides lora.r=16 ...]

Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_trl import cpu_flags, machine  # noqa: E402
from ppo_step import make_models, run_training  # noqa: E402

PRECISIONS = {"fp32": "run.mixed_precision=no", "bf16": "run.mixed_precision=bf16"}


def one_run(args) -> None:
    """The child process: one train-ppo run; prints its phases and peak RSS as JSON."""
    phases = run_training(args.folder, args.models / "policy", args.models / "reward", args,
                          PRECISIONS[args.one], *args.overrides)
    phases["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(phases))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per run")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write every run's phases here")
    parser.add_argument("--overrides", nargs="*", default=[],
                        help="extra train-ppo settings for both sides, e.g. lora.r=16")
    parser.add_argument("--one", choices=list(PRECISIONS), help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one_run(args)
    import torch

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in PRECISIONS}
    with tempfile.TemporaryDirectory(prefix="bf16-speed-") as tmp:
        folder = Path(tmp)
        make_models(folder)
        for round_index in range(args.rounds):
            for name in PRECISIONS:
                child = subprocess.run(
                    [sys.executable, __file__, "--one", name, "--models", str(folder),
                     "--folder", str(folder / f"{name}-{round_index}"),
                     "--iterations", str(args.iterations), "--new-tokens", str(args.new_tokens),
                     "--overrides", *args.overrides],
                    capture_output=True, text=True, check=True)
                phases = json.loads(child.stdout.strip().splitlines()[-1])
                runs[name].append(phases)
                print(f"[round {round_index + 1}] {name}: "
                      f"{phases['time/iteration']:.2f} s per iteration", flush=True)
    print(f"\nmachine: {machine()}; bf16 units: {cpu_flags()}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"GPT-2-small policy + value, RoBERTa-base reward; batch 8, {args.new_tokens} new "
          f"tokens, 4 PPO epochs x 1 minibatch; {args.rounds} rounds x {args.iterations} timed "
          "iterations (median)\n")
    print("| phase | fp32 s | bf16 s | fp32 / bf16 |\n|---|---|---|---|")
    for key in runs["fp32"][0]:
        if not key.startswith("time/"):
            continue
        fp32 = statistics.median(r[key] for r in runs["fp32"])
        bf16 = statistics.median(r[key] for r in runs["bf16"])
        print(f"| `{key}` | {fp32:.2f} | {bf16:.2f} | {fp32 / bf16:.2f}x |")
    fp32, bf16 = (max(r["peak_rss_gb"] for r in runs[name]) for name in PRECISIONS)
    print(f"| peak RSS (GiB, largest run) | {fp32:.2f} | {bf16:.2f} | {fp32 / bf16:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "cpu_flags": cpu_flags(),
                                         "runs": runs}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
