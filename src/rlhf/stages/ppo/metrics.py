"""What a PPO iteration logs: its metrics over the global batch."""

from __future__ import annotations

import torch

from rlhf.algo.types import Rollout
from rlhf.engine.run import Run
from rlhf.rl.minibatches import stats_over_processes


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
    metrics = run.mean_over_processes(rollout_metrics(rollout, raw_scores, kl, non_score,
                                                      kl_coef))
    if run.accelerator.num_processes > 1:
        metrics["objective/score_std"] = float(run.accelerator.gather(rollout.scores).std())
    return metrics | stats_over_processes(run, update_stats)
