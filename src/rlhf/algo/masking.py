"""Masked reductions and response masks. A `*_mask` is True on real tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x over real positions (over `dim`, or everything when dim is None)."""
    # torch.where selects rather than multiplies, so garbage (even inf/NaN) under the mask
    # never leaks into the value or the gradient; x * mask would turn NaN * 0 into NaN.
    masked = torch.where(mask, x, torch.zeros_like(x))
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over real positions; 0 where there is no real position at all."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """0-dim variance over all real positions (Bessel-corrected by default; 0 for one token)."""
    x = torch.where(mask, x, torch.zeros_like(x))  # keeps NaN out of (x - mean) ** 2's gradient
    mean = masked_mean(x, mask)
    squares = masked_sum((x - mean) ** 2, mask)
    count = mask.sum()
    return squares / (count - 1).clamp(min=1) if unbiased else squares / count.clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8,
                  sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None
                  ) -> torch.Tensor:
    """(x - mean) / std over real positions; 0 elsewhere.

    Advantages are whitened with the mean removed. With shift_mean=False the mean is added
    back, so rewards are only rescaled: shifting them would change the incentive to end a
    response early (Huang et al. 2024, N+ details; TRL's `masked_whiten`). With
    `sum_over_processes` (an all-reduce sum) the statistics are those of the global batch, so
    several processes whiten exactly as one process holding every row would.
    """
    x = torch.where(mask, x, torch.zeros_like(x))
    if sum_over_processes is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        mean, var = _global_mean_var(x, mask, sum_over_processes)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))


def _global_mean_var(x: torch.Tensor, mask: torch.Tensor,
                     sum_over_processes: Callable[[torch.Tensor], torch.Tensor]):
    """Mean and Bessel-corrected variance over the real positions of every process."""
    totals = sum_over_processes(torch.stack([masked_sum(x, mask), mask.sum().to(x.dtype)]))
    total, count = totals[0], totals[1]
    mean = total / count.clamp(min=1)
    squares = sum_over_processes(masked_sum((x - mean) ** 2, mask))
    return mean, squares / (count - 1).clamp(min=1)


def response_mask_after_stop(response_ids: torch.Tensor,
                             stop_token_ids: Sequence[int] | int) -> torch.Tensor:
    """(B, R) True up to and including the first stop token of each row, False after it.

    A row with no stop token is all True; no stop ids at all gives all True. The stop token
    itself stays real: the score is read there and its log-prob is trained, so the policy
    learns to stop (Huang et al. 2024, N+ details). Built from ids, never from a pad id.
    """
    stops = torch.as_tensor(stop_token_ids, dtype=response_ids.dtype,
                            device=response_ids.device).reshape(-1)  # (S,)
    is_stop = torch.isin(response_ids, stops).long()  # (B, R)
    stops_before = is_stop.cumsum(dim=1) - is_stop  # (B, R) stop tokens strictly before t
    return stops_before == 0


def within_lengths(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) True at positions t < lengths[b]: the tokens a row was allowed to sample
    when each row has its own length limit. `lengths` (B,) integers."""
    positions = torch.arange(width, device=lengths.device)  # (width,)
    return positions[None, :] < lengths[:, None]


def last_true_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) long index of the last True of each row (0 for an all-False row).

    Works for left or right padding alike, so a score or value is read at the last real
    token whatever side the padding is on. Accepts bool or 0/1 integer masks.
    """
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)  # (B, T)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(dim=-1)
