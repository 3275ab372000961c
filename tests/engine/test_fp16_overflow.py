"""fp16 loss scaling: a gradient overflow skips the step, lowers the scale and is counted; only a
NaN/inf that loss scaling cannot explain stops the run (or is skipped with run.on_nonfinite=skip).

fp16 needs a GPU in accelerate, so the accelerator here is a CPU one made to look like fp16:
its GradScaler is real (torch.amp.GradScaler on the CPU) and every call goes through
accelerate's own code (backward scales the loss, clip_grad_norm_ unscales, the prepared
optimizer's step asks the scaler). The overflow is simulated by planting an inf in a gradient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from rlhf.config import RunConfig
from rlhf.engine.checkpoint import TrainingState
from rlhf.engine.optim import OVERFLOW, SKIPPED, STEPPED, optimizer_step
from rlhf.engine.run import Run
from rlhf.errors import NonFiniteError


@pytest.fixture
def fp16(monkeypatch):
    """An Accelerator whose fp16 loss scaling is real, on the CPU."""
    AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=True)
    monkeypatch.setattr(Accelerator, "mixed_precision", property(lambda self: "fp16"))
    accelerator.native_amp = True
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    return accelerator


def setup(accelerator, fused: bool = False):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    return model, accelerator.prepare_optimizer(optimizer), scheduler  # as the stages do


def backward(accelerator, model, *, plant: float | None = None, loss_scale: float = 1.0):
    loss = model(torch.ones(2, 4)).pow(2).mean() * loss_scale
    accelerator.backward(loss)  # multiplies by the loss scale under fp16
    if plant is not None:
        model.weight.grad[0, 0] = plant
    return loss.detach()


def stop_on_nonfinite(quantities: dict) -> bool:
    """run.on_nonfinite=stop: any NaN/inf it is shown ends the run."""
    for name, value in quantities.items():
        if not torch.isfinite(torch.as_tensor(value)).all():
            raise NonFiniteError(f"non-finite {name}")
    return True


def skip_nonfinite(quantities: dict) -> bool:
    """run.on_nonfinite=skip."""
    return all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in quantities.values())


def step(accelerator, model, optimizer, scheduler, loss, is_finite):
    return optimizer_step(accelerator, optimizer, scheduler, model.parameters(),
                          max_grad_norm=1.0, loss=loss, is_finite=is_finite)


@pytest.mark.parametrize("fused", [False, True], ids=["foreach AdamW", "fused AdamW"])
def test_an_overflow_skips_the_step_lowers_the_scale_and_training_goes_on(fp16, fused) -> None:
    """Fused AdamW (what every stage uses) takes GradScaler's found-inf flag into its kernel,
    so accelerate's `step_was_skipped` stays False: before the fix an H200 fp16 run halved
    its scale at every step and counted no overflow."""
    model, optimizer, scheduler = setup(fp16, fused)
    before = model.weight.detach().clone()
    loss = backward(fp16, model, plant=float("inf"))
    outcome, grad_norm = step(fp16, model, optimizer, scheduler, loss, stop_on_nonfinite)
    assert outcome == OVERFLOW and not torch.isfinite(torch.tensor(grad_norm))  # did not stop
    assert torch.equal(model.weight, before)  # no update
    assert fp16.scaler.get_scale() == 2.0**9  # halved
    assert scheduler.get_last_lr() == [0.1]  # the schedule waits for a real step
    assert all(p.grad is None for p in model.parameters())
    # The next step works (before the fix: "unscale_() has already been called").
    loss = backward(fp16, model)
    outcome, grad_norm = step(fp16, model, optimizer, scheduler, loss, stop_on_nonfinite)
    assert outcome == STEPPED and 0 < grad_norm < 1e3  # the norm of the unscaled gradient
    assert not torch.equal(model.weight, before) and scheduler.get_last_lr() == [0.05]


def test_a_nonfinite_loss_is_not_an_overflow(fp16) -> None:
    model, optimizer, scheduler = setup(fp16)
    loss = backward(fp16, model, loss_scale=float("nan"))
    with pytest.raises(NonFiniteError, match="loss"):
        step(fp16, model, optimizer, scheduler, loss, stop_on_nonfinite)


def test_an_overflow_at_scale_one_is_real_and_skip_leaves_the_scaler_usable(fp16) -> None:
    fp16.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)  # the gradient itself is inf
    model, optimizer, scheduler = setup(fp16)
    loss = backward(fp16, model, plant=float("inf"))
    with pytest.raises(NonFiniteError, match="gradient norm"):
        step(fp16, model, optimizer, scheduler, loss, stop_on_nonfinite)
    model, optimizer, scheduler = setup(fp16)
    fp16.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    loss = backward(fp16, model, plant=float("nan"))
    assert step(fp16, model, optimizer, scheduler, loss, skip_nonfinite)[0] == SKIPPED
    loss = backward(fp16, model)  # before the fix: "unscale_() has already been called"
    assert step(fp16, model, optimizer, scheduler, loss, skip_nonfinite)[0] == STEPPED


def test_the_loss_scale_is_part_of_the_checkpoint(tmp_path: Path, monkeypatch) -> None:
    def fp16_run(resume: bool) -> Run:
        run = Run(RunConfig(output_dir=str(tmp_path / "run"), resume=resume), None, stage="t")
        monkeypatch.setattr(run.accelerator, "scaler", torch.amp.GradScaler("cpu"))
        return run

    run = fp16_run(resume=False)
    run.accelerator.scaler.scale(torch.ones(()))  # the scale is made at first use
    run.accelerator.scaler.update(new_scale=123.0)
    model = torch.nn.Linear(2, 1)
    run.save_checkpoint(TrainingState(step=1), {"model": model}, {}, {})
    resumed = fp16_run(resume=True)
    assert resumed.accelerator.scaler.get_scale() != 123.0
    resumed.load_latest({"model": model}, {}, {})
    assert resumed.accelerator.scaler.get_scale() == 123.0
