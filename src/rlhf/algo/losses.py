"""Losses: reward-model preference losses and the PPO policy and value losses.

Each returns (loss, stats) with detached stats. PPO losses are token means over the real
tokens of the batch given; the caller weights micro-batches by their real-token counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.algo.masking import masked_mean, masked_var
from rlhf.algo.types import PolicyLossStats, RewardLossStats, ValueLossStats


def _std(x: torch.Tensor) -> torch.Tensor:
    return x.std() if x.numel() > 1 else torch.zeros((), device=x.device)


def _reward_stats(loss, best: torch.Tensor, others: torch.Tensor) -> RewardLossStats:
    """best (B,) scores of preferred responses, others (B, N-1) of the rest."""
    gap = best - others.max(dim=1).values  # (B,)
    return RewardLossStats(
        loss=loss.detach(), accuracy=(gap > 0).float().mean(), margin_mean=gap.mean().detach(),
        chosen_mean=best.mean().detach(), chosen_std=_std(best.detach()),
        rejected_mean=others.mean().detach(), rejected_std=_std(others.detach().flatten()))


def pairwise_reward_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                         margin: torch.Tensor | None = None,
                         center_coef: float = 0.0) -> tuple[torch.Tensor, RewardLossStats]:
    """Bradley-Terry: mean(-log sigmoid(r_c - r_r - margin)) + coef * mean((r_c + r_r)^2).

    The centering term (Eisenstein et al. 2023) pins the free offset of the scores near 0.
    """
    difference = chosen_rewards - rejected_rewards  # (B,)
    if margin is not None:
        difference = difference - margin
    loss = -F.logsigmoid(difference).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen_rewards + rejected_rewards) ** 2).mean()
    return loss, _reward_stats(loss, chosen_rewards.detach(), rejected_rewards.detach()[:, None])


def listwise_reward_loss(rewards: torch.Tensor, best: torch.Tensor,
                         center_coef: float = 0.0) -> tuple[torch.Tensor, RewardLossStats]:
    """Best-of-N softmax cross-entropy (OpenAI lm-human-preferences; Ziegler et al. 2019).

    rewards (B, N), best (B,) index of the preferred response. Centering uses
    coef * mean((sum_n r_n)^2), which is the pairwise term when N = 2.
    """
    loss = F.cross_entropy(rewards, best)
    if center_coef:
        loss = loss + center_coef * (rewards.sum(dim=1) ** 2).mean()
    detached = rewards.detach()
    chosen = detached.gather(1, best[:, None]).squeeze(1)  # (B,)
    others_mask = torch.ones_like(detached, dtype=torch.bool).scatter(1, best[:, None], False)
    others = detached[others_mask].view(len(detached), -1)  # (B, N - 1)
    return loss, _reward_stats(loss, chosen, others)


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    response_mask: torch.Tensor,
                    clip_range: float) -> tuple[torch.Tensor, PolicyLossStats]:
    """Clipped surrogate (Schulman et al. 2017): mean max(-A r, -A clip(r, 1 - e, 1 + e))."""
    log_ratio = torch.where(response_mask, logprobs - old_logprobs, torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)  # (B, R)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), response_mask)
    detached = ratio.detach()
    stats = PolicyLossStats(
        loss=loss.detach(),
        clipfrac=masked_mean((clipped > unclipped).float(), response_mask).detach(),
        approx_kl=masked_mean(0.5 * log_ratio.detach() ** 2, response_mask),
        ratio_mean=masked_mean(detached, response_mask),
        ratio_max=torch.where(response_mask, detached, torch.zeros_like(detached)).max())
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       response_mask: torch.Tensor,
                       clip_range: float) -> tuple[torch.Tensor, ValueLossStats]:
    """0.5 * mean max((v - R)^2, (v_old + clip(v - v_old, -e, e) - R)^2) (N+ details)."""
    clipped_values = old_values + (values - old_values).clamp(-clip_range, clip_range)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), response_mask)
    detached = values.detach()
    explained = 1.0 - masked_var(returns - detached, response_mask) / masked_var(
        returns, response_mask).clamp(min=1e-8)
    stats = ValueLossStats(
        loss=loss.detach(),
        clipfrac=masked_mean((clipped_error > unclipped_error).float(), response_mask).detach(),
        value_mean=masked_mean(detached, response_mask), explained_variance=explained.detach())
    return loss, stats
