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


def _log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """float32 (float64 stays) log softmax(logits / T): one fused kernel forward and backward."""
    return torch.log_softmax(_scaled(logits, temperature), dim=-1)


def _picked(log_p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(b, T) log p of each label from (b, T, V) log-probs."""
    return log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def _entropy(log_p: torch.Tensor) -> torch.Tensor:
    """(b, T) -sum_v p_v log p_v from (b, T, V) log-probs, with one (b, T, V) temporary.

    log_softmax of finite logits is finite, so a probability that underflows to 0 adds
    0 * finite = 0, never 0 * -inf.
    """
    weighted = log_p.exp().mul_(log_p)  # (b, T, V) p_v log p_v
    return -weighted.sum(-1)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """(B, T) log p(label_t) under softmax(logits_t / temperature), in float32 (or float64).

    Rollout, reference and training log-probs all divide by the sampling temperature, or the
    KL and the PPO ratio are measured against a distribution that was never sampled (Huang et
    al. 2024, N+ details). torch's fused log_softmax keeps only its (B, T, V) output for the
    backward pass, as a logsumexp would keep its input; at a 50k vocabulary it is the fastest
    of the equivalent formulations on CPU (fewer passes and temporaries over the logits).
    `labels` must be valid token ids everywhere (no -100); mask padding out afterwards.
    """
    step = _rows_per_chunk(logits)
    return torch.cat([_picked(_log_softmax(chunk, temperature), chunk_labels)
                      for chunk, chunk_labels in zip(logits.split(step), labels.split(step),
                                                     strict=True)])  # (B, T)


def token_logprobs_and_entropy(logits: torch.Tensor, labels: torch.Tensor,
                               temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`token_logprobs` and the (B, T) entropy in nats of softmax(logits / temperature), from
    one log softmax per chunk.

    The entropy is a health metric (collapsing entropy signals over-optimisation), computed
    without a graph: no gradient flows through it and its temporary is freed at once. Logits
    must be finite.
    """
    step = _rows_per_chunk(logits)
    logprobs, entropy = [], []
    for chunk, chunk_labels in zip(logits.split(step), labels.split(step), strict=True):
        log_p = _log_softmax(chunk, temperature)  # (b, T, V)
        logprobs.append(_picked(log_p, chunk_labels))
        entropy.append(_entropy(log_p.detach()))
    return torch.cat(logprobs), torch.cat(entropy)  # (B, T) each
