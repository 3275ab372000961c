"""Mixed precision: every model of a run computes at the precision of the trained ones.

A policy prepared by accelerate runs under bf16 autocast; a reference or reward model left
outside it ran in float32, so KL(policy || reference) at the first iteration, where the two
are the same model, was not 0. Checked on CPU with bf16 autocast (the same code path as a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhf.config import PPOConfig, RunConfig, load_config
from rlhf.engine.run import Run
from rlhf.models import frozen_copy, load_policy, load_reward_model
from rlhf.reward.scorers import RewardModelScorer

ROOT = Path(__file__).resolve().parents[2]


def bf16_run(tmp_path: Path) -> Run:
    return Run(RunConfig(output_dir=str(tmp_path / "run"), mixed_precision="bf16"), None,
               stage="test")


def test_frozen_model_computes_exactly_as_the_prepared_trained_one(tmp_path: Path) -> None:
    run = bf16_run(tmp_path)
    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    reference = run.prepare_frozen(frozen_copy(policy))
    policy = run.accelerator.prepare(policy)
    ids = torch.randint(0, len(tokenizer), (3, 12))
    with torch.no_grad():
        want = policy(input_ids=ids).logits
        got = reference(input_ids=ids).logits
        float32 = load_policy("builtin:tiny-gpt2", seed=0)[0](input_ids=ids).logits  # as before
    assert torch.equal(got, want)  # bit for bit: the KL at iteration 1 is exactly 0
    assert not torch.equal(float32, want)  # the test can fail: bf16 differs from float32
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())


def test_reward_model_scores_under_the_runs_autocast(tmp_path: Path) -> None:
    run = bf16_run(tmp_path)
    model, tokenizer = load_reward_model("builtin:tiny-gpt2", seed=3)  # a decoder: score head
    scorer = RewardModelScorer(model, tokenizer, template="concat")
    prompts, responses = ["The harbour was quiet."] * 2, ["Gulls wheeled.", "Boats."]
    float32 = scorer(prompts, responses)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = scorer(prompts, responses)
    scorer.model = run.prepare_frozen(scorer.model)
    with run.accelerator.autocast():  # how PPO's rollout calls it
        got = scorer(prompts, responses)
    assert torch.equal(got, want) and not torch.equal(got, float32)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "no"])
def test_ppo_iteration_one_has_zero_kl_at_any_precision(precision: str, tmp_path: Path) -> None:
    from rlhf.stages.ppo.train import train_ppo

    out = tmp_path / precision
    cfg = load_config(PPOConfig, ROOT / "configs" / "ppo" / "tiny.yaml", [
        f"run.output_dir={out}", "run.progress=false", f"run.mixed_precision={precision}",
        "ppo.total_episodes=64", "ppo.normalization_samples=16"])
    train_ppo(cfg)
    first, second = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert first["objective/kl"] == 0.0  # policy == reference: exactly, not approximately
    assert second["objective/kl"] != 0.0  # and KL is measured: the policy moved


def test_fp16_without_a_gpu_is_a_clear_error_not_silent_float32(tmp_path: Path) -> None:
    from rlhf.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("fp16 is real on this machine")
    with pytest.raises(UserError, match="run.mixed_precision=fp16 needs a GPU"):
        Run(RunConfig(output_dir=str(tmp_path / "run"), mixed_precision="fp16"), None,
            stage="test")
