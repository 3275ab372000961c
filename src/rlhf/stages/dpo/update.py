"""One DPO optimizer step and the held-out evaluation: the configured objective on the
policy's and the reference's log-probs of each pair, micro-batches weighted by their share of
the global batch's pairs (so the gradient is the whole batch's mean, however it is split)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch

from rlhf.algo.preference import (
    dpo_loss,
    implicit_rewards,
    ipo_loss,
    robust_dpo_loss,
    simpo_loss,
)
from rlhf.algo.types import PreferenceStats
from rlhf.data.dpo import TokenizedPairs, collate_pairs
from rlhf.engine.optim import SKIPPED, optimizer_step
from rlhf.stages.dpo.reference import PairLogprobs, ReferenceSource, pair_logprobs

Objective = Callable[[PairLogprobs, PairLogprobs], tuple[torch.Tensor, PreferenceStats]]
"""(policy log-probs, reference log-probs) -> (loss, stats)."""


def _on_sums(loss, policy: PairLogprobs, reference: PairLogprobs, **settings):
    return loss(policy.chosen, policy.rejected, reference.chosen, reference.rejected, **settings)


def _on_means(policy: PairLogprobs, reference: PairLogprobs, **settings):
    return simpo_loss(policy.chosen_mean, policy.rejected_mean, **settings)


def objective(loss: str, *, beta: float, label_smoothing: float, gamma: float) -> Objective:
    """The configured loss (algo/preference.py) as a function of the two log-prob bundles:
    DPO, robust DPO and IPO on summed log-probs, SimPO on per-token means."""
    return {
        "dpo": partial(_on_sums, dpo_loss, beta=beta, label_smoothing=label_smoothing),
        "robust": partial(_on_sums, robust_dpo_loss, beta=beta, label_smoothing=label_smoothing),
        "ipo": partial(_on_sums, ipo_loss, beta=beta),
        "simpo": partial(_on_means, beta=beta, gamma=gamma),
    }[loss]


def dpo_update(model, optimizer, scheduler, accelerator, data: TokenizedPairs, batch: list[int],
               *, objective: Objective, reference: ReferenceSource, micro_batch_size: int,
               pad_id: int, max_grad_norm: float, is_finite) -> tuple[dict | None, str]:
    """One optimizer step on a global batch of pairs (this process's share, in micro-batches):
    (metrics or None when skipped, outcome of `engine.optim.optimizer_step`)."""
    per_process = len(batch) // accelerator.num_processes
    local = batch[accelerator.process_index * per_process:][:per_process]
    micro_batches = [local[i:i + micro_batch_size] for i in range(0, len(local), micro_batch_size)]
    totals: dict[str, torch.Tensor] = {}
    losses = []
    for index, indices in enumerate(micro_batches):
        sync = index == len(micro_batches) - 1  # all-reduce gradients once, after the last
        inputs = collate_pairs(data, indices, pad_id)
        with nullcontext() if sync else accelerator.no_sync(model):
            with accelerator.autocast():
                policy = pair_logprobs(model, inputs, accelerator.device)
                loss, stats = objective(policy, reference(inputs, "train"))
            share = len(indices) / len(local)  # a mean over pairs: weight by the pair share
            accelerator.backward(loss * share)
        losses.append(loss.detach())
        _accumulate(totals, stats, share)
    outcome, grad_norm = optimizer_step(accelerator, optimizer, scheduler, model.parameters(),
                                        max_grad_norm=max_grad_norm, loss=torch.stack(losses),
                                        is_finite=is_finite)
    if outcome == SKIPPED:
        return None, outcome
    metrics = _metrics(accelerator, totals, "train/")
    return metrics | {"train/grad_norm": grad_norm,
                      "train/lr": scheduler.get_last_lr()[0]}, outcome


def _accumulate(totals: dict[str, torch.Tensor], stats: PreferenceStats, weight: float) -> None:
    for key, value in stats.as_dict("").items():
        totals[key] = totals.get(key, 0.0) + torch.as_tensor(value, dtype=torch.float32) * weight


def _metrics(accelerator, totals: dict[str, torch.Tensor], prefix: str) -> dict[str, float]:
    """Means over processes (each holds an equal share of the pairs)."""
    keys = sorted(totals)
    stacked = torch.stack([totals[k] for k in keys]).to(accelerator.device)
    means = accelerator.reduce(stacked, reduction="mean").tolist()
    return {f"{prefix}{key}": value for key, value in zip(keys, means, strict=True)}


def implicit_rewards_of(loss: str, beta: float) -> Callable[[PairLogprobs, PairLogprobs],
                                                           tuple[torch.Tensor, torch.Tensor]]:
    """(B,) implicit rewards of the chosen and of the rejected responses, as the loss defines
    them: beta times the log-ratio to the reference (DPO, robust DPO, IPO), or beta times the
    mean token log-prob (SimPO)."""
    if loss == "simpo":
        return lambda policy, reference: (beta * policy.chosen_mean, beta * policy.rejected_mean)
    return lambda policy, reference: (implicit_rewards(policy.chosen, reference.chosen, beta),
                                      implicit_rewards(policy.rejected, reference.rejected, beta))


@torch.no_grad()
def evaluate_dpo(model, data: TokenizedPairs, *, objective: Objective, rewards_of,
                 reference: ReferenceSource, batch_size: int, pad_id: int,
                 accelerator) -> tuple[dict[str, float], dict[str, list[float]]]:
    """eval/ metrics over every held-out pair (each process computes all of them, so all agree)
    and the implicit rewards of the chosen and the rejected responses, for the report's
    histograms."""
    was_training = model.training
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    rewards: dict[str, list[float]] = {"chosen": [], "rejected": []}
    pairs = list(range(len(data.examples)))
    for start in range(0, len(pairs), batch_size):
        indices = pairs[start:start + batch_size]
        inputs = collate_pairs(data, indices, pad_id)
        with accelerator.autocast():
            policy = pair_logprobs(model, inputs, accelerator.device)
            reference_logprobs = reference(inputs, "test")
            _, stats = objective(policy, reference_logprobs)
        chosen, rejected = rewards_of(policy, reference_logprobs)
        rewards["chosen"] += chosen.float().tolist()
        rewards["rejected"] += rejected.float().tolist()
        _accumulate(totals, stats, len(indices) / len(pairs))
    model.train(was_training)
    return {f"eval/{k}": float(v) for k, v in totals.items()}, rewards
