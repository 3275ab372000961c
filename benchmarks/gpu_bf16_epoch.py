"""Where a bf16 PPO epoch's time goes on a GPU: GPT-2-small policy and value model (random
weights), forward + backward + fused AdamW over batch x (64 prompt + 32 response) tokens, and
32-token sampling, in float32 and under bf16 autocast, with SDPA and eager attention; then a
profile of one bf16 epoch (the top operators by GPU time).

    PYTHONPATH=src python3 benchmarks/gpu_bf16_epoch.py --out DIR   # on a CUDA machine
    .venv/bin/python benchmarks/gpu_bf16_epoch.py --out /tmp/x --batches 2 --repeats 1  # CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ppo_step import ppo_epoch  # noqa: E402


def models(attention: str, device: torch.device):
    from transformers import AutoModelForCausalLM, GPT2Config

    from rlhf.engine.optim import adamw_with_schedule
    from rlhf.value_models import value_model_from_policy

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_config(GPT2Config(), attn_implementation=attention)
    value = value_model_from_policy(policy)
    policy, value = policy.to(device), value.to(device)
    optimizer, _ = adamw_with_schedule(
        list(policy.parameters()) + list(value.parameters()), learning_rate=1e-6,
        weight_decay=0.0, scheduler="constant", warmup_ratio=0.0, total_steps=1000)
    return policy, value, optimizer


def synchronized(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(call, device: torch.device, repeats: int) -> float:
    call()
    call()
    synchronized(device)
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    synchronized(device)
    return (time.perf_counter() - start) / repeats


def workload(batch: int, attention: str, bf16: bool, device: torch.device):
    """(epoch, sample) callables for one setting."""
    from rlhf.rl.generation import sample_responses

    policy, value, optimizer = models(attention, device)
    query = torch.randint(0, 50000, (batch, 64), device=device)
    query_mask = torch.ones_like(query, dtype=torch.bool)
    query_mask[: batch // 2, :16] = False  # left padding on half the rows, as in a rollout
    response = torch.randint(0, 50000, (batch, 32), device=device)
    mask = torch.ones_like(response, dtype=torch.bool)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def epoch() -> None:
        with autocast():
            ppo_epoch(policy, value, optimizer, query, query_mask, response, mask)

    def sample() -> None:
        with torch.no_grad(), autocast():
            sample_responses(policy, query, query_mask, max_new_tokens=32, temperature=0.7,
                             stop_token_ids=[-1], pad_id=0)

    return epoch, sample


def profile_table(call, device: torch.device) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    call()
    synchronized(device)
    with profile(activities=activities) as prof:
        call()
        synchronized(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_bf16_epoch"))
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    results = {"device": name, "torch": torch.__version__, "cases": []}
    for batch in args.batches:
        for attention in ("sdpa", "eager"):
            for bf16 in (False, True):
                epoch, sample = workload(batch, attention, bf16, device)
                case = {"batch": batch, "attention": attention,
                        "precision": "bf16" if bf16 else "fp32",
                        "epoch_s": round(seconds(epoch, device, args.repeats), 4),
                        "sample_s": round(seconds(sample, device, args.repeats), 4)}
                results["cases"].append(case)
                print(json.dumps(case), flush=True)
                (args.out / "gpu_bf16_epoch.json").write_text(json.dumps(results, indent=1))
    epoch, _ = workload(args.batches[-1], "sdpa", True, device)
    table = profile_table(epoch, device)
    (args.out / "gpu_bf16_profile.txt").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
