"""The critic-free config refuses combinations that cannot work, naming the key to change."""

import pytest

from rlhf.config import CriticFreeConfig, load_config
from rlhf.errors import UserError

REQUIRED = ["data.path=x", "model.policy=p", "model.reward=m:f"]


def config(*overrides: str) -> CriticFreeConfig:
    return load_config(CriticFreeConfig, None, [*REQUIRED, *overrides])


@pytest.mark.parametrize("estimator", ["rloo", "grpo", "dr_grpo"])
def test_group_estimators_refuse_one_sample_per_prompt(estimator: str) -> None:
    with pytest.raises(UserError, match="generate.num_samples") as refused:
        config(f"algo.advantage={estimator}", "generate.num_samples=1")
    assert f"algo.advantage={estimator}" in str(refused.value)
    assert "at least 2" in str(refused.value)


@pytest.mark.parametrize("estimator", ["reinforce_pp", "reinforce"])
def test_batch_estimators_work_with_one_sample(estimator: str) -> None:
    assert config(f"algo.advantage={estimator}", "generate.num_samples=1").algo.advantage == \
        estimator


def test_dynamic_sampling_needs_groups() -> None:
    with pytest.raises(UserError, match="generate.num_samples"):
        config("algo.advantage=reinforce", "generate.num_samples=1", "algo.dynamic_sampling=true")


@pytest.mark.parametrize(("penalty", "estimator", "why"), [
    ("loss", "k1", "zero expected gradient"), ("reward", "k2", "k2 is a loss term")])
def test_kl_estimators_that_do_not_work_where_asked_are_refused(penalty, estimator, why) -> None:
    with pytest.raises(UserError, match="algo.kl_estimator") as refused:
        config(f"algo.kl_penalty={penalty}", f"algo.kl_estimator={estimator}")
    assert why in str(refused.value)


def test_the_batch_split_counts_responses_not_prompts() -> None:
    cfg = config("train.batch_size=6", "generate.num_samples=4", "algo.num_minibatches=3",
                 "train.micro_batch_size=4")
    assert cfg.batch_split(1) == (24, 8, 4)
    assert cfg.batch_split(2) == (12, 4, 4)
    with pytest.raises(UserError, match="train.batch_size"):
        cfg.batch_split(4)  # 6 prompts over 4 processes: a group would be split
    with pytest.raises(UserError, match="algo.num_minibatches"):
        config("train.batch_size=2", "generate.num_samples=3", "algo.num_minibatches=4")


@pytest.mark.parametrize(("key", "value"), [
    ("algo.advantage", "ppo"), ("algo.loss_aggregation", "mean"), ("algo.ratio", "seq"),
    ("algo.kl_penalty", "both"), ("algo.clip_low", "0"), ("algo.baseline_decay", "1.0"),
    ("generate.num_samples", "0"), ("algo.token_sum_divisor", "0")])
def test_bad_values_name_their_key(key: str, value: str) -> None:
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        config(f"{key}={value}")
