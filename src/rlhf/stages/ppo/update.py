"""The PPO update: epochs over minibatches of the global batch, one optimizer step each, with
the clipped policy and value losses accumulated over micro-batches."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import torch

from rlhf.algo.losses import clipped_value_loss, ppo_policy_loss
from rlhf.algo.masking import masked_mean
from rlhf.algo.types import Rollout
from rlhf.rl.forward import response_logprobs, response_logprobs_and_values, response_values
from rlhf.rl.minibatches import (
    accumulate,
    means,
    minibatch_order,
    minibatch_step,
    minibatches,
    process_mean,
    trimmed_rows,
)


def separate_forward(policy, value_model, *rows, temperature: float):
    """(log-probs, entropy, values) of a micro-batch from the policy and a value network of its
    own: two forward passes."""
    logprobs, entropy = response_logprobs(policy, *rows, temperature, with_entropy=True)
    return logprobs, entropy, response_values(value_model, *rows)


def shared_forward(policy, value_model, *rows, temperature: float):
    """The same from a policy with a value head on its backbone (`value_model` is the policy):
    one forward pass."""
    return response_logprobs_and_values(policy, *rows, temperature)


@dataclass
class UpdateSettings:
    """Plain numbers the update needs (classes take plain arguments, not config objects)."""

    ppo_epochs: int
    per_minibatch: int
    """Rows of each minibatch that one process trains on."""
    micro_batch_size: int
    clip_range: float
    value_clip_range: float
    vf_coef: float
    temperature: float
    max_grad_norm: float
    target_approx_kl: float | None
    ratio_threshold: float | None = None
    seed: int = 0
    """Run seed: with the iteration and epoch it keys each epoch's minibatch order."""
    forward: Callable = separate_forward
    """`separate_forward`, or `shared_forward` for a value head on the policy's backbone."""


RATIO_SKIPPED = "ratio_skipped"
"""A minibatch whose mean ratio exceeded ppo.ratio_threshold: no optimizer step."""


def ppo_update(policy, value_model, optimizer, scheduler, accelerator, rollout: Rollout,
               advantages: torch.Tensor, returns: torch.Tensor, settings: UpdateSettings,
               is_finite=lambda quantities: True, *,
               iteration: int = 0) -> tuple[dict[str, float], list[str]]:
    """PPO epochs over minibatches of the global batch; one optimizer step per minibatch.

    `rollout`, `advantages` and `returns` hold the global batch on every process
    (`rollout.gather_rows`). Each epoch orders the rows by `minibatch_order`, cuts them into
    global minibatches of per_minibatch rows per process, and process p trains on the p-th
    share of each: several processes take the steps one process would. Decisions that end an
    epoch or skip a step (approx-KL early stop, ratio threshold, NaN guard) are taken on
    values all-reduced over processes, so every process takes the same branch.

    Returns the metrics and every minibatch's outcome (`run.optimizer_step`'s, or
    RATIO_SKIPPED); a skipped minibatch adds no metrics.
    """
    totals: dict[str, float] = {}
    outcomes: list[str] = []
    epochs_done = 0
    for epoch in range(settings.ppo_epochs):
        order = minibatch_order(len(rollout.scores), settings.seed, iteration, epoch)
        epoch_stats: dict[str, float] = {}
        for minibatch, mine in minibatches(order, settings.per_minibatch, accelerator):
            device = rollout.scores.device
            stats, outcome = _minibatch_step(
                policy, value_model, optimizer, scheduler, accelerator, rollout, advantages,
                returns, minibatch.to(device), mine.to(device), settings, is_finite)
            outcomes.append(outcome)
            if stats is not None:
                accumulate(epoch_stats, stats, 1.0)
        epochs_done += 1
        if not epoch_stats:
            continue
        accumulate(totals, epoch_stats, 1.0)
        epoch_kl = process_mean(accelerator, epoch_stats["policy/approx_kl"])
        if (settings.target_approx_kl is not None
                and epoch_kl / epoch_stats["_count"] > settings.target_approx_kl):
            break  # early stop: the policy moved too far from the rollout policy
    return means(totals) | {"ppo/epochs_done": float(epochs_done),
                    "ppo/ratio_skipped_minibatches": float(outcomes.count(RATIO_SKIPPED))
                    }, outcomes


def _minibatch_step(policy, value_model, optimizer, scheduler, accelerator, rollout, advantages,
                    returns, minibatch, mine, settings: UpdateSettings,
                    is_finite) -> tuple[dict[str, float] | None, str]:
    """Forward and backward this process's rows `mine` of the global `minibatch`, then one
    optimizer step: (metrics or None when skipped, outcome)."""
    # Weights are shares of the global minibatch's real tokens times the process count: DDP
    # averages the processes' gradients, so the result is the token mean over all its rows.
    tokens = rollout.response_mask[minibatch].sum().float().clamp(min=1) / accelerator.num_processes
    stats: dict[str, float] = {}
    losses = []
    micro_batches = mine.split(settings.micro_batch_size)
    for index, micro in enumerate(micro_batches):
        query_ids, query_mask, response_ids, response_mask = trimmed_rows(rollout, micro)
        width = response_ids.shape[1]
        with ExitStack() as stack:
            if index < len(micro_batches) - 1:  # all-reduce once per minibatch
                for model in {id(m): m for m in (policy, value_model)}.values():
                    stack.enter_context(accelerator.no_sync(model))
            with accelerator.autocast():
                logprobs, entropy, values = settings.forward(
                    policy, value_model, query_ids, query_mask, response_ids, response_mask,
                    temperature=settings.temperature)
            policy_loss, policy_stats = ppo_policy_loss(
                logprobs, rollout.logprobs[micro, :width], advantages[micro, :width],
                response_mask, settings.clip_range)
            value_loss, value_stats = clipped_value_loss(
                values, rollout.values[micro, :width], returns[micro, :width], response_mask,
                settings.value_clip_range)
            loss = policy_loss + settings.vf_coef * value_loss
            share = response_mask.sum() / tokens
            accelerator.backward(loss * share)
        losses.append(loss.detach())
        micro_stats = policy_stats.as_dict("policy/") | value_stats.as_dict("value/")
        micro_stats["policy/entropy"] = float(masked_mean(entropy.detach(), response_mask))
        micro_stats["loss/policy"] = micro_stats.pop("policy/loss")
        micro_stats["loss/value"] = micro_stats.pop("value/loss")
        accumulate(stats, micro_stats, float(share))
    if (settings.ratio_threshold is not None
            and process_mean(accelerator, stats["policy/ratio_mean"]) > settings.ratio_threshold):
        optimizer.zero_grad(set_to_none=True)  # a loss spike in the making (trl 0.11)
        return None, RATIO_SKIPPED
    return minibatch_step(accelerator, optimizer, scheduler, stats, losses,
                          max_grad_norm=settings.max_grad_norm, is_finite=is_finite)
