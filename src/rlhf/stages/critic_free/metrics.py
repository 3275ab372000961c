"""What a critic-free iteration logs about its batch (docs/metrics.md). Every process holds
the global batch, so these are the global batch's values on every process."""

from __future__ import annotations

import torch

from rlhf.algo.kl import kl_k1
from rlhf.algo.types import Rollout
from rlhf.stages.critic_free.advantages import GroupSignal


def batch_metrics(rollout: Rollout, raw_scores: torch.Tensor, signal: GroupSignal,
                  kl_reward: torch.Tensor | None, kl_coef: float) -> dict[str, float]:
    """Scores, group signal, KL to the reference (when there is one), response lengths."""
    scores = rollout.scores
    metrics = {
        "objective/score": float(scores.mean()),
        "objective/score_std": float(scores.std()) if len(scores) > 1 else 0.0,
        "objective/raw_score": float(raw_scores.mean()),
        "group/reward_std": signal.reward_std,
        "group/zero_signal_fraction": signal.zero_signal_fraction,
        "group/dropped_groups": float(signal.dropped_groups),
        "response/length": float(rollout.response_mask.sum(1).float().mean()),
        "response/ended_fraction": float(rollout.ended_with_eos.float().mean()),
    }
    if rollout.ref_logprobs is not None:
        kl = kl_k1(rollout.logprobs, rollout.ref_logprobs) * rollout.response_mask  # (B, R)
        metrics["objective/kl"] = float(kl.sum(1).mean())
        metrics["objective/kl_coef"] = kl_coef
    if kl_reward is not None:
        non_score = kl_reward.sum(1)  # (B,)
        metrics["objective/non_score_reward"] = float(non_score.mean())
        metrics["objective/rlhf_reward"] = float((scores + non_score).mean())
    return metrics

