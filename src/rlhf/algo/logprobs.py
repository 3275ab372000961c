"""Token log-probabilities and entropy from logits, at the sampling temperature."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """(B, T) log p(label_t) under softmax(logits_t / temperature).

    Rollout, reference and training log-probs all divide by the sampling temperature, or the
    KL and the PPO ratio are measured against the wrong distribution (N+ details, Huang et al.
    2024). We gather one logit and subtract logsumexp instead of building a (B, T, V)
    log_softmax copy: at a 50k vocabulary that copy dominates memory. Float32 throughout.
    """
    scaled = logits.float() / temperature  # (B, T, V)
    picked = scaled.gather(-1, labels.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(scaled, dim=-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T) entropy of softmax(logits / temperature): logsumexp(z) - sum p z."""
    scaled = logits.float() / temperature  # (B, T, V)
    probabilities = torch.softmax(scaled, dim=-1)
    return torch.logsumexp(scaled, dim=-1) - (probabilities * scaled).sum(-1)
