"""Steps 3 and 4 of a critic-free iteration: which groups carry signal (and which are dropped),
then each token's advantage: the configured estimator on the scores, the per-token KL penalty
when it is a reward, returns-to-go, and REINFORCE++'s batch normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algo.advantages import (
    dr_grpo_advantages,
    group_std,
    grpo_advantages,
    reinforce_baseline_advantages,
    reinforce_pp_advantages,
    returns_to_go,
    rloo_advantages,
    zero_signal_groups,
)
from rlhf.algo.kl import kl_k1, kl_k3
from rlhf.algo.masking import masked_mean, masked_var
from rlhf.algo.rewards import shape_rewards
from rlhf.algo.types import Rollout

GROUP_ESTIMATORS = {"rloo": rloo_advantages, "grpo": grpo_advantages,
                    "dr_grpo": dr_grpo_advantages}
"""Estimators whose baseline is the other responses to the same prompt."""
REWARD_PENALTIES = {"k1": kl_k1, "k3": kl_k3}


@dataclass
class GroupSignal:
    """Which rows train, and how much signal the groups carried."""

    kept: torch.Tensor
    """(B,) bool: rows that enter the loss (all, unless dynamic sampling drops a group)."""
    reward_std: float
    """Mean over groups of the Bessel std of their scores."""
    zero_signal_fraction: float
    """Share of groups whose scores are all equal."""
    dropped_groups: int


def group_signal(scores: torch.Tensor, group_size: int, drop_zero_signal: bool) -> GroupSignal:
    """Groups of equal scores give RLOO and GRPO advantages of exactly 0: DAPO's dynamic
    sampling (Yu et al. 2025) leaves them out, so they do not dilute a token mean. We do not
    refill the batch with new prompts: the update trains on the rows that are left."""
    zero = zero_signal_groups(scores, group_size) if group_size > 1 else \
        torch.zeros(len(scores), dtype=torch.bool, device=scores.device)  # (G,)
    dropped = zero if drop_zero_signal else torch.zeros_like(zero)
    return GroupSignal(kept=~dropped.repeat_interleave(group_size),
                       reward_std=float(group_std(scores, group_size).mean()),
                       zero_signal_fraction=float(zero.float().mean()),
                       dropped_groups=int(dropped.sum()))


def sequence_advantages(scores: torch.Tensor, estimator: str, group_size: int,
                        baseline: float | None) -> torch.Tensor:
    """(B,) each response's advantage from its score: the group estimators, REINFORCE's
    score - baseline (the batch mean before a baseline exists), or the score itself for
    REINFORCE++, whose baseline is the batch normalisation of its token returns."""
    if estimator in GROUP_ESTIMATORS:
        return GROUP_ESTIMATORS[estimator](scores, group_size)
    if estimator == "reinforce":
        return reinforce_baseline_advantages(
            scores, float(scores.mean()) if baseline is None else baseline)
    return scores.float()


def token_advantages(rollout: Rollout, advantages: torch.Tensor, train_mask: torch.Tensor, *,
                     estimator: str, kl_penalty: str | None,
                     kl_coef: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, R) each token's advantage and the (B, R) KL reward (None without one).

    With a KL reward (`kl_penalty` 'k1' or 'k3'), -kl_coef * KL is added to every token's
    reward and each token's advantage is its return-to-go (the convention of OpenRLHF's
    REINFORCE-family estimators); without one every token of a response gets its advantage.
    REINFORCE++ (Hu 2025) then whitens over every real token of the batch."""
    if kl_penalty is None:
        kl, kl_coef = torch.zeros_like(rollout.logprobs), 0.0
    else:
        kl = REWARD_PENALTIES[kl_penalty](rollout.logprobs, rollout.ref_logprobs)  # (B, R)
    rewards, non_score = shape_rewards(advantages, kl, kl_coef, rollout.response_mask)
    token_level = returns_to_go(rewards, train_mask)  # (B, R)
    if estimator == "reinforce_pp":
        token_level = reinforce_pp_advantages(token_level, train_mask)
    return token_level, (None if kl_penalty is None else non_score)


def advantage_stats(advantages: torch.Tensor, train_mask: torch.Tensor) -> dict[str, float]:
    return {"advantage/mean": float(masked_mean(advantages, train_mask)),
            "advantage/std": float(masked_var(advantages, train_mask).sqrt())}
