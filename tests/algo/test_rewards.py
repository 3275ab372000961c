"""rewards: per-token reward shaping and score transforms."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.rewards import (
    apply_missing_eos_penalty,
    clip_scores,
    gain_bias_for_unit_normal,
    normalize_scores,
    shape_rewards,
)

NAN = float("nan")
SCORES = torch.tensor([1.0, 2.0, 3.0])
KL = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, -0.2, 0.0, 0.2], [0.5, 0.5, 0.5, 0.5]])
MASK = torch.tensor([
    [True, True, False, False],  # stopped at position 1
    [True, True, True, True],  # ran to the length limit
    [False, False, False, False],  # no real token
])


def test_shape_rewards_by_hand():
    # non-score = -0.5 * kl on real tokens; the score is added at the last real token
    # row 0: -0.05, -0.1 (+1 -> 0.9), then 0, 0
    # row 1: -0.2, 0.1, 0, -0.1 (+2 -> 1.9)
    # row 2: nothing is real: no penalty and no score
    rewards, non_score = shape_rewards(SCORES, KL, 0.5, MASK)
    assert_close(non_score, torch.tensor([
        [-0.05, -0.1, 0.0, 0.0], [-0.2, 0.1, 0.0, -0.1], [0.0, 0.0, 0.0, 0.0]]))
    assert_close(rewards, torch.tensor([
        [-0.05, 0.9, 0.0, 0.0], [-0.2, 0.1, 0.0, 1.9], [0.0, 0.0, 0.0, 0.0]]))
    assert rewards.shape == non_score.shape == (3, 4)


def test_shape_rewards_ignores_garbage_under_the_mask():
    garbage = torch.where(MASK, KL, torch.full_like(KL, NAN))
    kl_before = garbage.clone()
    assert_close(shape_rewards(SCORES, garbage, 0.5, MASK), shape_rewards(SCORES, KL, 0.5, MASK))
    assert_close(garbage, kl_before, equal_nan=True)  # not mutated


def test_shape_rewards_with_left_aligned_holes_reads_the_last_real_token():
    mask = torch.tensor([[True, False, True, False]])
    rewards, _ = shape_rewards(torch.tensor([5.0]), torch.zeros(1, 4), 0.1, mask)
    assert_close(rewards, torch.tensor([[0.0, 0.0, 5.0, 0.0]]))


def test_missing_eos_penalty():
    scores = torch.tensor([1.0, 2.0, -0.5])
    ended = torch.tensor([True, False, False])
    out = apply_missing_eos_penalty(scores, ended, -1.0)
    assert_close(out, torch.tensor([1.0, 1.0, -1.5]))
    assert_close(scores, torch.tensor([1.0, 2.0, -0.5]))  # not mutated


def test_normalize_scores():
    # 2 * (0, 1, -1) + 1 = (1, 3, -1)
    assert_close(normalize_scores(torch.tensor([0.0, 1.0, -1.0]), 2.0, 1.0),
                 torch.tensor([1.0, 3.0, -1.0]))


def test_gain_bias_for_unit_normal_by_hand():
    # (1, 2, 3, 4, 5): mean 3, Bessel std sqrt(10 / 4) = 1.5811388; gain 1 / std, bias -3 gain
    gain, bias = gain_bias_for_unit_normal(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert gain == pytest.approx(1 / math.sqrt(2.5))
    assert bias == pytest.approx(-3 / math.sqrt(2.5))
    assert isinstance(gain, float) and isinstance(bias, float)


def test_gain_bias_gives_mean_zero_std_one():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(500, generator=generator) * 7 - 3
    normalized = normalize_scores(reference, *gain_bias_for_unit_normal(reference))
    assert_close(normalized.mean(), torch.tensor(0.0), atol=1e-5, rtol=0)
    assert_close(normalized.std(), torch.tensor(1.0))


def test_gain_bias_for_constant_scores_only_shifts():
    gain, bias = gain_bias_for_unit_normal(torch.tensor([2.0, 2.0, 2.0]))
    assert (gain, bias) == (1.0, -2.0)


def test_gain_bias_needs_two_scores():
    with pytest.raises(ValueError, match="at least 2"):
        gain_bias_for_unit_normal(torch.tensor([1.0]))


def test_clip_scores():
    assert_close(clip_scores(torch.tensor([-5.0, 0.5, 5.0]), 2.0), torch.tensor([-2.0, 0.5, 2.0]))
