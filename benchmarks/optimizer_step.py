"""AdamW step time: the fused kernel (what rlhf uses) against the default multi-tensor one.

One step over a GPT-2-small-sized set of float32 parameters (124M, in GPT-2's tensor shapes)
with random gradients; alternating A B A B, median of the repeats.

    .venv/bin/python benchmarks/optimizer_step.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


def gpt2_small_shapes() -> list[tuple[int, ...]]:
    shapes = [(50257, 768), (1024, 768)]
    for _ in range(12):
        shapes += [(768,), (768,), (768, 2304), (2304,), (768, 768), (768,), (768,), (768,),
                   (768, 3072), (3072,), (3072, 768), (768,)]
    return shapes + [(768,), (768,)]


def step_seconds(optimizer: torch.optim.Optimizer) -> float:
    start = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    parameters = [torch.nn.Parameter(torch.randn(shape)) for shape in gpt2_small_shapes()]
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    optimizers = {"multi-tensor (torch default)": torch.optim.AdamW(parameters, foreach=True),
                  "fused (rlhf)": torch.optim.AdamW(parameters, fused=True)}
    for optimizer in optimizers.values():
        optimizer.step()  # warm-up: allocates the moment buffers
    seconds = {name: [] for name in optimizers}
    for _ in range(args.repeats):
        for name, optimizer in optimizers.items():
            seconds[name].append(step_seconds(optimizer))
    count = sum(p.numel() for p in parameters)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {count / 1e6:.0f}M parameters, median of "
          f"{args.repeats}")
    print("| AdamW kernel | seconds per step |\n|---|---|")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in medians.items():
        print(f"| {name} | {value:.3f} |")
    default, fused = medians.values()
    print(f"fused is {default / fused:.1f}x faster")


if __name__ == "__main__":
    main()
