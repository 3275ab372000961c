"""Loss aggregation: how per-token losses (B, R) become one number, one function per rule.

The rules weigh tokens differently, and the choice changes what is learned (Yu et al. 2025,
DAPO; Liu et al. 2025, Dr. GRPO). Each function returns a micro-batch's share of the loss of
a whole batch: `mask` covers the micro-batch's rows, `batch_mask` (default: `mask`) the whole
batch the loss is a mean over, e.g. the global minibatch of every process. Summing the
results over micro-batches and processes then gives exactly the whole batch's loss and, since
the denominators hold no gradient, exactly its gradient. Masked positions are selected away
first (torch.where), so garbage there changes neither value nor gradient. Denominators are
at least 1: an empty batch gives 0, not NaN.
"""

from __future__ import annotations

import torch

from rlhf.algo.masking import masked_mean, masked_sum


def _rows_with_tokens(mask: torch.Tensor) -> torch.Tensor:
    """0-dim count of rows with at least one real token, at least 1."""
    return mask.any(dim=-1).sum().clamp(min=1)


def token_mean(per_token: torch.Tensor, mask: torch.Tensor,
               batch_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the real tokens of `mask` / number of real tokens of `batch_mask`.

    Every token of the batch weighs the same, so a long response's tokens are not diluted by
    its length (DAPO's token-level loss, Yu et al. 2025; PPO in the N+ details and TRL).
    """
    batch_mask = mask if batch_mask is None else batch_mask
    return masked_sum(per_token, mask) / batch_mask.sum().clamp(min=1)


def sequence_mean(per_token: torch.Tensor, mask: torch.Tensor,
                  batch_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over rows of each row's token mean / rows of `batch_mask` with a real token.

    GRPO's original objective (Shao et al. 2024) and GSPO's: each response weighs the same,
    so a token of a long response weighs less than one of a short response. With negative
    advantages that favours long wrong answers, the length bias of Liu et al. 2025. Rows of
    `mask` with no real token contribute 0.
    """
    batch_mask = mask if batch_mask is None else batch_mask
    row_means = masked_mean(per_token, mask, dim=-1)  # (B,) 0 for empty rows
    return row_means.sum() / _rows_with_tokens(batch_mask)


def token_sum(per_token: torch.Tensor, mask: torch.Tensor,
              batch_mask: torch.Tensor | None = None, *, divisor: float) -> torch.Tensor:
    """Sum over the real tokens of `mask` / (rows of `batch_mask` with a real token * divisor).

    Dr. GRPO (Liu et al. 2025): a constant `divisor` (e.g. the maximum response length)
    replaces each response's own length, which removes the length bias of sequence_mean;
    every token weighs the same whatever the lengths in the batch.
    """
    if divisor <= 0:
        raise ValueError(f"token_sum's divisor must be positive (e.g. the maximum response "
                         f"length), got {divisor}")
    batch_mask = mask if batch_mask is None else batch_mask
    return masked_sum(per_token, mask) / (_rows_with_tokens(batch_mask) * divisor)
