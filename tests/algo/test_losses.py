"""losses: preference losses, the clipped PPO surrogate and the clipped value loss."""

import math

import torch
import torch.nn.functional as F
from torch.testing import assert_close

from rlhf.algo.losses import (
    clipped_value_loss,
    listwise_reward_loss,
    pairwise_reward_loss,
    ppo_policy_loss,
)

NAN = float("nan")


def _softplus(x):
    return math.log1p(math.exp(x))


def _assert_detached(stats):
    for value in vars(stats).values():
        assert value.dim() == 0 and not value.requires_grad


# ---- pairwise (Bradley-Terry) --------------------------------------------------------------

CHOSEN = torch.tensor([2.0, 0.0])
REJECTED = torch.tensor([0.0, 1.0])


def test_pairwise_by_hand():
    # differences 2 and -1: loss = (softplus(-2) + softplus(1)) / 2
    #   = (0.1269280110 + 1.3132616875) / 2 = 0.7200948493
    # accuracy 1/2; margin_mean (2 - 1) / 2 = 0.5; chosen (2, 0): mean 1, std sqrt 2;
    # rejected (0, 1): mean 0.5, std sqrt(0.5)
    chosen = CHOSEN.clone().requires_grad_(True)
    loss, stats = pairwise_reward_loss(chosen, REJECTED)
    assert_close(loss, torch.tensor((_softplus(-2) + _softplus(1)) / 2))
    assert_close(loss, torch.tensor(0.7200948493))
    expected = {"loss": 0.7200948493, "accuracy": 0.5, "margin_mean": 0.5, "chosen_mean": 1.0,
                "chosen_std": math.sqrt(2), "rejected_mean": 0.5, "rejected_std": math.sqrt(0.5)}
    got = stats.as_dict()
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[k], v, rel_tol=1e-6) for k, v in expected.items()), got
    _assert_detached(stats)
    assert loss.requires_grad


def test_pairwise_margin_shifts_the_loss_not_the_stats():
    # differences minus margin 1: 1 and -2: (softplus(-1) + softplus(2)) / 2 = 1.2200948493
    loss, stats = pairwise_reward_loss(CHOSEN, REJECTED, margin=torch.tensor([1.0, 1.0]))
    assert_close(loss, torch.tensor((_softplus(-1) + _softplus(2)) / 2))
    assert_close(stats.accuracy, torch.tensor(0.5))
    assert_close(stats.margin_mean, torch.tensor(0.5))


def test_pairwise_centering():
    # r_c + r_r = 2 and 1: mean of squares (4 + 1) / 2 = 2.5; times 0.1 adds 0.25
    loss, stats = pairwise_reward_loss(CHOSEN, REJECTED, center_coef=0.1)
    assert_close(loss, torch.tensor(0.7200948493 + 0.25))
    assert_close(stats.loss, loss)


def test_pairwise_ties_count_as_wrong():
    _, stats = pairwise_reward_loss(torch.tensor([1.0, 1.0, 3.0]), torch.tensor([1.0, 0.0, 3.0]))
    assert_close(stats.accuracy, torch.tensor(1 / 3))


def test_pairwise_one_batch_of_8_equals_4_accumulated_batches_of_2():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(8, 2, 5, generator=generator)  # (B, chosen/rejected, D)
    margin = torch.rand(8, generator=generator)

    def grad_of(batches):
        weight = torch.zeros(5, requires_grad=True)
        torch.nn.init.normal_(weight, generator=torch.Generator().manual_seed(1))
        for rows in batches:
            scores = features[rows] @ weight  # (b, 2)
            loss, _ = pairwise_reward_loss(scores[:, 0], scores[:, 1], margin[rows], 0.01)
            (loss * len(rows) / 8).backward()  # weight each micro-batch by its share
        return weight.grad

    whole = grad_of([torch.arange(8)])
    accumulated = grad_of([torch.arange(i, i + 2) for i in range(0, 8, 2)])
    assert_close(accumulated, whole)


# ---- listwise (best of N) ------------------------------------------------------------------

def test_listwise_with_two_responses_equals_pairwise():
    generator = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(6, generator=generator), torch.randn(6, generator=generator)
    for center_coef in (0.0, 0.3):
        pair_loss, pair_stats = pairwise_reward_loss(chosen, rejected, center_coef=center_coef)
        best_first = torch.stack([chosen, rejected], dim=1)  # (B, 2)
        best_second = torch.stack([rejected, chosen], dim=1)  # (B, 2)
        for rewards, best in ((best_first, 0), (best_second, 1)):
            loss, stats = listwise_reward_loss(rewards, torch.full((6,), best), center_coef)
            assert_close(loss, pair_loss)
            for key, value in pair_stats.as_dict().items():
                assert math.isclose(stats.as_dict()[key], value, rel_tol=1e-6, abs_tol=1e-7)


