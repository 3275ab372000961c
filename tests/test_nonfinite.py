"""NaN/inf guard: a non-finite loss, reward or gradient stops the run with a message naming the
step and the quantity, leaving the last good checkpoint as it was; run.on_nonfinite=skip skips
that batch instead and counts it in train/skipped_batches. NaN is injected by wrapping the
function that produces the scores (reward, SFT), the log-probs (DPO) or by the reward function
itself (PPO, critic-free)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rlhf.reward.rules
import rlhf.stages.dpo.update
import rlhf.stages.reward
import rlhf.stages.sft
from rlhf.cli import main
from rlhf.config import (
    CriticFreeConfig,
    DPOConfig,
    PPOConfig,
    RewardConfig,
    SFTConfig,
    load_config,
)
from rlhf.errors import NonFiniteError
from rlhf.stages.critic_free.train import train_critic_free
from rlhf.stages.dpo.train import train_dpo
from rlhf.stages.ppo.train import train_ppo
from rlhf.stages.reward import train_reward
from rlhf.stages.sft import train_sft

pytestmark = pytest.mark.slow  # tiny end-to-end runs, ~20 s in all

ROOT = Path(__file__).resolve().parents[1]
BAD_CALL = 3  # the third training forward returns NaN: step 3 (batch 3) is the bad one


def poisoned(function, bad_call: int = BAD_CALL):
    """`function` whose `bad_call`-th call (1-based) returns NaN instead of its result."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        result = function(*args, **kwargs)
        if calls["n"] != bad_call:
            return result
        if dataclasses.is_dataclass(result):  # DPO's log-probs of a batch of pairs
            return type(result)(*(getattr(result, f.name) * float("nan")
                                  for f in dataclasses.fields(result)))
        if isinstance(result, tuple):  # (logprobs, mask)
            return (result[0] * float("nan"), *result[1:])
        if isinstance(result, list):  # a reward function's scores
            return [float("nan")] * len(result)
        return result * float("nan")

    return wrapper


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


STAGES = {
    "reward": (RewardConfig, "configs/reward/tiny.yaml", train_reward,
               (rlhf.stages.reward, "sequence_scores"),
               ["train.max_steps=5", "data.max_samples=200", "run.eval_every=0"], "loss"),
    "sft": (SFTConfig, "configs/sft/tiny.yaml", train_sft,
            (rlhf.stages.sft, "next_token_logprobs"),
            ["train.max_steps=5", "data.max_samples=200", "run.eval_every=0",
             "train.eval_batch_size=1000"], "loss"),
    "dpo": (DPOConfig, "configs/dpo/tiny.yaml", train_dpo,
            (rlhf.stages.dpo.update, "pair_logprobs"),
            ["train.max_steps=5", "data.max_samples=200", "run.eval_every=0",
             "train.eval_batch_size=1000"], "loss"),
    "ppo": (PPOConfig, "configs/ppo/tiny.yaml", train_ppo,
            (rlhf.reward.rules, "vivid_word_fraction"),
            ["train.batch_size=8", "ppo.total_episodes=40", "ppo.score_normalization=none",
             "ppo.num_minibatches=1"], "reward"),
    "critic_free": (CriticFreeConfig, "configs/critic_free/grpo_tiny.yaml", train_critic_free,
                    (rlhf.reward.rules, "vivid_word_fraction"),
                    ["train.batch_size=2", "algo.total_prompts=10", "algo.num_minibatches=1"],
                    "reward"),
}


def configure(stage: str, out: Path, *overrides: str):
    schema, path, *_, extra, _ = STAGES[stage]
    return load_config(schema, ROOT / path, [f"run.output_dir={out}", "run.progress=false",
                                             "run.save_every=2", *extra, *overrides])


def poison(stage: str, monkeypatch) -> None:
    module, name = STAGES[stage][3]
    bad_call = BAD_CALL
    if stage in ("sft", "dpo"):
        bad_call += 1  # its first call is the step-0 evaluation (one batch)
    monkeypatch.setattr(module, name, poisoned(getattr(module, name), bad_call))


@pytest.mark.parametrize("stage", ["reward", "sft", "dpo", "ppo", "critic_free"])
def test_nonfinite_stops_with_step_and_quantity_and_keeps_the_checkpoint(
        stage: str, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    cfg = configure(stage, out)
    poison(stage, monkeypatch)
    with pytest.raises(NonFiniteError) as stopped:
        STAGES[stage][2](cfg)
    message = str(stopped.value)
    assert f"non-finite {STAGES[stage][5]}" in message and "at step 3" in message, message
    assert "checkpoint-2" in message and "run.on_nonfinite=skip" in message
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert all(math.isfinite(v) for r in records(out) for v in r.values()
               if isinstance(v, float))  # nothing non-finite reached the log
    assert max(r["step"] for r in records(out)) == 2  # stopped before logging step 3


@pytest.mark.parametrize("stage", ["reward", "sft", "dpo", "ppo", "critic_free"])
def test_skip_option_skips_the_batch_and_counts_it(stage: str, tmp_path: Path,
                                                   monkeypatch) -> None:
    out = tmp_path / "run"
    cfg = configure(stage, out, "run.on_nonfinite=skip")
    poison(stage, monkeypatch)
    STAGES[stage][2](cfg)
    train_lines = [r for r in records(out) if "train/skipped_batches" in r]
    counts = {r["step"]: r["train/skipped_batches"] for r in train_lines}
    assert counts[2] == 0 and counts[3] == 1 and counts[max(counts)] == 1
    final = out / ("policy" if stage in ("ppo", "critic_free") else "model") / "model.safetensors"
    assert all(torch.isfinite(t).all() for t in load_file(final).values())


def test_cli_exits_3_with_one_line_and_the_good_checkpoint_resumes_exactly(
        tmp_path: Path, monkeypatch, capfd) -> None:
    stopped, clean = tmp_path / "stopped", tmp_path / "clean"
    argv = ["train-reward", "--config", str(ROOT / "configs/reward/tiny.yaml"),
            "run.progress=false", "run.save_every=2", *STAGES["reward"][4]]
    with monkeypatch.context() as patch:
        poison("reward", patch)
        capfd.readouterr()
        assert main([*argv, f"run.output_dir={stopped}"]) == 3
        err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlhf train-reward: stopped: non-finite"), err
    # The NaN gone (a transient fault), resuming from the kept checkpoint gives exactly the
    # run that never saw it: the checkpoint was complete and untouched.
    assert main([*argv, f"run.output_dir={stopped}", "run.resume=true"]) == 0
    assert main([*argv, f"run.output_dir={clean}"]) == 0
    want = load_file(clean / "model" / "model.safetensors")
    got = load_file(stopped / "model" / "model.safetensors")
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert records(stopped) == records(clean)
