"""The supervised fine-tuning objective: next-token cross-entropy on response tokens only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algo.masking import masked_mean, masked_sum
from rlhf.algo.types import _Stats


@dataclass(frozen=True)
class SFTLossStats(_Stats):
    loss: torch.Tensor
    """Mean negative log-likelihood per response token (nats)."""
    nll_sum: torch.Tensor
    """Sum of the negative log-likelihoods of the response tokens (to pool over batches)."""
    tokens: torch.Tensor
    """Number of response tokens the loss covers (float)."""


def sft_loss(logprobs: torch.Tensor,
             response_mask: torch.Tensor) -> tuple[torch.Tensor, SFTLossStats]:
    """Token-level mean of -log p over response tokens: mean_{t: mask} -logprobs[t].

    logprobs (B, T): log p(token_t | tokens_<t), i.e. already shifted (the logits at t - 1
    scored against token t); response_mask (B, T) True where token t belongs to the response
    (its EOS included). Prompt and padding positions are selected away, so whatever they hold
    (even inf/NaN) changes neither the loss nor its gradient. A token mean, not a mean of
    per-sequence means: long responses weigh by their length, as in InstructGPT's SFT and
    TRL's SFTTrainer, and micro-batches weighted by their share of tokens add up exactly.
    """
    nll = -logprobs  # (B, T)
    loss = masked_mean(nll, response_mask)
    stats = SFTLossStats(loss=loss.detach(), nll_sum=masked_sum(nll.detach(), response_mask),
                         tokens=response_mask.sum().float())
    return loss, stats
