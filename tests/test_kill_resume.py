"""Kill and resume, for real: each stage runs as a subprocess of the CLI, is killed (SIGKILL)
between checkpoints, while a checkpoint is being written, just before its rename and just
before old checkpoints are pruned, and stopped once with SIGTERM/SIGINT; every restart uses
run.resume=true. The end result must be bit-identical to one uninterrupted run: the final
weights, every metric (timings aside) and the logged samples.

Kill points are reached with the RLHF_TEST_KILL_AT hook in rlhf.engine.checkpoint (the process kills itself
there, so each point is hit deterministically); a last test kills a PPO run from outside at
whatever moment it has reached.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12

STAGES = {
    "sft": ["train-sft", "--config", str(ROOT / "configs/sft/tiny.yaml"),
            f"train.max_steps={STEPS}", "run.eval_every=5", "data.max_samples=400"],
    "reward": ["train-reward", "--config", str(ROOT / "configs/reward/tiny.yaml"),
               f"train.max_steps={STEPS}", "run.eval_every=5", "data.max_samples=400"],
    "ppo": ["train-ppo", "--config", str(ROOT / "configs/ppo/tiny.yaml"), "train.batch_size=8",
            f"ppo.total_episodes={8 * STEPS}", "ppo.normalization_samples=16",
            "samples_every=2"],
    "critic_free": ["train-critic-free", "--config", str(ROOT / "configs/critic_free/grpo_tiny.yaml"),
                    "train.batch_size=2", f"algo.total_prompts={2 * STEPS}", "samples_every=2"],
}
FINAL_WEIGHTS = {"sft": ["model/model.safetensors"], "reward": ["model/model.safetensors"],
                 "ppo": ["policy/model.safetensors", "value/model.safetensors"],
                 "critic_free": ["policy/model.safetensors"]}

# (kill point, signal, checkpoints on disk afterwards, leftover temporary checkpoint)
CHAIN = [
    ("after_step:4", "SIGKILL", [3], None),
    ("checkpoint_weights:6", "SIGKILL", [3], ".checkpoint-6.tmp"),  # mid-write
    ("checkpoint_rename:9", "SIGKILL", [6], ".checkpoint-9.tmp"),  # written, not renamed
    ("after_step:10", "SIGTERM", [10], None),  # graceful: checkpoint now, exit 0
    ("checkpoint_prune:12", "SIGKILL", [10, 12], None),  # renamed, old one not pruned yet
]


def cli(stage: str, out: Path, *extra: str, kill_at: str | None = None,
        background: bool = False):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.pop("RLHF_TEST_KILL_AT", None)
    if kill_at:
        env["RLHF_TEST_KILL_AT"] = kill_at
    command = [sys.executable, "-m", "rlhf.cli", *STAGES[stage], f"run.output_dir={out}",
               "run.save_every=3", "run.keep_last=1", "run.progress=false", *extra]
    if background:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def checkpoints(out: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))


def without_timings(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
            for r in records]


def assert_same_run(stage: str, expected: Path, actual: Path) -> None:
    for name in FINAL_WEIGHTS[stage]:
        want, got = load_file(expected / name), load_file(actual / name)
        assert want.keys() == got.keys()
        for key in want:
            assert want[key].equal(got[key]), f"{name}: {key} differs"
    assert without_timings(actual / "metrics.jsonl") == without_timings(expected / "metrics.jsonl")
    if (expected / "samples.jsonl").exists():
        assert (actual / "samples.jsonl").read_text() == (expected / "samples.jsonl").read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per stage, made once."""
    made = {}

    def get(stage: str) -> Path:
        if stage not in made:
            out = tmp_path_factory.mktemp(f"{stage}-whole") / "run"
            result = cli(stage, out)
            assert result.returncode == 0, result.stderr[-2000:]
            made[stage] = out
        return made[stage]

    return get


@pytest.mark.parametrize("stage", ["sft", "reward", "ppo", "critic_free"])
def test_killed_at_every_kind_of_point_and_resumed_is_bit_identical(stage, tmp_path,
                                                                    uninterrupted) -> None:
    out = tmp_path / "run"
    for index, (point, signame, left, leftover) in enumerate(CHAIN):
        extra = ["run.resume=true"] if index else []
        result = cli(stage, out, *extra, kill_at=f"{point}:{signame}")
        if signame == "SIGKILL":
            assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        else:  # a graceful stop: exit 0, one line saying how to resume
            assert result.returncode == 0, result.stderr[-2000:]
            assert "stopped by SIGTERM at step 10" in result.stderr
            assert "run.resume=true" in result.stderr.splitlines()[-1]
        assert checkpoints(out) == left, point
        if leftover:
            assert (out / leftover).is_dir()  # the half-written one is there, and ignored
    result = cli(stage, out, "run.resume=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list(out.glob(".checkpoint-*"))
    assert_same_run(stage, uninterrupted(stage), out)


def _wait_for_step(out: Path, step: int, process, timeout: float = 120.0) -> None:
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        if metrics.exists() and any(json.loads(line).get("step", 0) >= step
                                    for line in metrics.read_text().splitlines()[:-1]):
            return
        time.sleep(0.02)
    raise AssertionError("no progress")


@pytest.mark.extended  # `make test-extended`: the chain test above covers every kill point
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_ppo_signalled_from_outside_at_any_moment_resumes_identically(signum, tmp_path,
                                                                      uninterrupted) -> None:
    out = tmp_path / "run"
    process = cli("ppo", out, background=True)
    _wait_for_step(out, 4, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 0, stderr[-2000:]
        assert "stopped by SIGINT" in stderr and "run.resume=true" in stderr
    result = cli("ppo", out, "run.resume=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_run("ppo", uninterrupted("ppo"), out)