def test_listwise_best_of_4_by_hand():
    # row 0 (1, 2, 0, 0), best 1: -log(e^2 / (e + e^2 + 2)) = ln(12.1073379) - 2 = 0.4938117091
    # row 1 all 0, best 0: ln 4 = 1.3862943611 (a tie: counted wrong)
    # loss (0.4938117091 + 1.3862943611) / 2 = 0.9400530351; accuracy 1/2
    # margin: row 0 2 - 1 = 1, row 1 0: mean 0.5; chosen (2, 0): mean 1, std sqrt 2
    # rejected (1, 0, 0, 0, 0, 0): mean 1/6
    rewards = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    loss, stats = listwise_reward_loss(rewards, torch.tensor([1, 0]))
    assert_close(loss, torch.tensor(0.9400530351))
    assert_close(stats.accuracy, torch.tensor(0.5))
    assert_close(stats.margin_mean, torch.tensor(0.5))
    assert_close(stats.chosen_mean, torch.tensor(1.0))
    assert_close(stats.chosen_std, torch.tensor(math.sqrt(2)))
    assert_close(stats.rejected_mean, torch.tensor(1 / 6))
    _assert_detached(stats)
    # centering 0.1 * mean((sum_n r_n)^2) = 0.1 * (9 + 0) / 2 = 0.45
    centered, _ = listwise_reward_loss(rewards, torch.tensor([1, 0]), center_coef=0.1)
    assert_close(centered, torch.tensor(0.9400530351 + 0.45))


def test_listwise_matches_cross_entropy_and_keeps_gradient():
    rewards = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    best = torch.tensor([0, 3, 2, 1, 1])
    loss, _ = listwise_reward_loss(rewards, best)
    assert_close(loss, F.cross_entropy(rewards, best))
    loss.backward()
    assert rewards.grad is not None


# ---- PPO clipped surrogate -----------------------------------------------------------------

# eps = 0.2. Six real tokens (rows of 3, last column masked) covering every branch:
#   A   ratio  -A r   -A clip(r)  max    clipped branch active?
#  +1   1.1   -1.1    -1.1       -1.1   no (inside)
#  +1   1.5   -1.5    -1.2       -1.2   yes (above, positive A)
#  +1   0.5   -0.5    -0.8       -0.5   no (below, positive A)
#  -1   1.5    1.5     1.2        1.5   no (above, negative A)
#  -1   0.5    0.5     0.8        0.8   yes (below, negative A)
#  -1   0.9    0.9     0.9        0.9   no (inside)
# loss = (-1.1 - 1.2 - 0.5 + 1.5 + 0.8 + 0.9) / 6 = 0.4 / 6; clipfrac 2 / 6
# ratio_mean (1.1 + 1.5 + 0.5 + 1.5 + 0.5 + 0.9) / 6 = 1.0, ratio_max 1.5
RATIOS = [[1.1, 1.5, 0.5], [1.5, 0.5, 0.9]]
POLICY_MASK = torch.tensor([[True, True, True, False], [True, True, True, False]])
OLD = torch.tensor([[-1.0, -2.0, -0.5, -3.0], [-1.5, -0.7, -2.2, -1.0]])
LOGP = OLD + torch.tensor([[math.log(r) for r in row] + [0.0] for row in RATIOS])
ADV = torch.tensor([[1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, -1.0, 0.0]])


def test_ppo_policy_loss_by_hand():
    logprobs = LOGP.clone().requires_grad_(True)
    loss, stats = ppo_policy_loss(logprobs, OLD, ADV, POLICY_MASK, clip_range=0.2)
    assert_close(loss, torch.tensor(0.4 / 6))
    assert_close(stats.clipfrac, torch.tensor(2 / 6))
    assert_close(stats.ratio_mean, torch.tensor(1.0))
    assert_close(stats.ratio_max, torch.tensor(1.5))
    k2 = sum(0.5 * math.log(r) ** 2 for row in RATIOS for r in row) / 6
    assert_close(stats.approx_kl, torch.tensor(k2))
    _assert_detached(stats)
    # d/dlogp of -A r / 6 is -A r / 6 where the unclipped branch is active, 0 where clipped
    loss.backward()
    expected = torch.tensor([[-1.1, 0.0, -0.5, 0.0], [1.5, 0.0, 0.9, 0.0]]) / 6
    assert_close(logprobs.grad, expected)


