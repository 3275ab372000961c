"""The held-out evaluation of RL runs (`eval` section): logged before training and every N
iterations, documented, and invisible to training (marked slow: tiny end-to-end runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.config import CriticFreeConfig, PPOConfig, load_config
from rlhf.stages.critic_free.train import train_critic_free
from rlhf.stages.ppo.train import train_ppo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EVAL = ["eval.every=2", "eval.prompts=8", "eval.reward=rlhf.reward.rules:response_length"]
STAGES = {
    "ppo": (PPOConfig, "configs/ppo/tiny.yaml", train_ppo,
            ["train.batch_size=8", "ppo.total_episodes=32", "ppo.normalization_samples=8"]),
    "critic_free": (CriticFreeConfig, "configs/critic_free/grpo_tiny.yaml", train_critic_free,
                    ["train.batch_size=2", "algo.total_prompts=8"]),
}


def run(stage: str, out: Path, *extra: str) -> list[dict]:
    schema, path, train, settings = STAGES[stage]
    train(load_config(schema, ROOT / path, [f"run.output_dir={out}", "run.progress=false",
                                            *settings, *extra]))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def without(rows: list[dict], *prefixes: str) -> list[dict]:
    kept = [{k: v for k, v in r.items() if not k.startswith(prefixes)} for r in rows]
    return [r for r in kept if len(r) > 1]  # the step-0 line holds only eval/ keys


@pytest.mark.parametrize("stage", ["ppo", "critic_free"])
def test_evaluation_is_logged_documented_and_leaves_training_unchanged(stage: str,
                                                                       tmp_path: Path) -> None:
    plain = run(stage, tmp_path / "plain")
    evaluated = run(stage, tmp_path / "eval", *EVAL)
    steps = [r["step"] for r in evaluated if "eval/score" in r]
    assert steps == [0, 2, 4]
    assert evaluated[0]["eval/kl"] == 0.0  # the policy is the reference before training
    assert all(0 < r["eval/distinct_fraction"] <= 1 for r in evaluated if "eval/score" in r)
    documented = (ROOT / "docs" / "metrics.md").read_text().split("## Held-out evaluation")[1]
    for key in evaluated[-1]:
        if key.startswith("eval/"):
            assert f"`{key}`" in documented, key
    # Sampling for the evaluation is seeded per prompt on its own: training is untouched.
    timing = ("time/", "throughput/")
    assert without(evaluated, "eval/", *timing) == without(plain, *timing)
    a = load_file(tmp_path / "plain" / "policy" / "model.safetensors")
    b = load_file(tmp_path / "eval" / "policy" / "model.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)
