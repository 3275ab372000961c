"""The optimizer and its schedule, and one optimizer step as every stage takes it: unscale
(fp16), clip, check for NaN/inf, step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformers import get_scheduler

from rlhf.engine.checkpoint import TrainingState
from rlhf.errors import UserError

SCHEDULER_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def adamw_with_schedule(parameters, *, learning_rate: float, weight_decay: float,
                        scheduler: str, warmup_ratio: float, total_steps: int):
    """AdamW over the parameters that train (a LoRA model's frozen base holds no optimizer
    state) and its learning-rate schedule (linear warmup, then linear/cosine/constant)."""
    trained = list({id(p): p for p in parameters if p.requires_grad}.values())  # each once
    optimizer = _adamw(trained, lr=learning_rate, weight_decay=weight_decay)
    schedule = get_scheduler(SCHEDULER_NAMES[scheduler], optimizer,
                             num_warmup_steps=math.ceil(warmup_ratio * total_steps),
                             num_training_steps=total_steps)
    return optimizer, schedule


def _adamw(parameters: list, **settings) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters' device.

    Measured on the 2-core CPU (BENCHMARKS.md): one step over 105M parameters takes 0.09 s
    fused against 0.56 s with the default multi-tensor kernel, a few percent of a PPO
    iteration at GPT-2-small size. Same update rule; results differ only by float rounding.
    """
    try:
        return torch.optim.AdamW(parameters, fused=True, **settings)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(parameters, **settings)


STEPPED, OVERFLOW, SKIPPED = "stepped", "overflow", "skipped"
"""What `optimizer_step` did: updated; skipped an fp16 loss-scale overflow (and lowered the
scale); skipped a batch with a NaN/inf that loss scaling cannot explain (run.on_nonfinite=skip)."""


def gradient_norm_after_clipping(accelerator, parameters, max_grad_norm: float) -> float:
    """Unscale fp16 gradients, clip their norm to `max_grad_norm` (0: no clipping); the norm
    before clipping, of the true (unscaled) gradients."""
    parameters = list(parameters)
    if max_grad_norm > 0:
        return float(accelerator.clip_grad_norm_(parameters, max_grad_norm))
    accelerator.unscale_gradients()
    norms = [p.grad.norm() for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def optimizer_step(accelerator, optimizer, scheduler, parameters, *, max_grad_norm: float,
                   loss: torch.Tensor, is_finite: Callable[[dict[str, Any]], bool]
                   ) -> tuple[str, float]:
    """Unscale and clip the gradients of the backward passes just made, then step:
    (outcome, gradient norm before clipping). Gradients are cleared whatever happens.

    Under fp16, GradScaler multiplies the loss by a large scale so small gradients survive
    in half precision, and expects the scaled gradients to overflow now and then: it then
    skips that update and halves the scale. Such an overflow (finite loss, inf/NaN
    gradients, scale > 1) is counted, not treated as a bad batch. A non-finite loss, or an
    overflow at a scale <= 1, is what loss scaling cannot explain: `is_finite`
    (Run.finite_or_skip) stops the run or skips the batch. The scheduler steps only with
    the optimizer, as in transformers' Trainer.
    """
    grad_norm = gradient_norm_after_clipping(accelerator, parameters, max_grad_norm)
    scaler = getattr(accelerator, "scaler", None)  # a GradScaler under fp16, else None
    overflow = not math.isfinite(grad_norm) and scaler is not None and scaler.get_scale() > 1
    quantities = {"loss": loss} if overflow else {"loss": loss, "gradient norm": grad_norm}
    if not is_finite(quantities):  # agreed by every process (gradients are synchronised)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()  # forget this step's unscale_ record, or the next step raises
        return SKIPPED, grad_norm
    optimizer.step()  # under fp16: GradScaler skips the update if it found an inf
    # accelerate's `step_was_skipped` misses the skip with fused AdamW, which GradScaler steps
    # with its found-inf flag (the kernel skips the update): an H200 fp16 run halved its
    # scale at every step and counted no overflow. The non-finite norm is the overflow.
    skipped = overflow or getattr(optimizer, "step_was_skipped", False)
    outcome = OVERFLOW if skipped else STEPPED
    if outcome == STEPPED:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return outcome, grad_norm


def count_outcomes(state: TrainingState, metrics: dict[str, float] | None,
                   outcomes: list[str]) -> dict[str, float]:
    """A step's metrics (None when it has none) with the running counts, kept in the
    checkpoint, of skipped batches and of fp16 overflow steps."""
    counts = {}
    for key, outcome in (("skipped_batches", SKIPPED), ("overflow_steps", OVERFLOW)):
        state.extra[key] = state.extra.get(key, 0) + outcomes.count(outcome)
        counts[f"train/{key}"] = state.extra[key]
    return (metrics or {}) | counts


def total_optimizer_steps(n_examples: int, *, batch_size: int, epochs: int,
                          max_steps: int) -> int:
    """Full batches per epoch times epochs, capped by max_steps (0: no cap)."""
    batches_per_epoch = n_examples // batch_size
    if batches_per_epoch == 0:
        raise UserError(f"train.batch_size {batch_size} is larger than the {n_examples} "
                        "training examples; lower train.batch_size")
    total = epochs * batches_per_epoch
    return min(total, max_steps) if max_steps else total
