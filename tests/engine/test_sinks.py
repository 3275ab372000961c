"""run.report_to: TensorBoard and W&B (offline) receive exactly what metrics.jsonl holds, and
write inside the run directory."""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def jsonl_metrics(path: Path) -> dict[int, dict[str, float]]:
    """step -> every metric logged at that step (a step may have several lines)."""
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps[record.pop("step")].update(record)
    return dict(steps)


def tensorboard_metrics(folder: Path) -> dict[int, dict[str, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for tag in events.Tags()["scalars"]:
        for event in events.Scalars(tag):
            steps[event.step][tag] = event.value
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    return dict(steps)


def wandb_records(run_file: Path, env: dict[str, str]) -> list[dict]:
    """The records of an offline run's .wandb log, decoded by W&B's own `wandb leet inspect`."""
    text = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json",
                           str(run_file)], env=env, check=True, capture_output=True, text=True,
                          timeout=120).stdout
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wandb_history(records: list[dict]) -> dict[int, dict[str, float]]:
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for record in records:
        if record["type"] == "history":
            item = record["history"]["item"]
            steps[item["_step"]].update({k: v for k, v in item.items() if not k.startswith("_")})
    return dict(steps)


@pytest.mark.slow
def test_tensorboard_and_wandb_hold_the_metrics_of_metrics_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    out, home = tmp_path / "rm-tiny", tmp_path / "home"
    # Offline, and every W&B and user-level folder inside tmp_path: no network, no ~/.config.
    env = os.environ | {
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(home / "wandb-dir"),
        "WANDB_CONFIG_DIR": str(home / "wandb-config"), "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"), "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WANDB_PROJECT", None)
    run = subprocess.run(
        [sys.executable, "-m", "rlhf.cli", "train-reward", "--config",
         str(ROOT / "configs/reward/tiny.yaml"), "train.max_steps=3", "data.max_samples=100",
         f"run.output_dir={out}", "run.report_to=[tensorboard,wandb]", "run.progress=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = jsonl_metrics(out / "metrics.jsonl")
    assert sorted(expected) == [1, 2, 3] and "eval/accuracy" in expected[3]

    # TensorBoard: one run in RUN/tensorboard (hparams beside the scalars, no subfolder).
    assert not [p for p in (out / "tensorboard").iterdir() if p.is_dir()]
    board = tensorboard_metrics(out / "tensorboard")
    assert {s: sorted(m) for s, m in board.items()} == {s: sorted(m) for s, m in expected.items()}
    for step, metrics in expected.items():  # TensorBoard stores float32
        assert board[step] == pytest.approx(metrics, rel=1e-6, abs=1e-30)

    # W&B: one offline run in RUN/wandb, named after the run directory, full per-step history.
    run_files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    assert not (home / "wandb-dir" / "wandb").exists()
    records = wandb_records(run_files[0], env)
    header = next(r["run"] for r in records if r["type"] == "run")
    assert (header["project"], header["display_name"], header["job_type"]) == \
        ("rlhf", "rm-tiny", "reward")
    config = [r["config"]["update"] for r in records if r["type"] == "config"]
    assert any(c.get("train", {}).get("max_steps") == 3 for c in config)
    history = wandb_history(records)
    assert {s: sorted(m) for s, m in history.items()} == \
        {s: sorted(m) for s, m in expected.items()}
    for step, metrics in expected.items():
        assert history[step] == pytest.approx(metrics, rel=1e-12, abs=1e-300)


def test_wandb_that_cannot_start_is_one_clear_error() -> None:
    """No API key (or no server) is the user's to fix: one line naming run.report_to, not a
    traceback from inside wandb; any other failure is left alone."""
    errors = pytest.importorskip("wandb.errors")
    from rlhf.engine.sinks import start_trackers
    from rlhf.errors import UserError

    class Accelerator:
        def __init__(self, error: Exception):
            self.error = error

        def init_trackers(self, project_name: str) -> None:
            raise self.error

    with pytest.raises(UserError, match=r"run.report_to: W&B could not start \(No API key"
                                        r".*wandb login.*WANDB_MODE=offline"):
        start_trackers(Accelerator(errors.UsageError("No API key configured.")), None)
    with pytest.raises(KeyError):
        start_trackers(Accelerator(KeyError("x")), None)
