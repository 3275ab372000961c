"""Pieces of the PPO loop: iteration schedule, score transform, stop tokens, the update."""

from types import SimpleNamespace

import pytest
import torch

from rlhf.algo.types import Rollout
from rlhf.config import PPOConfig, load_config
from rlhf.errors import UserError
from rlhf.models import frozen_copy, load_policy
from rlhf.rl.generation import stop_token_ids
from rlhf.stages.ppo.advantages import advantages_and_returns
from rlhf.stages.ppo.setup import ScoreTransform, iteration_schedule, score_transform
from rlhf.stages.ppo.update import UpdateSettings, ppo_update
from rlhf.value_models import value_model_from_policy

ONE_PROCESS = SimpleNamespace(num_processes=1, process_index=0)


def config(*overrides: str) -> PPOConfig:
    return load_config(PPOConfig, None, ["data.path=x", "model.policy=p", "model.reward=m:f",
                                         *overrides])


def test_schedule_is_seeded_and_covers_each_epoch() -> None:
    schedule = iteration_schedule(10, config("train.batch_size=4", "train.epochs=2"))
    assert schedule.iterations == 4  # 2 full batches per epoch, 2 epochs
    first_epoch = schedule.local_prompts(0, ONE_PROCESS) + schedule.local_prompts(1, ONE_PROCESS)
    assert len(set(first_epoch)) == 8
    again = iteration_schedule(10, config("train.batch_size=4", "train.epochs=2"))
    assert again.local_prompts(1, ONE_PROCESS) == schedule.local_prompts(1, ONE_PROCESS)


def test_schedule_total_episodes_and_length_sampler() -> None:
    cfg = config("train.batch_size=4", "ppo.total_episodes=10", "generate.min_new_tokens=4",
                 "generate.max_new_tokens=16")
    schedule = iteration_schedule(100, cfg)
    assert schedule.iterations == 3
    lengths = schedule.response_lengths(0, list(range(50)))  # one draw per prompt
    assert min(lengths) >= 4 and max(lengths) <= 16 and len(set(lengths)) > 3
    assert lengths == iteration_schedule(100, cfg).response_lengths(0, list(range(50)))
    assert schedule.response_lengths(0, [7, 3]) == [lengths[7], lengths[3]]  # keyed by prompt
    assert schedule.response_lengths(1, list(range(50))) != lengths  # and by iteration
    fixed = iteration_schedule(100, config("train.batch_size=4", "generate.max_new_tokens=9"))
    assert fixed.response_lengths(5, [1, 2]) == [9, 9]


def test_schedule_refuses_a_batch_larger_than_the_prompts() -> None:
    with pytest.raises(UserError, match="train.batch_size 64 is larger than the 10 prompts"):
        iteration_schedule(10, config())


def test_batch_split_names_the_key_that_does_not_divide() -> None:
    with pytest.raises(UserError, match="ppo.num_minibatches"):
        config("train.batch_size=8", "ppo.num_minibatches=3").batch_split(1)
    with pytest.raises(UserError, match="train.micro_batch_size"):
        config("train.batch_size=8", "train.micro_batch_size=3").batch_split(1)
    assert config("train.batch_size=8", "ppo.num_minibatches=2",
                  "train.micro_batch_size=2").batch_split(2) == (4, 2, 2)


def test_score_transform_normalizes_then_penalises_then_clips() -> None:
    transform = ScoreTransform(gain=2.0, bias=-1.0, missing_eos_penalty=-1.0, clip=2.0)
    scores = transform(torch.tensor([0.5, 0.5, 3.0]), torch.tensor([True, False, True]))
    assert scores.tolist() == [0.0, -1.0, 2.0]


def test_reward_model_normalization_needs_stored_statistics() -> None:
    cfg = config("ppo.score_normalization=reward_model")
    transform = score_transform(cfg, {"mean": 2.0, "std": 4.0}, None)
    assert (transform.gain, transform.bias) == (0.25, -0.5)
    with pytest.raises(UserError, match="rlhf_score_mean"):
        score_transform(cfg, {}, None)


def test_reference_normalization_gives_unit_normal_reference_scores() -> None:
    reference = torch.tensor([1.0, 2.0, 3.0, 6.0])
    transform = score_transform(config("ppo.score_normalization=reference"), {}, reference)
    normalized = transform(reference, torch.ones(4, dtype=torch.bool))
    assert abs(float(normalized.mean())) < 1e-6 and abs(float(normalized.std()) - 1) < 1e-6


def test_stop_tokens_must_be_single_tokens() -> None:
    _, tokenizer = load_policy("builtin:tiny-gpt2")
    assert stop_token_ids(tokenizer, None) == [tokenizer.eos_token_id]
    newline = stop_token_ids(tokenizer, "\n")
    assert newline[0] == tokenizer.eos_token_id and len(newline) == 2
    with pytest.raises(UserError, match="generate.stop_token"):
        stop_token_ids(tokenizer, "a whole sentence of many tokens")


def fake_rollout(policy, tokenizer) -> Rollout:
    torch.manual_seed(0)
    query_ids = torch.randint(3, len(tokenizer), (4, 5))
    query_mask = torch.ones_like(query_ids, dtype=torch.bool)
    response_ids = torch.randint(3, len(tokenizer), (4, 6))
    response_mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3, [True] * 6,
                                  [True] + [False] * 5])
    from rlhf.rl.forward import response_logprobs, response_values

    with torch.no_grad():
        logprobs = response_logprobs(policy, query_ids, query_mask, response_ids, response_mask,
                                     1.0)
        values = response_values(value_model_from_policy(policy), query_ids, query_mask,
                                 response_ids, response_mask)
    return Rollout(query_ids=query_ids, query_mask=query_mask, response_ids=response_ids,
                   response_mask=response_mask, logprobs=logprobs, ref_logprobs=logprobs.clone(),
                   values=values, scores=torch.tensor([1.0, -1.0, 0.5, 0.0]),
                   ended_with_eos=torch.ones(4, dtype=torch.bool))


