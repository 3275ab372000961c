"""What a PPO iteration logs: its metrics over the global batch, and sample responses."""

from __future__ import annotations

import json
import time

import torch
from accelerate.utils import gather_object

from rlhf.algo.types import Rollout
from rlhf.engine.run import Run
from rlhf.rl.rollout import Texts


def rollout_metrics(rollout: Rollout, raw_scores: torch.Tensor, kl: torch.Tensor,
                    non_score: torch.Tensor, kl_coef: float) -> dict[str, float]:
    """Per-iteration objective metrics (docs/metrics.md), averaged over sequences."""
    non_score_per_sequence = non_score.sum(1)  # (B,)
    lengths = rollout.response_mask.sum(1).float()  # (B,)
    return {
        "objective/score": float(rollout.scores.mean()),
        "objective/score_std": float(rollout.scores.std()) if len(rollout.scores) > 1 else 0.0,
        "objective/raw_score": float(raw_scores.mean()),
        "objective/kl": float(kl.sum(1).mean()),
        "objective/kl_coef": kl_coef,
        "objective/non_score_reward": float(non_score_per_sequence.mean()),
        "objective/rlhf_reward": float((rollout.scores + non_score_per_sequence).mean()),
        "response/length": float(lengths.mean()),
        "response/ended_fraction": float(rollout.ended_with_eos.float().mean()),
    }


def iteration_metrics(run: Run, rollout: Rollout, raw_scores, kl, non_score, kl_coef: float,
                       update_stats: dict[str, float]) -> dict[str, float]:
    """One iteration's metrics over the global batch: means over processes, except the
    score's std and the ratio's max, which are taken over all rows."""
    metrics = rollout_metrics(rollout, raw_scores, kl, non_score, kl_coef) | update_stats
    metrics = run.mean_over_processes(metrics)
    if run.accelerator.num_processes > 1:
        metrics["objective/score_std"] = float(run.accelerator.gather(rollout.scores).std())
        if "policy/ratio_max" in update_stats:
            metrics["policy/ratio_max"] = float(run.accelerator.reduce(
                torch.tensor(update_stats["policy/ratio_max"], device=run.device), "max"))
    return metrics


def throughput(rollout: Rollout, started: float) -> dict[str, float]:
    seconds = time.perf_counter() - started
    tokens = float(rollout.response_mask.sum() + rollout.query_mask.sum())
    return {"time/iteration": seconds, "throughput/tokens_per_s": tokens / max(seconds, 1e-9)}


def write_samples(run: Run, step: int, texts: Texts, rollout: Rollout) -> None:
    """Up to 8 (prompt, response, score) rows of the global batch, in its order, appended to
    samples.jsonl by the main process."""
    rows = list(zip(texts.prompts, texts.responses, rollout.scores.tolist(), strict=True))[:8]
    if run.accelerator.num_processes > 1:  # the first rows of the global batch, in its order
        rows = gather_object(rows)[:8]
    if run.is_main:
        with open(run.output_dir / "samples.jsonl", "a", encoding="utf-8") as handle:
            for prompt, response, score in rows:
                handle.write(json.dumps({"step": step, "prompt": prompt, "response": response,
                                         "score": score}, ensure_ascii=False) + "\n")
