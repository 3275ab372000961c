"""types: the stats records and the Rollout container."""

import dataclasses

import pytest
import torch

from rlhf.algo.types import PolicyLossStats, RewardLossStats, Rollout, ValueLossStats


def test_as_dict_gives_prefixed_floats_in_field_order():
    stats = ValueLossStats(loss=torch.tensor(0.5), clipfrac=torch.tensor(0.25),
                           value_mean=torch.tensor(-1.0), explained_variance=torch.tensor(0.75))
    assert stats.as_dict("value/") == {"value/loss": 0.5, "value/clipfrac": 0.25,
                                       "value/value_mean": -1.0,
                                       "value/explained_variance": 0.75}
    assert all(type(v) is float for v in stats.as_dict().values())


def test_stats_records_are_frozen_and_have_the_agreed_fields():
    names = {cls: [f.name for f in dataclasses.fields(cls)]
             for cls in (RewardLossStats, PolicyLossStats, ValueLossStats)}
    assert names[RewardLossStats] == ["loss", "accuracy", "margin_mean", "chosen_mean",
                                      "chosen_std", "rejected_mean", "rejected_std"]
    assert names[PolicyLossStats] == ["loss", "clipfrac", "approx_kl", "ratio_mean", "ratio_max"]
    assert names[ValueLossStats] == ["loss", "clipfrac", "value_mean", "explained_variance"]
    stats = PolicyLossStats(*[torch.tensor(0.0)] * 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.loss = torch.tensor(1.0)


def test_rollout_is_a_plain_container():
    b, q, r = 2, 3, 4
    rollout = Rollout(
        query_ids=torch.zeros(b, q, dtype=torch.long),
        query_mask=torch.ones(b, q, dtype=torch.bool),
        response_ids=torch.zeros(b, r, dtype=torch.long),
        response_mask=torch.ones(b, r, dtype=torch.bool), logprobs=torch.zeros(b, r),
        ref_logprobs=torch.zeros(b, r), values=torch.zeros(b, r), scores=torch.zeros(b),
        ended_with_eos=torch.ones(b, dtype=torch.bool))
    assert rollout.response_ids.shape == (b, r)
    assert dataclasses.replace(rollout, scores=torch.ones(b)).scores.sum() == b