def run_update(micro_batch_size: int, *, old_logprob_shift: float = 0.0,
               ratio_threshold: float | None = None, per_minibatch: int = 4,
               ppo_epochs: int = 1) -> dict:
    from accelerate import Accelerator

    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    value = value_model_from_policy(policy, seed=0)
    rollout = fake_rollout(frozen_copy(policy), tokenizer)
    rollout.logprobs = rollout.logprobs - old_logprob_shift  # ratio exp(shift) from the start
    kl = torch.zeros_like(rollout.logprobs)
    advantages, returns, _, _ = advantages_and_returns(rollout, kl, 0.1, gamma=1.0, lam=0.95,
                                                       whiten_rewards=False)
    optimizer = torch.optim.SGD(list(policy.parameters()) + list(value.parameters()), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    settings = UpdateSettings(ppo_epochs=ppo_epochs, per_minibatch=per_minibatch,
                              micro_batch_size=micro_batch_size, clip_range=0.2,
                              value_clip_range=0.2, vf_coef=0.1, temperature=1.0,
                              max_grad_norm=0.0, target_approx_kl=None,
                              ratio_threshold=ratio_threshold)
    stats, outcomes = ppo_update(policy, value, optimizer, scheduler, Accelerator(cpu=True),
                                 rollout, advantages, returns, settings)
    return {"policy": policy.state_dict(), "stats": stats, "outcomes": outcomes}


def test_first_update_starts_at_ratio_one_and_micro_batches_match_one_batch() -> None:
    whole, split = run_update(4), run_update(1)
    assert whole["outcomes"] == split["outcomes"] == ["stepped"]
    assert whole["stats"]["policy/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert whole["stats"]["policy/clipfrac"] == 0.0
    for key, tensor in whole["policy"].items():
        torch.testing.assert_close(tensor, split["policy"][key], atol=1e-6, rtol=1e-5)
    assert whole["stats"]["loss/policy"] == pytest.approx(split["stats"]["loss/policy"],
                                                          abs=1e-6)


def test_ratio_threshold_skips_the_minibatch_and_counts_it() -> None:
    """trl 0.11's ratio_threshold: a minibatch whose mean ratio is above it is a loss spike in
    the making; it takes no optimizer step. exp(1) = 2.7 > 2 here; 3 keeps the step."""
    untouched = load_policy("builtin:tiny-gpt2", seed=0)[0].state_dict()
    skipped = run_update(4, old_logprob_shift=1.0, ratio_threshold=2.0, per_minibatch=2,
                         ppo_epochs=2)
    assert skipped["outcomes"] == ["ratio_skipped"] * 4
    assert skipped["stats"]["ppo/ratio_skipped_minibatches"] == 4.0
    assert all(torch.equal(tensor, untouched[key]) for key, tensor in skipped["policy"].items())
    kept = run_update(4, old_logprob_shift=1.0, ratio_threshold=3.0, per_minibatch=2)
    assert kept["outcomes"] == ["stepped"] * 2 and kept["stats"]["policy/ratio_mean"] > 2.0


def test_minibatch_order_is_keyed_by_seed_iteration_and_epoch() -> None:
    from rlhf.rl.minibatches import minibatch_order

    order = minibatch_order(16, 0, 3, 1)
    assert sorted(order.tolist()) == list(range(16))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(order, minibatch_order(16, 0, 3, 1))
    others = [minibatch_order(16, *key) for key in ((1, 3, 1), (0, 4, 1), (0, 3, 2))]
    assert all(not torch.equal(order, other) for other in others)


def test_value_model_starts_from_a_decoder_reward_model_sharing_the_tokenizer(tmp_path) -> None:
    from rlhf.models import load_reward_model
    from rlhf.reward.scorers import RewardModelScorer
    from rlhf.stages.ppo.setup import _value_model

    reward, tokenizer = load_reward_model("builtin:tiny-gpt2", seed=7)
    reward.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    policy, policy_tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"), template="concat")
    cfg = config(f"model.reward={tmp_path / 'rm'}")
    value = _value_model(cfg, policy, policy_tokenizer, scorer)
    for key, tensor in reward.state_dict().items():
        assert torch.equal(tensor, value.state_dict()[key]), key
    from_policy = _value_model(config(f"model.reward={tmp_path / 'rm'}", "model.value_init=policy"),
                               policy, policy_tokenizer, scorer)
    for key, tensor in policy.base_model.state_dict().items():
        assert torch.equal(tensor, from_policy.base_model.state_dict()[key]), key


def test_encoder_reward_model_cannot_seed_the_value_model(tmp_path) -> None:
    from rlhf.models import load_reward_model
    from rlhf.reward.scorers import RewardModelScorer
    from rlhf.stages.ppo.setup import _value_model

    reward, tokenizer = load_reward_model("builtin:tiny-roberta", seed=0)
    reward.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    policy, policy_tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    scorer = RewardModelScorer.from_pretrained(str(tmp_path / "rm"))
    with pytest.raises(UserError, match="model.value_init=policy"):
        _value_model(config(f"model.reward={tmp_path / 'rm'}", "model.value_init=reward"),
                     policy, policy_tokenizer, scorer)
    auto = _value_model(config(f"model.reward={tmp_path / 'rm'}"), policy, policy_tokenizer,
                        scorer)
    assert type(auto).__name__ == "GPT2ForSequenceClassification"
