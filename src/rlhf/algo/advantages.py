"""Generalised advantage estimation over response tokens (Schulman et al. 2016)."""

from __future__ import annotations

import torch


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
