"""Step 5 of a critic-free iteration: epochs over minibatches of the global batch, one optimizer
step each, with the clipped policy loss (and the KL loss term) aggregated over micro-batches
so that their gradients add up to exactly the minibatch's."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rlhf.algo.kl import kl_k2, kl_k3
from rlhf.algo.losses import clipped_surrogate
from rlhf.algo.masking import masked_mean
from rlhf.algo.types import Rollout
from rlhf.rl.forward import response_logprobs
from rlhf.rl.minibatches import (
    accumulate,
    means,
    minibatch_order,
    minibatch_step,
    minibatches,
    trimmed_rows,
)

LOSS_PENALTIES = {"k2": kl_k2, "k3": kl_k3}


@dataclass
class UpdateSettings:
    """Plain numbers and the chosen functions (classes take plain arguments, not configs)."""

    epochs: int
    per_minibatch: int
    """Rows of each minibatch that one process trains on."""
    micro_batch_size: int
    clip_low: float
    clip_high: float
    log_ratio: Callable
    """algo.losses.token_log_ratio, or sequence_log_ratio (GSPO)."""
    aggregate: Callable
    """One of algo.aggregation's rules (token_sum with its divisor bound)."""
    kl_loss: Callable | None
    """kl_k2 or kl_k3 as a loss term, or None."""
    kl_coef: float
    temperature: float
    max_grad_norm: float
    seed: int = 0


def policy_update(policy, optimizer, scheduler, accelerator, rollout: Rollout,
                  advantages: torch.Tensor, train_mask: torch.Tensor, settings: UpdateSettings,
                  is_finite=lambda quantities: True, *,
                  iteration: int = 0) -> tuple[dict[str, float], list[str]]:
    """Epochs over global minibatches of `rollout` (the global batch, on every process); each
    process trains on its share of each (`rl.minibatches`). `train_mask` (B, R) marks the
    tokens that enter the loss. A minibatch with no such token takes no step. Returns this
    process's metrics and every step's outcome."""
    totals: dict[str, float] = {}
    outcomes: list[str] = []
    device = rollout.scores.device
    for epoch in range(settings.epochs):
        order = minibatch_order(len(rollout.scores), settings.seed, iteration, epoch)
        for minibatch, mine in minibatches(order, settings.per_minibatch, accelerator):
            minibatch, mine = minibatch.to(device), mine.to(device)
            if not bool(train_mask[minibatch].any()):
                continue  # every group of it was dropped: nothing to learn from
            stats, outcome = _minibatch_step(policy, optimizer, scheduler, accelerator, rollout,
                                             advantages, train_mask, minibatch, mine, settings,
                                             is_finite)
            outcomes.append(outcome)
            if stats is not None:
                accumulate(totals, stats, 1.0)
    return means(totals), outcomes


def _micro_loss(policy, rollout, advantages, train_mask, micro, batch_mask, settings, world):
    """One micro-batch's share of the minibatch loss (times the process count, since DDP
    averages gradients over processes) and its statistics, token-weighted."""
    query_ids, query_mask, response_ids, response_mask = trimmed_rows(rollout, micro)
    width = response_ids.shape[1]
    mask = train_mask[micro, :width]
    logprobs, entropy = response_logprobs(policy, query_ids, query_mask, response_ids,
                                          response_mask, settings.temperature, with_entropy=True)
    log_ratio = settings.log_ratio(logprobs, rollout.logprobs[micro, :width], mask)
    terms = clipped_surrogate(log_ratio, advantages[micro, :width], mask, settings.clip_low,
                              settings.clip_high)
    policy_loss = settings.aggregate(terms.loss, mask, batch_mask) * world
    loss, stats = policy_loss, {"loss/policy": float(policy_loss.detach())}
    if settings.kl_loss is not None:
        kl = settings.kl_loss(logprobs, rollout.ref_logprobs[micro, :width])
        kl_loss = settings.kl_coef * settings.aggregate(kl, mask, batch_mask) * world
        loss = loss + kl_loss
        stats["loss/kl"] = float(kl_loss.detach())
    # Token-mean statistics, weighted so that the process mean is the minibatch's token mean.
    share = float(mask.sum() * world / batch_mask.sum().clamp(min=1))
    token_log_ratio = (logprobs - rollout.logprobs[micro, :width]).detach()
    for key, value in {"policy/entropy": entropy.detach(),
                       "policy/approx_kl": 0.5 * token_log_ratio**2,
                       "policy/clipfrac_low": terms.clipped_low.float(),
                       "policy/clipfrac_high": terms.clipped_high.float(),
                       "policy/ratio_mean": terms.ratio}.items():
        stats[key] = share * float(masked_mean(value, mask))
    stats["policy/ratio_max"] = float(torch.where(mask, terms.ratio, 0.0).max())
    return loss, stats


def _minibatch_step(policy, optimizer, scheduler, accelerator, rollout, advantages, train_mask,
                    minibatch, mine, settings: UpdateSettings,
                    is_finite) -> tuple[dict[str, float] | None, str]:
    """Forward and backward this process's rows `mine` of the global `minibatch`, then one
    optimizer step: (metrics or None when skipped, outcome)."""
    batch_mask = train_mask[minibatch]
    stats: dict[str, float] = {}
    losses = []
    micro_batches = mine.split(settings.micro_batch_size)
    for index, micro in enumerate(micro_batches):
        last = index == len(micro_batches) - 1
        with accelerator.no_sync(policy) if not last else nullcontext():  # one all-reduce
            with accelerator.autocast():
                loss, micro_stats = _micro_loss(policy, rollout, advantages, train_mask, micro,
                                                batch_mask, settings, accelerator.num_processes)
            accelerator.backward(loss)
        losses.append(loss.detach())
        accumulate(stats, micro_stats, 1.0)
    return minibatch_step(accelerator, optimizer, scheduler, stats, losses,
                          max_grad_norm=settings.max_grad_norm, is_finite=is_finite)
