"""Advantages: GAE for PPO, and the critic-free estimators.

GAE (Schulman et al. 2016) needs a value model. The critic-free methods replace it with a
baseline from other samples: the other responses to the same prompt (RLOO, GRPO, Dr. GRPO),
a moving average of past scores (REINFORCE), or the batch's own statistics (REINFORCE++).
Group estimators take scores (B,) in prompt-major order: a prompt's k samples are
consecutive rows, so row b belongs to group b // k.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rlhf.algo.masking import masked_whiten


def gae(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both (B, R), 0 at masked positions; returns = advantages + values.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, over the
    real response tokens only. The value after the last real token is 0: the episode ends
    at the stop token (Huang et al. 2024, N+ details). Rewards and values under the mask are
    zeroed first, so nothing there can leak into a real position. Whiten afterwards with
    masking.masked_whiten. Computed in float32 (float64 stays float64), never in place on inputs.
    """
    dtype = torch.promote_types(torch.promote_types(rewards.dtype, values.dtype), torch.float32)
    zeros = torch.zeros(values.shape, dtype=dtype, device=values.device)  # (B, R)
    rewards = torch.where(response_mask, rewards.to(dtype), zeros)  # (B, R)
    values = torch.where(response_mask, values.to(dtype), zeros)  # (B, R)
    steps = []
    next_value = zeros[:, 0]  # (B,) V_{t+1}; 0 past the end
    next_advantage = zeros[:, 0]  # (B,) A_{t+1}
    for t in reversed(range(values.shape[1])):
        real = response_mask[:, t]  # (B,)
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        advantage = torch.where(real, delta + gamma * lam * next_advantage, zeros[:, 0])  # (B,)
        steps.append(advantage)
        # A masked position passes the next real token's value and advantage through, so a
        # row with holes is treated as the sequence of its real tokens.
        next_value = torch.where(real, values[:, t], next_value)
        next_advantage = torch.where(real, advantage, next_advantage)
    advantages = torch.stack(steps[::-1], dim=1)  # (B, R)
    returns = torch.where(response_mask, advantages + values, zeros)  # (B, R)
    return advantages, returns


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 (float64 stays float64), as gae computes."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def group_rows(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(G, k) view of scores (B,): row g holds the k consecutive samples of prompt g."""
    if group_size < 1 or len(scores) % group_size:
        raise ValueError(f"a batch of {len(scores)} scores does not split into groups of "
                         f"{group_size} samples per prompt: the batch size must be a multiple "
                         f"of the number of samples per prompt")
    return scores.view(-1, group_size)


def _groups_of_at_least_two(scores: torch.Tensor, group_size: int, method: str) -> torch.Tensor:
    """(G, k) float rows of scores, each shifted by its first score; a clear error when one
    sample per prompt leaves no baseline.

    The group estimators ignore a constant added to a group, so the shift changes nothing
    mathematically; it makes a group of equal scores exactly 0 (no rounding residue from
    its mean) and spares the precision that a large common offset would cost.
    """
    if group_size < 2:
        raise ValueError(f"{method} needs at least 2 samples per prompt (generate.num_samples "
                         f">= 2), got {group_size}: with one sample the group has no baseline")
    rows = _at_least_float32(group_rows(scores, group_size))  # (G, k)
    return rows - rows[:, :1]


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B,) s_i - mean_{j != i} s_j over the other samples of the same prompt.

    REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics"): the
    baseline never sees s_i, so it is independent of sample i and the estimator stays
    unbiased. Equals k / (k - 1) * (s_i - group mean).
    """
    rows = _groups_of_at_least_two(scores, group_size, "RLOO")  # (G, k)
    others = (rows.sum(dim=1, keepdim=True) - rows) / (group_size - 1)  # (G, k)
    return (rows - others).reshape(-1)


def grpo_advantages(scores: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(B,) (s - group mean) / (group std + eps), the std Bessel-corrected.

    GRPO (Shao et al. 2024, DeepSeekMath), as TRL computes it (torch.std, eps 1e-4). A group
    of equal scores gives 0 / eps = 0, not NaN. The std division is biased (Liu et al. 2025):
    see dr_grpo_advantages.
    """
    rows = _groups_of_at_least_two(scores, group_size, "GRPO")  # (G, k)
    centred = rows - rows.mean(dim=1, keepdim=True)  # (G, k)
    return (centred / (rows.std(dim=1, keepdim=True) + eps)).reshape(-1)


def dr_grpo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B,) s - group mean, with no std division.

    Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): dividing by the
    group's std up-weights prompts that are almost always solved or failed (a question-level
    difficulty bias); the plain centred score keeps each prompt's natural scale.
    """
    rows = _groups_of_at_least_two(scores, group_size, "Dr. GRPO")  # (G, k)
    return (rows - rows.mean(dim=1, keepdim=True)).reshape(-1)


def reinforce_baseline_advantages(scores: torch.Tensor, baseline: float) -> torch.Tensor:
    """(B,) scores - baseline: REINFORCE with a baseline (Williams 1992).

    Any baseline that does not depend on the sample keeps the gradient unbiased and lowers
    its variance; a moving average of past batch means (update_moving_baseline) is the usual one.
    """
    return _at_least_float32(scores) - baseline


def update_moving_baseline(baseline: float | None, batch_mean: float, decay: float) -> float:
    """decay * baseline + (1 - decay) * batch_mean; the first batch's mean when None.

    Update after computing the batch's advantages, so a batch is never its own baseline.
    """
    if baseline is None:
        return float(batch_mean)
    return decay * float(baseline) + (1.0 - decay) * float(batch_mean)


def returns_to_go(rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """(B, R) sum of the rewards of the real tokens from t to the end (gamma = 1); 0 at masked.

    Rewards under the mask are selected away first, so garbage there changes nothing and a
    row with holes is the sequence of its real tokens. Computed in float32 (float64 stays).
    """
    rewards = _at_least_float32(rewards)
    zeros = torch.zeros_like(rewards)  # (B, R)
    rewards = torch.where(response_mask, rewards, zeros)  # (B, R)
    to_go = rewards.flip(1).cumsum(dim=1).flip(1)  # (B, R) reversed cumulative sum
    return torch.where(response_mask, to_go, zeros)


def reinforce_pp_advantages(
        returns: torch.Tensor, response_mask: torch.Tensor,
        sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """(B, R) token returns whitened over every real token of the global batch; 0 at masked.

    REINFORCE++ (Hu 2025): no critic and no group; the batch's own mean is the baseline and
    its std the scale, taken over all real tokens of all processes (pass an all-reduce sum as
    `sum_over_processes`), so each process normalises as one holding the whole batch would.
    `returns` come from returns_to_go over the KL-shaped token rewards.
    """
    return masked_whiten(_at_least_float32(returns), response_mask,
                         sum_over_processes=sum_over_processes)


def zero_signal_groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(G,) bool: groups whose scores are all equal (max == min).

    Every group-relative advantage of such a group is 0, so it adds no gradient, only
    dilutes the batch; DAPO's dynamic sampling drops and refills them (Yu et al. 2025).
    """
    rows = group_rows(scores, group_size)  # (G, k)
    return rows.amax(dim=1) == rows.amin(dim=1)


def group_std(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """(G,) Bessel std of each group's scores; 0 (not NaN) when group_size is 1."""
    rows = _at_least_float32(group_rows(scores, group_size))  # (G, k)
    if group_size < 2:
        return torch.zeros(len(rows), dtype=rows.dtype, device=rows.device)
    return rows.std(dim=1)
