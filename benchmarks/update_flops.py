"""How close a PPO epoch runs to this machine's matrix-multiply ceiling (CPU model-FLOPs use).

One PPO epoch at GPT-2-small size, as `train-ppo` runs it: policy and value forward and
backward over [left-padded dolly prompt (<= 64 tokens) | N response tokens], batch 8, then
the fused AdamW step. torch's profiler counts its matrix-multiply FLOPs and their time; the
epoch's median wall time gives the achieved rate. The ceiling is the best float32 matrix
multiply rate measured on the same machine, on GPT-2's own GEMM shapes and a square one.
With --precision bf16 the epoch runs as a bf16 `train-ppo` runs it (bf16 autocast, eager
attention, freed host memory kept) and the ceiling is the best bf16 matrix-multiply rate.

    .venv/bin/python benchmarks/update_flops.py [--new-tokens 32] [--repeats 3] [--precision bf16]

Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_trl import cpu_flags, machine  # noqa: E402
from ppo_step import DOLLY, make_models, ppo_epoch  # noqa: E402

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")
# (rows, inner, columns): square, and GPT-2-small's projections over a batch of 8 x 96 tokens.
GEMM_SHAPES = [(2048, 2048, 2048), (768, 768, 2304), (768, 768, 3072), (768, 3072, 768)]


def gemm_rate(rows: int, inner: int, columns: int, repeats: int = 10,
              dtype: str = "fp32") -> float:
    """GFLOP/s of a (rows x inner) @ (inner x columns) in `dtype`, after warm-up."""
    import torch

    kind = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(rows, inner, dtype=kind), torch.randn(inner, columns, dtype=kind)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * rows * inner * columns * repeats / (time.perf_counter() - start) / 1e9


def epoch_runner(new_tokens: int, folder: Path, precision: str = "fp32"):
    """A function running one PPO epoch (forward, backward, optimizer step) on fixed inputs."""
    from contextlib import nullcontext

    import torch

    from rlhf.data.batching import left_pad
    from rlhf.data.prompts import load_prompts
    from rlhf.engine.host_memory import keep_freed_host_memory
    from rlhf.engine.optim import adamw_with_schedule
    from rlhf.models import load_policy, set_attention
    from rlhf.value_models import value_model_from_policy

    policy_path, _ = make_models(folder)
    policy, tokenizer = load_policy(str(policy_path))
    keep_freed_host_memory()  # as train-ppo runs on a CPU (run.keep_host_memory)
    if precision == "bf16":  # and model.attention=auto
        set_attention(policy, "eager")
    value = value_model_from_policy(policy)
    _, ids = load_prompts(str(DOLLY), template="dolly", tokenizer=tokenizer,
                          max_prompt_tokens=64, max_samples=8)
    query_ids, query_mask = left_pad(ids, tokenizer.pad_token_id)
    response = torch.randint(0, len(tokenizer), (8, new_tokens),
                             generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(response, dtype=torch.bool)
    optimizer, _ = adamw_with_schedule(
        list(policy.parameters()) + list(value.parameters()), learning_rate=1e-6,
        weight_decay=0.0, scheduler="constant", warmup_ratio=0.0, total_steps=1)

    def epoch(half: bool = precision == "bf16") -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16) if half else nullcontext():
            ppo_epoch(policy, value, optimizer, query_ids, query_mask, response, mask)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    ceiling = {shape: gemm_rate(*shape, dtype=args.precision) for shape in GEMM_SHAPES}
    with tempfile.TemporaryDirectory(prefix="update-flops-") as tmp:
        epoch = epoch_runner(args.new_tokens, Path(tmp), args.precision)
        epoch()  # warm-up
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            epoch()
            seconds.append(time.perf_counter() - start)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            epoch()
        # The FLOPs are counted on an epoch without autocast: under autocast the profiler
        # records each forward matrix multiply twice (autocast's wrapper and the op inside:
        # 1,119 GFLOP instead of 842), and the model's FLOPs do not depend on the precision.
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as counted:
            epoch(half=False)
    events = prof.key_averages()
    flops = sum(event.flops for event in counted.key_averages())
    matmul_s = sum(event.self_cpu_time_total for event in events if event.key in MATMULS) / 1e6
    profiled_s = sum(event.self_cpu_time_total for event in events) / 1e6
    wall = statistics.median(seconds)
    best = max(ceiling.values())

    print(f"\nmachine: {machine()}; bf16 units: {cpu_flags()}; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"| {args.precision} GEMM (rows x inner x columns) | GFLOP/s |\n|---|---|")
    for (rows, inner, columns), rate in ceiling.items():
        print(f"| {rows} x {inner} x {columns} | {rate:.0f} |")
    print(f"\nOne PPO epoch, GPT-2-small policy + value, batch 8, {args.new_tokens} new tokens "
          f"(median of {args.repeats}):\n")
    print("| quantity | value |\n|---|---|")
    print(f"| matrix-multiply FLOPs (torch.profiler) | {flops / 1e9:.0f} GFLOP |")
    print(f"| epoch wall time | {wall:.2f} s |")
    print(f"| achieved rate | {flops / wall / 1e9:.0f} GFLOP/s |")
    print(f"| share of the best GEMM rate above ({best:.0f} GFLOP/s) | "
          f"{flops / wall / 1e9 / best:.0%} |")
    print(f"| time in matrix multiplies (profiled epoch) | {matmul_s / profiled_s:.0%} |")
    print(f"| matrix multiplies' own rate | {flops / matmul_s / 1e9:.0f} GFLOP/s |")
    print(f"per-epoch seconds: {[round(s, 2) for s in seconds]}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
