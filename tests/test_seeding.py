"""Per-process seeding is deliberate (rlhf.seeding): the run seeds every stream with seed + rank,
and building a model draws its fresh weights from the seed on a forked CPU generator without
touching any other stream. torch.manual_seed inside torch.random.fork_rng(devices=[]) used to
reseed every CUDA generator too, to the same state on every process."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from rlhf.builtin_models import build_builtin
from rlhf.config import RunConfig
from rlhf.engine.run import Run
from rlhf.models import load_policy, load_reward_model
from rlhf.value_models import value_model_from_policy


def test_building_models_touches_no_cuda_generator_and_restores_the_cpu_one(
        monkeypatch, tmp_path: Path) -> None:
    base, tokenizer = build_builtin("builtin:tiny-gpt2", AutoModelForCausalLM, seed=0)
    base.save_pretrained(tmp_path / "base")  # a base model: a reward head is drawn fresh
    tokenizer.save_pretrained(tmp_path / "base")
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", reseeded.append)
    torch.random.default_generator.manual_seed(99)
    state = torch.get_rng_state()
    policy, _ = load_policy("builtin:tiny-gpt2", seed=0)
    load_reward_model("builtin:tiny-roberta", seed=1)
    head_one = load_reward_model(str(tmp_path / "base"), seed=2)[0].score.weight
    value_model_from_policy(policy, seed=3)
    assert reseeded == []
    assert torch.equal(torch.get_rng_state(), state)
    head_two = load_reward_model(str(tmp_path / "base"), seed=2)[0].score.weight
    assert torch.equal(head_one, head_two)  # the seed alone decides the fresh weights


def test_a_run_seeds_its_process_with_seed_plus_rank(tmp_path: Path) -> None:
    Run(RunConfig(output_dir=str(tmp_path / "run"), seed=7), None, stage="test")
    drawn = torch.rand(3)
    torch.manual_seed(7 + 0)  # one process: rank 0
    assert torch.equal(drawn, torch.rand(3))
