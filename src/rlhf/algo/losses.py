"""Losses: reward-model preference losses, the PPO policy and value losses, and the per-token
pieces of the critic-free policy objectives (log ratios and the clipped surrogate).

The full losses return (loss, stats) with the stats detached. The PPO losses are means over
all real tokens of the batch given (not means of per-sequence means); under gradient
accumulation the caller weights each micro-batch's loss by its share of the real tokens, so
the accumulated gradient equals that of the whole batch. The per-token pieces return (B, R)
tensors that the caller reduces with one rule of rlhf.algo.aggregation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.algo.masking import masked_mean, masked_var
from rlhf.algo.types import PolicyLossStats, RewardLossStats, SurrogateTerms, ValueLossStats


def _std(x: torch.Tensor) -> torch.Tensor:
    """Bessel std, 0 (not NaN) for a single element."""
    return x.std() if x.numel() > 1 else torch.zeros((), dtype=x.dtype, device=x.device)


def _reward_stats(loss: torch.Tensor, best: torch.Tensor,
                  others: torch.Tensor) -> RewardLossStats:
    """best (B,) scores of the preferred responses, others (B, N - 1) of the rest."""
    best, others = best.detach(), others.detach()
    gap = best - others.max(dim=1).values  # (B,) ties give 0: counted as wrong
    return RewardLossStats(
        loss=loss.detach(), accuracy=(gap > 0).float().mean(), margin_mean=gap.mean(),
        chosen_mean=best.mean(), chosen_std=_std(best),
        rejected_mean=others.mean(), rejected_std=_std(others.flatten()))


def pairwise_reward_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                         margin: torch.Tensor | None = None,
                         center_coef: float = 0.0) -> tuple[torch.Tensor, RewardLossStats]:
    """Bradley-Terry: mean(-log sigmoid(r_c - r_r - margin)) + coef * mean((r_c + r_r)^2).

    chosen_rewards, rejected_rewards (B,); margin (B,) or None. The scores' offset is free
    under the BT loss; the centering term (Eisenstein et al. 2023, "Helping or Herding")
    pins it near 0 so scores from different runs are comparable. Stats ignore the margin.
    """
    difference = chosen_rewards - rejected_rewards  # (B,)
    if margin is not None:
        difference = difference - margin
    loss = -F.logsigmoid(difference).mean()  # logsigmoid: no overflow for large gaps
    if center_coef:
        loss = loss + center_coef * ((chosen_rewards + rejected_rewards) ** 2).mean()
    return loss, _reward_stats(loss, chosen_rewards, rejected_rewards[:, None])


def listwise_reward_loss(rewards: torch.Tensor, best: torch.Tensor,
                         center_coef: float = 0.0) -> tuple[torch.Tensor, RewardLossStats]:
    """Best-of-N softmax cross-entropy (OpenAI lm-human-preferences; Ziegler et al. 2019).

    rewards (B, N), best (B,) long index of the preferred response. Centering adds
    coef * mean((sum_n r_n)^2), which is exactly the pairwise term when N = 2, and with no
    centering N = 2 equals the pairwise loss. Rejected stats cover all N - 1 other responses.
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
    """Clipped surrogate (Schulman et al. 2017): mean max(-A r, -A clip(r, 1 - e, 1 + e)).

    All (B, R). r = exp(logp - logp_old). Masked positions are replaced by r = 1, A = 0
    before anything else, so garbage there changes neither the loss nor any gradient.
    approx_kl is k2 = 0.5 (log r)^2, as in the N+ details and TRL.
    """
    zeros = torch.zeros_like(logprobs)
    log_ratio = torch.where(response_mask, logprobs - old_logprobs, zeros)  # (B, R)
    advantages = torch.where(response_mask, advantages.detach(), zeros)  # (B, R)
    ratio = torch.exp(log_ratio)  # (B, R)
    unclipped = -advantages * ratio  # (B, R)
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)  # (B, R)
    loss = masked_mean(torch.maximum(unclipped, clipped), response_mask)
    ratio, log_ratio = ratio.detach(), log_ratio.detach()
    stats = PolicyLossStats(
        loss=loss.detach(),
        clipfrac=masked_mean((clipped > unclipped).float(), response_mask).detach(),
        approx_kl=masked_mean(0.5 * log_ratio**2, response_mask),
        ratio_mean=masked_mean(ratio, response_mask),
        ratio_max=torch.where(response_mask, ratio, zeros).max())
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       response_mask: torch.Tensor,
                       clip_range: float) -> tuple[torch.Tensor, ValueLossStats]:
    """0.5 * mean max((v - R)^2, (v_old + clip(v - v_old, -e, e) - R)^2), all (B, R).

    Value clipping keeps the critic near the rollout's values, as the policy ratio is clipped
    (OpenAI baselines ppo2; Huang et al. 2024, N+ details). Masked positions are
    zeroed first, so garbage there changes neither the loss nor any gradient.
    explained_variance = 1 - Var(R - v) / Var(R) over real tokens (1 is perfect, <= 0 useless).
    """
    zeros = torch.zeros_like(values)
    values = torch.where(response_mask, values, zeros)  # (B, R)
    old_values = torch.where(response_mask, old_values.detach(), zeros)  # (B, R)
    returns = torch.where(response_mask, returns.detach(), zeros)  # (B, R)
    clipped_values = old_values + (values - old_values).clamp(-clip_range, clip_range)  # (B, R)
    unclipped_error = (values - returns) ** 2  # (B, R)
    clipped_error = (clipped_values - returns) ** 2  # (B, R)
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), response_mask)
    detached = values.detach()
    explained = 1.0 - masked_var(returns - detached, response_mask) / masked_var(
        returns, response_mask).clamp(min=1e-8)
    stats = ValueLossStats(
        loss=loss.detach(),
        clipfrac=masked_mean((clipped_error > unclipped_error).float(), response_mask).detach(),
        value_mean=masked_mean(detached, response_mask), explained_variance=explained)
    return loss, stats


