"""What bf16 does to the numbers: a tiny PPO run in float32 and in bf16, and the agreement of
the rollout's and the update's log-probs at iteration 1.

1. `configs/ppo/tiny.yaml` for 20 iterations with seeds 0, 1, 2, at `run.mixed_precision=no`
   and `bf16`: score, KL to the reference and the update's approx-KL per iteration, and how far
   the bf16 curves stray from the float32 ones (mean over seeds).
2. Iteration 1 alone (one PPO epoch, one minibatch), where the ratio must be 1 because no step
   has been taken: its approx-KL and clip fraction with the whole minibatch in one forward, and
   with the minibatch cut into micro-batches of 8 rows (other matrix shapes, so other rounding).
3. At GPT-2-small size (random weights, batch 8, dolly prompts, 32 new tokens): the largest
   difference between the rollout's log-probs (one forward over the batch) and the update's
   (forward in micro-batches of 1, 2 and 4 rows), in float32 and in bf16.

    .venv/bin/python benchmarks/bf16_numerics.py [--iterations 20] [--seeds 0 1 2]

Needs ../shared/data beside the repository for part 3.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_trl import cpu_flags, machine  # noqa: E402
from ppo_step import DOLLY, make_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = {"fp32": "no", "bf16": "bf16"}
CURVES = ("objective/raw_score", "objective/kl", "policy/approx_kl")


def tiny_run(out: Path, *overrides: str) -> list[dict]:
    from rlhf.config import PPOConfig, load_config
    from rlhf.stages.ppo.train import train_ppo

    train_ppo(load_config(PPOConfig, ROOT / "configs/ppo/tiny.yaml", [
        f"run.output_dir={out}", "run.progress=false", "run.save_every=0", "samples_every=0",
        *overrides]))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def curves(folder: Path, iterations: int, seeds: list[int]) -> dict:
    """Per precision and seed, the CURVES of a tiny run of `iterations` iterations."""
    runs: dict[str, dict[int, list[dict]]] = {name: {} for name in PRECISIONS}
    for seed in seeds:
        for name, setting in PRECISIONS.items():
            runs[name][seed] = tiny_run(
                folder / f"{name}-{seed}", f"run.mixed_precision={setting}",
                f"run.seed={seed}", f"ppo.total_episodes={32 * iterations}")
    return runs


def iteration_one(folder: Path) -> dict:
    """approx-KL and clip fraction of the first update, whole minibatch or micro-batches."""
    found = {}
    for name, setting in PRECISIONS.items():
        for micro in (0, 8):
            row = tiny_run(folder / f"first-{name}-{micro}", f"run.mixed_precision={setting}",
                           "ppo.total_episodes=32", "ppo.ppo_epochs=1", "ppo.num_minibatches=1",
                           f"train.micro_batch_size={micro}")[0]
            found[f"{name}, micro-batch {micro or 'none'}"] = {
                key: row[key] for key in ("policy/approx_kl", "policy/clipfrac",
                                          "policy/ratio_mean", "objective/kl")}
    return found


def gpt2_small_agreement(folder: Path) -> dict:
    """Largest |rollout log-prob - update log-prob| at GPT-2-small size, per precision and
    micro-batch size: the rollout's forward over all 8 rows under no_grad, the update's with
    gradients, as PPO runs them."""
    import torch

    from rlhf.data.batching import left_pad
    from rlhf.data.prompts import load_prompts
    from rlhf.models import load_policy, set_attention
    from rlhf.rl.forward import response_logprobs
    from rlhf.rl.generation import sample_responses

    policy_path, _ = make_models(folder)
    found = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        policy, tokenizer = load_policy(str(policy_path))
        set_attention(policy, "eager" if dtype else None)  # what model.attention=auto picks
        _, ids = load_prompts(str(DOLLY), template="dolly", tokenizer=tokenizer,
                              max_prompt_tokens=64, max_samples=8)
        query, query_mask = left_pad(ids, tokenizer.pad_token_id)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            with torch.no_grad():
                response = sample_responses(policy, query, query_mask, max_new_tokens=32,
                                            temperature=0.7, stop_token_ids=[-1],
                                            pad_id=tokenizer.pad_token_id, row_seeds=range(8))
                mask = torch.ones_like(response, dtype=torch.bool)
                rollout = response_logprobs(policy, query, query_mask, response, mask, 0.7)
            for micro in (8, 4, 2, 1):
                update = torch.cat([
                    response_logprobs(policy, query[i:i + micro], query_mask[i:i + micro],
                                      response[i:i + micro], mask[i:i + micro], 0.7).detach()
                    for i in range(0, 8, micro)])
                log_ratio = update - rollout  # (8, 32): the first epoch's log ratios
                found[f"{name}, micro-batch {micro}"] = {
                    "max_abs": float(log_ratio.abs().max()),
                    "mean_abs": float(log_ratio.abs().mean()),
                    "approx_kl": float((0.5 * log_ratio**2).mean()),  # PPO's k2
                    "clipfrac_0.2": float(((log_ratio.exp() - 1).abs() > 0.2).float().mean())}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--agreement-only", action="store_true", help="part 3 alone")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="bf16-numerics-") as tmp:
        folder = Path(tmp)
        agreement = gpt2_small_agreement(folder)
        if args.agreement_only:
            print(json.dumps(agreement, indent=1))
            return
        runs = curves(folder, args.iterations, args.seeds)
        first = iteration_one(folder)
    print(f"\nmachine: {machine()}; bf16 units: {cpu_flags()}; torch {torch.__version__}")
    print(f"\ntiny PPO config, {args.iterations} iterations, seeds {args.seeds}: mean over "
          "seeds (fp32 | bf16), and the mean over seeds and iterations of |bf16 - fp32|\n")
    print("| iteration | " + " | ".join(f"{c} fp32 | {c} bf16" for c in CURVES) + " |")
    print("|---" * (1 + 2 * len(CURVES)) + "|")
    for i in sorted({0, 4, 9, args.iterations - 1}):
        cells = []
        for key in CURVES:
            for name in PRECISIONS:
                cells.append(statistics.mean(runs[name][s][i][key] for s in args.seeds))
        print(f"| {i + 1} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    gaps = {key: statistics.mean(abs(runs["bf16"][s][i][key] - runs["fp32"][s][i][key])
                                 for s in args.seeds for i in range(args.iterations))
            for key in CURVES}
    print("| mean abs(bf16 - fp32) | " + " | ".join(f" | {gaps[k]:.4f}" for k in CURVES) + " |")
    print("\niteration 1, one epoch, one minibatch of 32 rows (the ratio must be 1):\n")
    print("| run | approx-KL | clip fraction | ratio mean | KL to reference |\n|---|---|---|---|---|")
    for name, row in first.items():
        print(f"| {name} | {row['policy/approx_kl']:.3g} | {row['policy/clipfrac']:.3g} | "
              f"{row['policy/ratio_mean']:.6f} | {row['objective/kl']:.3g} |")
    print("\nGPT-2-small, batch 8 x 32 tokens: update - rollout log-prob (nats) before any step\n")
    print("| precision, update micro-batch | max abs | mean abs | approx-KL (k2) | clip fraction "
          "(0.2) |\n|---|---|---|---|---|")
    for name, value in agreement.items():
        print(f"| {name} | {value['max_abs']:.3g} | {value['mean_abs']:.3g} | "
              f"{value['approx_kl']:.3g} | {value['clipfrac_0.2']:.3g} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "runs": runs, "first": first,
                                         "agreement": agreement}, indent=1))


if __name__ == "__main__":
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
