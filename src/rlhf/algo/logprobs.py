"""Token log-probabilities and entropy from logits, at the sampling temperature."""

from __future__ import annotations

import torch

_FULL_PRECISION = (torch.float32, torch.float64)


def _rows_per_chunk(logits: torch.Tensor) -> int:
    """Half-precision logits are upcast one row at a time, so a no-grad pass (rollout,
    reference) holds one (T, V) float32 copy at a time instead of a (B, T, V) one."""
    return max(len(logits), 1) if logits.dtype in _FULL_PRECISION else 1


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 (float64 stays) logits / temperature; no copy when neither step applies."""
    scaled = logits if logits.dtype in _FULL_PRECISION else logits.float()
    return scaled if temperature == 1.0 else scaled / temperature


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """(B, T) log p(label_t) under softmax(logits_t / temperature), in float32 (or float64).

    Rollout, reference and training log-probs all divide by the sampling temperature, or the
    KL and the PPO ratio are measured against a distribution that was never sampled (Huang et
    al. 2024, N+ details). We gather one logit and subtract logsumexp rather than keep a
    (B, T, V) log_softmax: at a 50k vocabulary that copy dominates memory.
    `labels` must be valid token ids everywhere (no -100); mask padding out afterwards.
    """
    step = _rows_per_chunk(logits)
    out = []
    for chunk, chunk_labels in zip(logits.split(step), labels.split(step), strict=True):
        scaled = _scaled(chunk, temperature)  # (b, T, V)
        picked = scaled.gather(-1, chunk_labels.unsqueeze(-1)).squeeze(-1)  # (b, T)
        out.append(picked - torch.logsumexp(scaled, dim=-1))  # (b, T)
    return torch.cat(out)  # (B, T)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T) entropy in nats of softmax(logits / temperature), in float32 (or float64).

    H = logsumexp(z) - sum_v p_v z_v with z the scaled logits: no log(0) at tokens of zero
    probability from underflow (logits must be finite). Logged as a health metric:
    collapsing entropy signals over-optimisation.
    """
    step = _rows_per_chunk(logits)
    out = []
    for chunk in logits.split(step):
        scaled = _scaled(chunk, temperature)  # (b, T, V)
        probabilities = torch.softmax(scaled, dim=-1)  # (b, T, V)
        out.append(torch.logsumexp(scaled, dim=-1) - (probabilities * scaled).sum(-1))  # (b, T)
    return torch.cat(out)  # (B, T)
