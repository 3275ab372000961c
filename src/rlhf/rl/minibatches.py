"""What every RL update shares: the order of the global batch's rows in each epoch, the rows
of a micro-batch trimmed to their longest response, running sums of its statistics, and the
optimizer step that ends a minibatch."""

from __future__ import annotations

import torch

from rlhf.algo.types import Rollout
from rlhf.engine.optim import SKIPPED, optimizer_step
from rlhf.rl.generation import row_seed


def minibatch_order(n_rows: int, seed: int, iteration: int, epoch: int) -> torch.Tensor:
    """(n_rows,) the order of the global batch's rows in one update epoch, from a generator
    keyed by (seed, iteration, epoch): the same minibatches for any number of processes, and on
    resume, whatever the RNG state."""
    generator = torch.Generator().manual_seed(row_seed("minibatches", seed, iteration, epoch))
    return torch.randperm(n_rows, generator=generator)


def minibatches(order: torch.Tensor, per_process: int, accelerator):
    """(global minibatch, this process's rows of it) for each minibatch of an epoch's `order`:
    global minibatches of per_process rows per process, process p taking the p-th share."""
    world, rank = accelerator.num_processes, accelerator.process_index
    for start in range(0, len(order), per_process * world):
        minibatch = order[start:start + per_process * world]
        yield minibatch, minibatch[rank * per_process:(rank + 1) * per_process]


def trimmed_rows(rollout: Rollout, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The (query, response) tensors of some rows, trimmed to their longest real response."""
    mask = rollout.response_mask[index]
    width = max(int(mask.sum(1).max()), 1)
    return (rollout.query_ids[index], rollout.query_mask[index],
            rollout.response_ids[index, :width], mask[:, :width])


def process_mean(accelerator, value: float) -> float:
    """The mean of a float over processes (the float itself with one process)."""
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.reduce(torch.tensor(value, device=accelerator.device), "mean"))


def accumulate(totals: dict[str, float], stats: dict[str, float], weight: float) -> None:
    """Weighted running sums; `_count` counts unweighted entries. ratio_max keeps the max."""
    for key, value in stats.items():
        if key == "policy/ratio_max":
            totals[key] = max(totals.get(key, float("-inf")), value)
        elif key == "_count":
            totals[key] = totals.get(key, 0.0) + value
        else:
            totals[key] = totals.get(key, 0.0) + weight * value


def means(totals: dict[str, float]) -> dict[str, float]:
    """Running sums divided by their `_count`; ratio_max stays a maximum."""
    if not totals:
        return {}
    count = totals.pop("_count")
    result = {key: value / count for key, value in totals.items()}
    if "policy/ratio_max" in totals:
        result["policy/ratio_max"] = totals["policy/ratio_max"]
    return result


def stats_over_processes(run, stats: dict[str, float]) -> dict[str, float]:
    """An update's statistics over processes (`run`: an engine.run.Run): means, each process's
    share weighted so that the mean is the global value, except the ratio's maximum."""
    metrics = run.mean_over_processes(stats)
    if run.accelerator.num_processes > 1 and "policy/ratio_max" in stats:
        metrics["policy/ratio_max"] = float(run.accelerator.reduce(
            torch.tensor(stats["policy/ratio_max"], device=run.device), "max"))
    return metrics


def minibatch_step(accelerator, optimizer, scheduler, stats: dict[str, float],
                   losses: list[torch.Tensor], *, max_grad_norm: float,
                   is_finite) -> tuple[dict[str, float] | None, str]:
    """The optimizer step after a minibatch's micro-batches (`engine.optim.optimizer_step`):
    (its statistics with the gradient norm and a `_count`, or None when skipped; outcome)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    outcome, grad_norm = optimizer_step(
        accelerator, optimizer, scheduler, parameters, max_grad_norm=max_grad_norm,
        loss=torch.stack(losses), is_finite=is_finite)
    if outcome == SKIPPED:
        return None, outcome
    return stats | {"policy/grad_norm": grad_norm, "_count": 1.0}, outcome
