"""Run plumbing: run directory, metrics, atomic checkpoints and exact RNG/optimizer resume."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhf.config import RewardConfig, RunConfig
from rlhf.engine.checkpoint import TrainingState, list_checkpoints
from rlhf.engine.run import Run
from rlhf.errors import UserError


def make_run(tmp_path: Path, **overrides) -> Run:
    """A started run (directory written); resuming runs restore in the test itself."""
    run_config = RunConfig(output_dir=str(tmp_path / "run"), progress=False, **overrides)
    run = Run(run_config, RewardConfig(run=run_config), stage="test")
    if not run_config.resume:
        run.start({}, {}, {})
    return run


def tiny_training():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def train_steps(model, optimizer, scheduler, n: int) -> None:
    for _ in range(n):
        loss = model(torch.randn(8, 4)).pow(2).mean()  # draws from the global RNG
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def test_run_directory_holds_resolved_config_and_metrics(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    run.log(1, {"train/loss": torch.tensor(0.5), "train/accuracy": 0.75})
    assert "output_dir:" in (tmp_path / "run" / "config.yaml").read_text()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 1, "train/loss": 0.5, "train/accuracy": 0.75}


def test_resume_restores_weights_optimizer_scheduler_and_rng(tmp_path: Path) -> None:
    model, optimizer, scheduler = tiny_training()
    run = make_run(tmp_path, keep_last=5)
    parts = {"models": {"m": model}, "optimizers": {"m": optimizer}, "schedulers": {"m": scheduler}}
    train_steps(model, optimizer, scheduler, 3)
    run.log(3, {"x": 1.0})
    run.save_checkpoint(TrainingState(step=3, epoch=1, batch_in_epoch=2, extra={"kl": 0.1}),
                        **parts)
    run.log(4, {"x": 2.0})
    train_steps(model, optimizer, scheduler, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    after = (random.random(), np.random.rand(), torch.rand(1))

    model2, optimizer2, scheduler2 = tiny_training()
    torch.manual_seed(123)  # disturb every RNG; resume must put them back
    random.seed(5)
    np.random.seed(5)
    resumed = make_run(tmp_path, resume=True)
    state = resumed.load_latest({"m": model2}, {"m": optimizer2}, {"m": scheduler2})
    assert (state.step, state.epoch, state.batch_in_epoch, state.extra) == (3, 1, 2, {"kl": 0.1})
    train_steps(model2, optimizer2, scheduler2, 2)
    for key, value in model2.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert (random.random(), np.random.rand(), torch.rand(1)) == after
    steps = [json.loads(line)["step"] for line in (tmp_path / "run/metrics.jsonl").open()]
    assert steps == [3]  # the line logged after the checkpoint is dropped on resume


def test_half_written_checkpoint_is_never_picked_up(tmp_path: Path) -> None:
    model, optimizer, scheduler = tiny_training()
    run = make_run(tmp_path)
    run.save_checkpoint(TrainingState(step=2), {"m": model}, {"m": optimizer}, {"m": scheduler})
    (tmp_path / "run" / ".checkpoint-4.tmp").mkdir()  # a crash during the next write
    broken = tmp_path / "run" / "checkpoint-6"
    broken.mkdir()  # a directory without its state file is incomplete too
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [2]


def test_keep_last_prunes_oldest_and_keeps_newest(tmp_path: Path) -> None:
    model, optimizer, scheduler = tiny_training()
    run = make_run(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        run.save_checkpoint(TrainingState(step=step), {"m": model}, {"m": optimizer},
                            {"m": scheduler})
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [2, 3]
    assert not list((tmp_path / "run").glob(".checkpoint-*"))


def test_existing_checkpoints_are_not_clobbered_without_resume(tmp_path: Path) -> None:
    model, optimizer, scheduler = tiny_training()
    run = make_run(tmp_path)
    run.save_checkpoint(TrainingState(step=1), {"m": model}, {"m": optimizer}, {"m": scheduler})
    with pytest.raises(UserError, match="already has checkpoints.*run.resume=true"):
        make_run(tmp_path)
    assert list_checkpoints(tmp_path / "run")


def test_optimizer_state_loads_without_pickle(tmp_path: Path) -> None:
    model, optimizer, scheduler = tiny_training()
    train_steps(model, optimizer, scheduler, 1)
    run = make_run(tmp_path)
    path = run.save_checkpoint(TrainingState(step=1), {"m": model}, {"m": optimizer},
                               {"m": scheduler})
    torch.load(path / "optimizer-m.pt", weights_only=True)
    torch.load(path / "scheduler-m.pt", weights_only=True)
    assert (path / "m.safetensors").is_file()


def test_missing_tracker_package_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match="pip install 'rlhf\\[wandb\\]'"):
        make_run(tmp_path, report_to=["wandb"])
