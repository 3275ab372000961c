"""The one epoch/batch loop of the supervised stages (SFT, the reward model, later DPO).

A stage brings its data and two functions, one optimizer step on a batch of example indices
and a held-out evaluation; the loop brings everything else: the optimizer and schedule, seeded
epochs of (optionally length-grouped) batches that resume exactly, counts of skipped and
overflowed steps, metrics, evaluation every `run.eval_every` steps and at each epoch's end,
checkpoints, and the progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from rlhf.config import BatchTrainConfig
from rlhf.data.batching import epoch_batches
from rlhf.engine.checkpoint import TrainingState
from rlhf.engine.optim import adamw_with_schedule, count_outcomes, total_optimizer_steps
from rlhf.engine.run import Run

Update = Callable[[list[int], Callable[[dict[str, Any]], bool]], tuple[dict | None, str]]
"""(batch of example indices, is_finite) -> (metrics or None when skipped, outcome): one
optimizer step (`engine.optim.optimizer_step` gives the outcome)."""


@dataclass
class Training:
    """A model prepared for training: its optimizer and schedule, and where training stands
    (restored from the newest checkpoint when resuming)."""

    model: Any
    optimizer: Any
    scheduler: Any
    state: TrainingState
    total_steps: int

    @property
    def checkpointed(self) -> dict[str, dict]:
        return {"models": {"model": self.model}, "optimizers": {"model": self.optimizer},
                "schedulers": {"model": self.scheduler}}


def start_training(run: Run, model, train: BatchTrainConfig, n_examples: int) -> Training:
    """AdamW and its schedule over the run's optimizer steps, the model and optimizer
    prepared by accelerate, the run started (config written, checkpoint restored)."""
    total_steps = total_optimizer_steps(n_examples, batch_size=train.batch_size,
                                        epochs=train.epochs, max_steps=train.max_steps)
    optimizer, scheduler = adamw_with_schedule(
        model.parameters(), learning_rate=train.learning_rate, weight_decay=train.weight_decay,
        scheduler=train.scheduler, warmup_ratio=train.warmup_ratio, total_steps=total_steps)
    model, optimizer = run.prepare_trained(model, optimizer)
    training = Training(model=model, optimizer=optimizer, scheduler=scheduler, state=None,
                        total_steps=total_steps)
    training.state = run.start(**training.checkpointed)
    model.train()
    return training


@dataclass
class SupervisedTask:
    """What a supervised stage plugs into the loop."""

    name: str
    """The stage's name on the progress bar."""
    n_examples: int
    lengths: list[int] | None
    """Each example's length, to batch similar lengths together; None: plain shuffling."""
    update: Update
    evaluate: Callable[[], dict[str, float]]
    """Held-out metrics of the model as it is now (logged by the loop)."""
    progress: Callable[[dict[str, float]], dict[str, str]]
    """The progress bar's live numbers from a step's metrics (which have `train/loss`)."""
    evaluate_at_start: bool = False
    """Evaluate the starting model too (step 0), when it is a baseline worth seeing."""


def train_supervised(run: Run, training: Training, task: SupervisedTask, *, batch_size: int,
                     seed: int) -> dict[str, float]:
    """Epochs of seeded batches, one optimizer step each; the final held-out metrics."""
    state, total = training.state, training.total_steps
    evaluate = _evaluate_once_per_step(run, task.evaluate)
    if task.evaluate_at_start and state.step == 0:
        evaluate(0)
    bar = tqdm(total=total, initial=state.step, desc=task.name, dynamic_ncols=True,
               disable=not (run.is_main and run.config.progress))
    while state.step < total:
        batches = epoch_batches(task.n_examples, batch_size, seed=seed, epoch=state.epoch,
                                lengths=task.lengths)
        for batch in batches[state.batch_in_epoch:]:
            metrics, outcome = task.update(                                               # 1.
                batch, lambda quantities: run.finite_or_skip(state.step, quantities))
            metrics = count_outcomes(state, metrics, [outcome])
            state.step, state.batch_in_epoch = state.step + 1, state.batch_in_epoch + 1
            metrics["train/epoch"] = state.epoch + state.batch_in_epoch / len(batches)
            _show(bar, metrics, task.progress)
            if state.step % run.config.log_every == 0:                                    # 2.
                run.log(state.step, metrics)
            end_of_epoch = state.batch_in_epoch == len(batches)
            if end_of_epoch or (run.config.eval_every and
                                state.step % run.config.eval_every == 0):                 # 3.
                evaluate(state.step)
            if end_of_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            run.end_of_step(state, training.checkpointed, last=state.step == total)       # 4.
            if state.step == total:
                break
    bar.close()
    return evaluate(state.step)


def _show(bar, metrics: dict[str, float], progress) -> None:
    bar.update(1)
    if "train/loss" in metrics:  # a skipped step has no loss to show
        bar.set_postfix(**progress(metrics))


def _evaluate_once_per_step(run: Run, evaluate: Callable[[], dict[str, float]]):
    """`evaluate` logged at a step, and run at most once per step (the final evaluation often
    falls on an epoch's end, which was evaluated already)."""
    last: dict[int, dict[str, float]] = {}

    def at(step: int) -> dict[str, float]:
        if step not in last:
            last.clear()
            last[step] = evaluate()
            run.log(step, last[step])
        return last[step]

    return at
