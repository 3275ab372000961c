"""Per-token reward shaping and score transforms (Ziegler et al. 2019)."""

from __future__ import annotations

import torch

from rlhf.algo.masking import last_true_index


def shape_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float,
                  response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non_score_rewards), both (B, R).

    Every real token gets -kl_coef * kl; the score is added at the last real response token
    (the stop token when there is one). A row with no real token gets no reward at all.
    """
    non_score = torch.where(response_mask, -kl_coef * kl, torch.zeros_like(kl))  # (B, R)
    last = last_true_index(response_mask)  # (B,)
    has_tokens = response_mask.any(dim=1)  # (B,)
    score_at_end = torch.zeros_like(non_score)
    score_at_end[torch.arange(len(scores), device=scores.device), last] = torch.where(
        has_tokens, scores.to(non_score.dtype), torch.zeros_like(scores, dtype=non_score.dtype))
    return non_score + score_at_end, non_score


def apply_missing_eos_penalty(scores: torch.Tensor, ended_with_eos: torch.Tensor,
                              penalty: float) -> torch.Tensor:
    """Add `penalty` (negative) to responses that never stopped by themselves (N+ details)."""
    return torch.where(ended_with_eos, scores, scores + penalty)


def normalize_scores(scores: torch.Tensor, gain: float, bias: float) -> torch.Tensor:
    return scores * gain + bias


def gain_bias_for_unit_normal(reference_scores: torch.Tensor) -> tuple[float, float]:
    """gain, bias so that gain * s + bias has mean 0 and std 1 over reference samples.

    Ziegler et al. 2019 normalise the reward model on the initial policy's samples so the KL
    coefficient means the same thing for any reward model.
    """
    mean = float(reference_scores.float().mean())
    std = float(reference_scores.float().std())
    gain = 1.0 / max(std, 1e-8)
    return gain, -mean * gain


def clip_scores(scores: torch.Tensor, limit: float) -> torch.Tensor:
    return scores.clamp(-limit, limit)
