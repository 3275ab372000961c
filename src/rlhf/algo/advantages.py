"""Generalised advantage estimation over response tokens (Schulman et al. 2016)."""

from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both (B, R), 0 at masked positions.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with the
    value after the last real token taken as 0 (the episode ends there). Rewards and values
    under the mask are zeroed first so they cannot leak into real positions.
    """
    zeros = torch.zeros_like(values, dtype=torch.float32)
    rewards = torch.where(response_mask, rewards.float(), zeros)
    values = torch.where(response_mask, values.float(), zeros)
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])  # (B,)
    next_advantage = torch.zeros_like(values[:, 0])  # (B,)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        real = response_mask[:, t]
        advantages[:, t] = torch.where(real, advantage, torch.zeros_like(advantage))
        next_value = torch.where(real, values[:, t], next_value)
        next_advantage = torch.where(real, advantage, next_advantage)
    returns = torch.where(response_mask, advantages + values, zeros)
    return advantages, returns