def test_ppo_policy_loss_ignores_garbage_under_the_mask():
    dirty = [torch.where(POLICY_MASK, x, torch.full_like(x, garbage))
             for x, garbage in ((LOGP, NAN), (OLD, float("inf")), (ADV, 1e9))]
    clean_logp = LOGP.clone().requires_grad_(True)
    dirty_logp = dirty[0].clone().requires_grad_(True)
    clean_loss, clean_stats = ppo_policy_loss(clean_logp, OLD, ADV, POLICY_MASK, 0.2)
    dirty_loss, dirty_stats = ppo_policy_loss(dirty_logp, dirty[1], dirty[2], POLICY_MASK, 0.2)
    clean_loss.backward()
    dirty_loss.backward()
    assert_close(dirty_loss, clean_loss)
    assert dirty_stats.as_dict() == clean_stats.as_dict()
    assert_close(dirty_logp.grad, clean_logp.grad)


# ---- clipped value loss --------------------------------------------------------------------

# eps = 0.2. Four real tokens (rows of 2, last column masked):
#   v    old   R    clipped v  (v - R)^2  (clipped - R)^2  max    clipped term larger?
#  1.1   1.0  2.0   1.1        0.81       0.81             0.81   no (inside the clip)
#  1.5   1.0  2.0   1.2        0.25       0.64             0.64   yes
#  1.5   1.0  1.0   1.2        0.25       0.04             0.25   no (outside, but smaller)
#  0.5   1.0  0.0   0.8        0.25       0.64             0.64   yes
# loss = 0.5 * (0.81 + 0.64 + 0.25 + 0.64) / 4 = 0.2925; clipfrac 0.5; value_mean 4.6 / 4 = 1.15
# R - v = (0.9, 0.5, -0.5, -0.5): squared deviations from 0.1 sum to 1.52
# R = (2, 2, 1, 0): squared deviations from 1.25 sum to 2.75; EV = 1 - 1.52 / 2.75
VALUES = torch.tensor([[1.1, 1.5, 9.0], [1.5, 0.5, 9.0]])
OLD_VALUES = torch.tensor([[1.0, 1.0, 9.0], [1.0, 1.0, 9.0]])
RETURNS = torch.tensor([[2.0, 2.0, 9.0], [1.0, 0.0, 9.0]])
VALUE_MASK = torch.tensor([[True, True, False], [True, True, False]])


def test_clipped_value_loss_by_hand():
    values = VALUES.clone().requires_grad_(True)
    loss, stats = clipped_value_loss(values, OLD_VALUES, RETURNS, VALUE_MASK, clip_range=0.2)
    assert_close(loss, torch.tensor(0.2925))
    assert_close(stats.clipfrac, torch.tensor(0.5))
    assert_close(stats.value_mean, torch.tensor(1.15))
    assert_close(stats.explained_variance, torch.tensor(1 - 1.52 / 2.75))
    _assert_detached(stats)
    # d/dv of 0.5 (v - R)^2 / 4 = (v - R) / 4 where unclipped is active; 0 where clipped
    loss.backward()
    assert_close(values.grad, torch.tensor([[-0.9 / 4, 0.0, 0.0], [0.5 / 4, 0.0, 0.0]]))


def test_clipped_value_loss_ignores_garbage_under_the_mask():
    def dirty(x, garbage):
        return torch.where(VALUE_MASK, x, torch.full_like(x, garbage))

    clean_values = VALUES.clone().requires_grad_(True)
    dirty_values = dirty(VALUES, NAN).requires_grad_(True)
    clean_loss, clean_stats = clipped_value_loss(
        clean_values, OLD_VALUES, RETURNS, VALUE_MASK, 0.2)
    dirty_loss, dirty_stats = clipped_value_loss(
        dirty_values, dirty(OLD_VALUES, float("inf")), dirty(RETURNS, NAN), VALUE_MASK, 0.2)
    clean_loss.backward()
    dirty_loss.backward()
    assert_close(dirty_loss, clean_loss)
    assert dirty_stats.as_dict() == clean_stats.as_dict()
    assert_close(dirty_values.grad, clean_values.grad)