def token_log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                    response_mask: torch.Tensor) -> torch.Tensor:
    """(B, R) logp - logp_old on real tokens, 0 at masked: PPO's per-token log ratio."""
    return torch.where(response_mask, logprobs - old_logprobs, torch.zeros_like(logprobs))


def sequence_log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor,
                       response_mask: torch.Tensor) -> torch.Tensor:
    """(B, R) each row's mean of logp - logp_old over its real tokens, on its real tokens.

    GSPO (Zheng et al. 2025): exp of it is the length-normalised sequence ratio
    (pi(y|x) / pi_old(y|x))^(1/|y|), one ratio per response, so clipping acts on whole
    responses and one noisy token cannot dominate. The gradient flows through the mean: each
    token gets 1/|y| of it. 0 at masked positions and on rows with no real token. Feed it to
    clipped_surrogate and reduce with aggregation.sequence_mean for GSPO's objective.
    """
    per_token = token_log_ratio(logprobs, old_logprobs, response_mask)  # (B, R)
    row_mean = masked_mean(per_token, response_mask, dim=1)  # (B,)
    return torch.where(response_mask, row_mean[:, None].expand_as(per_token),
                       torch.zeros_like(per_token))


def clipped_surrogate(log_ratio: torch.Tensor, advantages: torch.Tensor,
                      response_mask: torch.Tensor, clip_low: float,
                      clip_high: float) -> SurrogateTerms:
    """Per-token clipped objective max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)).

    log_ratio (B, R) from token_log_ratio or sequence_log_ratio, r = exp(log_ratio);
    advantages (B, R) (or (B, 1)), no gradient. Separate ranges are DAPO's clip-higher (Yu et
    al. 2025): a larger clip_high lets unlikely tokens with positive advantage grow, which
    keeps entropy from collapsing; clip_low = clip_high is PPO (Schulman et al. 2017). Masked
    positions get r = 1 and A = 0 before anything else, so garbage there changes neither the
    loss nor any gradient. Reduce `loss` with rlhf.algo.aggregation.
    """
    zeros = torch.zeros_like(log_ratio)
    log_ratio = torch.where(response_mask, log_ratio, zeros)  # (B, R)
    advantages = torch.where(response_mask, advantages.detach(), zeros)  # (B, R)
    ratio = torch.exp(log_ratio)  # (B, R)
    unclipped = -advantages * ratio  # (B, R)
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)  # (B, R)
    loss = torch.where(response_mask, torch.maximum(unclipped, clipped), zeros)  # (B, R)
    ratio = ratio.detach()
    return SurrogateTerms(
        loss=loss, ratio=ratio,
        clipped_low=response_mask & (advantages < 0) & (ratio < 1.0 - clip_low),
        clipped_high=response_mask & (advantages > 0) & (ratio > 1.0 + clip_high))
