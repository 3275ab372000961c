"""advantages: the critic-free estimators (RLOO, GRPO, Dr. GRPO, REINFORCE, REINFORCE++)."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.advantages import (
    dr_grpo_advantages,
    group_rows,
    group_std,
    grpo_advantages,
    reinforce_baseline_advantages,
    reinforce_pp_advantages,
    returns_to_go,
    rloo_advantages,
    update_moving_baseline,
    zero_signal_groups,
)
from rlhf.algo.masking import masked_mean, masked_var

NAN = float("nan")
SCORES = torch.tensor([1.0, 2.0, 3.0, 6.0])
GROUPED = (rloo_advantages, grpo_advantages, dr_grpo_advantages)


def test_group_rows_is_prompt_major():
    scores = torch.arange(6.0)
    assert_close(group_rows(scores, 3), torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]))
    assert group_rows(scores, 2).shape == (3, 2)


@pytest.mark.parametrize("function", [group_rows, zero_signal_groups, group_std, *GROUPED])
def test_a_batch_that_does_not_split_into_groups_names_both_numbers(function):
    with pytest.raises(ValueError, match=r"batch of 5 .* groups of 2"):
        function(torch.arange(5.0), 2)


# ---- by hand: scores [1, 2, 3, 6] -----------------------------------------------------------

def test_rloo_by_hand():
    # k = 2, groups [1, 2], [3, 6]: the other sample is the baseline
    #   1 - 2 = -1, 2 - 1 = 1, 3 - 6 = -3, 6 - 3 = 3
    assert_close(rloo_advantages(SCORES, 2), torch.tensor([-1.0, 1.0, -3.0, 3.0]))
    # k = 4, one group: mean of the three others
    #   1 - (2 + 3 + 6) / 3 = -8/3;  2 - (1 + 3 + 6) / 3 = -4/3
    #   3 - (1 + 2 + 6) / 3 = 0;     6 - (1 + 2 + 3) / 3 = 4
    assert_close(rloo_advantages(SCORES, 4), torch.tensor([-8 / 3, -4 / 3, 0.0, 4.0]))


def test_grpo_by_hand():
    # k = 2: [1, 2] mean 1.5, Bessel std sqrt((0.25 + 0.25) / 1) = sqrt(0.5)
    #        [3, 6] mean 4.5, std sqrt((2.25 + 2.25) / 1) = sqrt(4.5)
    #   -0.5 / (sqrt 0.5 + eps), 0.5 / (...), -1.5 / (sqrt 4.5 + eps), 1.5 / (...)
    #   (each about -+1 / sqrt 2 = 0.7071: with k = 2 GRPO only keeps the sign)
    small, large = math.sqrt(0.5) + 1e-4, math.sqrt(4.5) + 1e-4
    assert_close(grpo_advantages(SCORES, 2),
                 torch.tensor([-0.5 / small, 0.5 / small, -1.5 / large, 1.5 / large]))
    # k = 4: mean 3, deviations -2, -1, 0, 3; squares 4 + 1 + 0 + 9 = 14; std sqrt(14 / 3)
    #   -2 / 2.1602469, -1 / 2.1602469, 0, 3 / 2.1602469 (plus eps 1e-4 in the denominator)
    std = math.sqrt(14 / 3)
    assert_close(grpo_advantages(SCORES, 4), torch.tensor([-2.0, -1.0, 0.0, 3.0]) / (std + 1e-4))
    assert_close(grpo_advantages(SCORES, 4, eps=0.0),
                 torch.tensor([-0.9258201, -0.4629100, 0.0, 1.3887301]))


def test_dr_grpo_by_hand():
    # k = 2: minus the group mean (1.5 and 4.5), no std division
    assert_close(dr_grpo_advantages(SCORES, 2), torch.tensor([-0.5, 0.5, -1.5, 1.5]))
    # k = 4: minus 3
    assert_close(dr_grpo_advantages(SCORES, 4), torch.tensor([-2.0, -1.0, 0.0, 3.0]))


def test_rloo_is_dr_grpo_scaled_by_k_over_k_minus_1():
    scores = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for k in (2, 3, 4, 6):
        assert_close(rloo_advantages(scores, k), k / (k - 1) * dr_grpo_advantages(scores, k))


def test_group_std_and_zero_signal_groups_by_hand():
    # groups of 2: [1, 2] std sqrt 0.5, [3, 6] std sqrt 4.5
    assert_close(group_std(SCORES, 2), torch.tensor([math.sqrt(0.5), math.sqrt(4.5)]))
    assert_close(group_std(SCORES, 4), torch.tensor([math.sqrt(14 / 3)]))
    assert_close(group_std(SCORES, 1), torch.zeros(4))  # not NaN
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0])
    assert zero_signal_groups(scores, 2).tolist() == [True, False, True, True]
    assert zero_signal_groups(scores, 4).tolist() == [False, False]
    assert zero_signal_groups(scores, 1).all()  # one sample: nothing to compare with


# ---- invariants -----------------------------------------------------------------------------

@pytest.mark.parametrize("estimator", GROUPED)
def test_adding_a_constant_to_a_group_changes_no_advantage(estimator):
    scores = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shift = torch.tensor([5.0, -3.0, 100.0], dtype=torch.float64).repeat_interleave(4)  # (B,)
    assert_close(estimator(scores + shift, 4), estimator(scores, 4))


@pytest.mark.parametrize("estimator", GROUPED)
def test_a_group_of_identical_rewards_gives_zero_advantage(estimator):
    scores = torch.tensor([0.7, 0.7, 0.7, 1.0, 0.0, 2.0])
    advantages = estimator(scores, 3)
    assert torch.isfinite(advantages).all()  # GRPO: 0 / eps, not 0 / 0
    assert (advantages[:3] == 0).all() and (advantages[3:] != 0).any()


@pytest.mark.parametrize(("estimator", "name"), [
    (rloo_advantages, "RLOO"), (grpo_advantages, "GRPO"), (dr_grpo_advantages, "Dr. GRPO")])
def test_one_sample_per_prompt_raises_a_clear_error(estimator, name):
    with pytest.raises(ValueError, match=rf"{name} needs at least 2 samples per prompt "
                                         rf"\(generate.num_samples >= 2\), got 1"):
        estimator(SCORES, 1)


@pytest.mark.parametrize("estimator", GROUPED)
def test_group_estimators_do_not_mutate_and_upcast(estimator):
    scores = SCORES.bfloat16()
    before = scores.clone()
    assert estimator(scores, 2).dtype == torch.float32
    assert estimator(SCORES.double(), 2).dtype == torch.float64
    assert_close(scores, before)


# ---- REINFORCE with a moving baseline -------------------------------------------------------

def test_reinforce_baseline_by_hand():
    assert_close(reinforce_baseline_advantages(SCORES, 3.0), torch.tensor([-2.0, -1.0, 0.0, 3.0]))


def test_moving_baseline():
    assert update_moving_baseline(None, 2.5, decay=0.9) == 2.5  # the first batch's mean
    # 0.9 * 2.5 + 0.1 * 5 = 2.75; then 0.9 * 2.75 + 0.1 * 0 = 2.475
    baseline = update_moving_baseline(2.5, 5.0, decay=0.9)
    assert baseline == pytest.approx(2.75)
    assert update_moving_baseline(baseline, 0.0, decay=0.9) == pytest.approx(2.475)
    assert update_moving_baseline(1.0, 7.0, decay=0.0) == 7.0  # no memory


# ---- returns to go and REINFORCE++ ----------------------------------------------------------

# row 0 all real; row 1 has a hole at t1 (its 50 is ignored) and a masked tail (99)
REWARDS = torch.tensor([[1.0, -2.0, 0.5, 3.0], [1.0, 50.0, 2.0, 99.0]])
MASK = torch.tensor([[True, True, True, True], [True, False, True, False]])


def test_returns_to_go_by_hand():
    # row 0: from the end 3, 3 + 0.5 = 3.5, 3.5 - 2 = 1.5, 1.5 + 1 = 2.5
    # row 1: t2: 2; t1 masked -> 0; t0: 1 + 2 = 3 (the hole's 50 and the tail's 99 ignored)
    assert_close(returns_to_go(REWARDS, MASK),
                 torch.tensor([[2.5, 1.5, 3.5, 3.0], [3.0, 0.0, 2.0, 0.0]]))


def test_returns_to_go_ignores_garbage_and_upcasts():
    clean = returns_to_go(REWARDS, MASK)
    for garbage in (NAN, float("inf"), -1e30):
        dirty = torch.where(MASK, REWARDS, torch.full_like(REWARDS, garbage))
        before = dirty.clone()
        assert_close(returns_to_go(dirty, MASK), clean)
        assert_close(dirty, before, equal_nan=True)  # not mutated
    assert returns_to_go(REWARDS.bfloat16(), MASK).dtype == torch.float32


def test_returns_to_go_matches_a_slow_loop():
    generator = torch.Generator().manual_seed(2)
    rewards = torch.randn(6, 9, generator=generator, dtype=torch.float64)  # (B, R)
    mask = torch.rand(6, 9, generator=generator) < 0.7  # (B, R) random holes
    expected = [[sum(rewards[b, s].item() for s in range(t, 9) if mask[b, s]) if mask[b, t]
                 else 0.0 for t in range(9)] for b in range(6)]
    assert_close(returns_to_go(rewards, mask), torch.tensor(expected, dtype=torch.float64))


def test_reinforce_pp_whitens_over_real_tokens():
    returns = returns_to_go(REWARDS, MASK)  # 6 real tokens: 2.5, 1.5, 3.5, 3, 3, 2
    advantages = reinforce_pp_advantages(returns, MASK)
    assert_close(masked_mean(advantages, MASK), torch.tensor(0.0), atol=1e-6, rtol=0)
    assert_close(masked_var(advantages, MASK), torch.tensor(1.0), atol=1e-6, rtol=0)
    assert (advantages[~MASK] == 0).all()
    # in twelfths: 30, 18, 42, 36, 36, 24; mean 31; deviations -1, -13, 11, 5, 5, -7
    # squares sum (1 + 169 + 121 + 25 + 25 + 49) / 144 = 390 / 144; Bessel var = that / 5
    std = math.sqrt(390 / 144 / 5)  # 0.7359801
    expected = torch.tensor([[-1.0, -13.0, 11.0, 5.0], [5.0, 0.0, -7.0, 0.0]]) / 12 / std
    expected[~MASK] = 0.0
    assert_close(advantages, expected)


def test_reinforce_pp_over_two_processes_equals_one():
    generator = torch.Generator().manual_seed(3)
    returns = torch.randn(6, 5, generator=generator, dtype=torch.float64)  # (B, R)
    mask = torch.rand(6, 5, generator=generator) < 0.8  # (B, R)
    whole = reinforce_pp_advantages(returns, mask)
    # a fake all-reduce: each process adds the other's contribution, computed on its rows
    halves = [slice(0, 2), slice(2, 6)]
    parts = []
    for mine in halves:
        other = halves[1] if mine == halves[0] else halves[0]
        calls = []

        def sum_over_processes(x, other=other, calls=calls):
            calls.append(x)
            if len(calls) == 1:  # [sum, count]
                return x + torch.stack([returns[other][mask[other]].sum(),
                                        mask[other].sum().double()])
            mean = (returns[mask].sum() / mask.sum())
            return x + ((returns[other] - mean)[mask[other]] ** 2).sum()

        parts.append(reinforce_pp_advantages(returns[mine], mask[mine], sum_over_processes))
    assert_close(torch.cat(parts), whole)
