"""Per-token reward shaping and score transforms (Ziegler et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algo.masking import last_true_index


def shape_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float,
                  response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards, non_score_rewards), both (B, R) and 0 at masked positions.

    Every real token gets -kl_coef * kl; the score is added at the last real response token,
    the stop token when there is one (Ziegler et al. 2019; Huang et al. 2024, N+ details).
    A row with no real token gets no reward at all, score included: there is no token to
    credit, and GAE gives it zero advantages, so it contributes nothing to any loss.
    """
    non_score = torch.where(response_mask, -kl_coef * kl, torch.zeros_like(kl))  # (B, R)
    positions = torch.arange(response_mask.shape[1], device=response_mask.device)  # (R,)
    # `& response_mask` drops all-False rows, whose last_true_index is 0 by convention.
    at_end = (positions == last_true_index(response_mask)[:, None]) & response_mask  # (B, R)
    score = scores.to(non_score.dtype)[:, None].expand_as(non_score)  # (B, R)
    rewards = non_score + torch.where(at_end, score, torch.zeros_like(non_score))  # (B, R)
    return rewards, non_score


def apply_missing_eos_penalty(scores: torch.Tensor, ended_with_eos: torch.Tensor,
                              penalty: float) -> torch.Tensor:
    """(B,) scores plus `penalty` (negative, e.g. -1.0) where the response never stopped.

    A truncated response is scored as if it were finished; the penalty stops the policy from
    learning to ramble to the length limit (Huang et al. 2024, N+ details).
    """
    return torch.where(ended_with_eos, scores, scores + penalty)


def normalize_scores(scores: torch.Tensor, gain: float, bias: float) -> torch.Tensor:
    """(B,) gain * scores + bias (see gain_bias_for_unit_normal)."""
    return scores * gain + bias


def gain_bias_for_unit_normal(reference_scores: torch.Tensor) -> tuple[float, float]:
    """gain, bias so that gain * s + bias has mean 0 and (Bessel) std 1 over reference scores.

    Ziegler et al. 2019 normalise the reward model on samples of the initial policy so that
    the KL coefficient beta means the same thing for any reward model.
    """
    scores = reference_scores.detach().double().flatten()  # (N,)
    if len(scores) < 2:
        raise ValueError(f"need at least 2 reference scores to normalise, got {len(scores)}")
    mean, std = float(scores.mean()), float(scores.std())
    gain = 1.0 / std if std > 1e-8 else 1.0  # constant scores: shift only, never a 1e8 gain
    return gain, -mean * gain


def clip_scores(scores: torch.Tensor, limit: float) -> torch.Tensor:
    """(B,) scores clamped to [-limit, limit]; bounds the damage of a reward-model outlier."""
    return scores.clamp(-limit, limit)


@dataclass
class ScoreTransform:
    """gain * score + bias (Ziegler et al. 2019), then the missing-EOS penalty (so it is in
    normalised units), then clipping. Plain numbers: a run keeps it in its checkpoint."""

    gain: float = 1.0
    bias: float = 0.0
    missing_eos_penalty: float | None = None
    clip: float | None = None

    def __call__(self, scores: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        scores = normalize_scores(scores, self.gain, self.bias)
        if self.missing_eos_penalty is not None:
            scores = apply_missing_eos_penalty(scores, ended, self.missing_eos_penalty)
        return clip_scores(scores, self.clip) if self.clip is not None else scores
