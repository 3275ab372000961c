"""Masked reductions and response masks. A `*_mask` is True on real tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    zeros = torch.zeros_like(x)
    masked = torch.where(mask, x, zeros)  # garbage (even NaN) under the mask never leaks
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over real positions (Bessel-corrected by default)."""
    mean = masked_mean(x, mask)
    squares = masked_sum((x - mean) ** 2, mask)
    count = mask.sum()
    return squares / (count - 1).clamp(min=1) if unbiased else squares / count.clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over real positions; 0 elsewhere.

    With shift_mean=False the mean is added back: rewards are only rescaled, because shifting
    them would change the incentive to end a response early (Huang et al. 2024, N+ details).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))


def response_mask_after_stop(response_ids: torch.Tensor,
                             stop_token_ids: Sequence[int] | int) -> torch.Tensor:
    """(B, R) True up to and including the first stop token of each row, False after it."""
    stops = torch.as_tensor(stop_token_ids, device=response_ids.device).reshape(-1)
    is_stop = torch.isin(response_ids, stops).long()  # (B, R)
    stops_before = is_stop.cumsum(dim=1) - is_stop  # stop tokens strictly before t
    return stops_before == 0


def last_true_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last True of each row (0 for an all-False row), any padding side."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(dim=-1)
