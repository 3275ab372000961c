"""aggregation: token mean (DAPO), sequence mean (GRPO), token sum over a constant (Dr. GRPO)."""

import functools

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.aggregation import sequence_mean, token_mean, token_sum

NAN = float("nan")
RULES = {"token_mean": token_mean, "sequence_mean": sequence_mean,
         "token_sum": functools.partial(token_sum, divisor=3.0)}

# row 0: 2 real tokens (2, 4); row 1: 3 real tokens (1, 1, 1); row 2: no real token at all
PER_TOKEN = torch.tensor([[2.0, 4.0, NAN], [1.0, 1.0, 1.0], [NAN, 7.0, float("inf")]])
MASK = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])


def test_token_mean_by_hand():
    # (2 + 4 + 1 + 1 + 1) / 5 real tokens = 1.8
    assert_close(token_mean(PER_TOKEN, MASK), torch.tensor(1.8))


def test_sequence_mean_by_hand():
    # row means 3 and 1; the empty row adds 0 and is not counted: (3 + 1) / 2 = 2
    assert_close(sequence_mean(PER_TOKEN, MASK), torch.tensor(2.0))


def test_token_sum_by_hand():
    # 9 / (2 rows with a real token * divisor 3) = 1.5; divisor 4.5: 9 / 9 = 1
    assert_close(token_sum(PER_TOKEN, MASK, divisor=3.0), torch.tensor(1.5))
    assert_close(token_sum(PER_TOKEN, MASK, divisor=4.5), torch.tensor(1.0))


def test_token_sum_rejects_a_non_positive_divisor():
    with pytest.raises(ValueError, match="divisor must be positive"):
        token_sum(PER_TOKEN, MASK, divisor=0.0)


def test_batch_mask_sets_the_denominator():
    # the micro-batch is rows 0 and 2; the whole batch (MASK) has 5 tokens and 2 non-empty rows
    rows = [0, 2]
    assert_close(token_mean(PER_TOKEN[rows], MASK[rows], MASK), torch.tensor(6 / 5))
    assert_close(sequence_mean(PER_TOKEN[rows], MASK[rows], MASK), torch.tensor(3 / 2))
    assert_close(token_sum(PER_TOKEN[rows], MASK[rows], MASK, divisor=3.0), torch.tensor(1.0))


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_an_empty_batch_gives_zero_not_nan(rule):
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert rule(PER_TOKEN[:2], empty).item() == 0.0
    assert rule(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_garbage_under_the_mask_changes_neither_value_nor_gradient(rule):
    clean = torch.where(MASK, PER_TOKEN, torch.zeros_like(PER_TOKEN)).requires_grad_(True)
    dirty = PER_TOKEN.clone().requires_grad_(True)  # NaN and inf under the mask
    clean_value, dirty_value = rule(clean, MASK), rule(dirty, MASK)
    clean_value.backward()
    dirty_value.backward()
    assert_close(dirty_value, clean_value)
    assert_close(dirty.grad, clean.grad)
    assert (dirty.grad[~MASK] == 0).all()


# ---- exact under gradient accumulation ------------------------------------------------------

def _batch():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)  # (B, R, D)
    lengths = torch.tensor([1, 5, 0, 3])
    mask = torch.arange(5)[None] < lengths[:, None]  # (B, R) different lengths, one empty
    return features, mask


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_micro_batches_sum_to_the_whole_batch_value_and_gradient(rule):
    features, mask = _batch()
    weight = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)

    def loss_of(rows):
        per_token = (features[rows] @ weight) ** 2  # (b, R)
        return rule(per_token, mask[rows], mask)

    whole = loss_of(slice(0, 4))
    (whole_gradient,) = torch.autograd.grad(whole, weight)
    parts = [loss_of(slice(0, 1)), loss_of(slice(1, 4))]
    gradients = [torch.autograd.grad(part, weight)[0] for part in parts]
    assert_close(sum(parts), whole)
    assert_close(sum(gradients), whole_gradient)
    # without batch_mask each micro-batch is its own mean: not the whole batch's loss
    alone = rule((features[0:1] @ weight) ** 2, mask[0:1]) + rule(
        (features[1:4] @ weight) ** 2, mask[1:4])
    assert not torch.isclose(alone, whole)


# ---- the rules weigh tokens differently -----------------------------------------------------

def _token_weights(rule, mask):
    """d loss / d per_token: how much each token counts."""
    per_token = torch.ones(mask.shape, dtype=torch.float64, requires_grad=True)
    (weights,) = torch.autograd.grad(rule(per_token, mask), per_token)
    return weights


def test_the_three_rules_differ_on_rows_of_different_lengths():
    # a short row (1 token, loss 4) and a long row (3 tokens, loss 1 each)
    per_token = torch.tensor([[4.0, NAN, NAN], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, False], [True, True, True]])
    assert_close(token_mean(per_token, mask), torch.tensor(7 / 4))  # 7 / 4 tokens
    assert_close(sequence_mean(per_token, mask), torch.tensor(5 / 2))  # (4 + 1) / 2 rows
    assert_close(token_sum(per_token, mask, divisor=3.0), torch.tensor(7 / 6))  # 7 / (2 * 3)
    # GRPO's sequence mean: the short row's token weighs 1/2, each long-row token 1/6, so a
    # long response's tokens are diluted (DAPO) and, with negative advantages, long wrong
    # answers are penalised less per token (Dr. GRPO's length bias)
    assert_close(_token_weights(sequence_mean, mask),
                 torch.tensor([[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6]], dtype=torch.float64))
    # DAPO's token mean and Dr. GRPO's token sum: every token weighs the same
    assert_close(_token_weights(token_mean, mask),
                 torch.tensor([[1 / 4, 0, 0], [1 / 4, 1 / 4, 1 / 4]], dtype=torch.float64))
    token_sum_3 = functools.partial(token_sum, divisor=3.0)
    assert_close(_token_weights(token_sum_3, mask),
                 torch.tensor([[1 / 6, 0, 0], [1 / 6, 1 / 6, 1 / 6]], dtype=torch.float64))
    # and only the token sum's weight is a constant: it ignores how long the other rows are
    longer = torch.tensor([[True, True, False], [True, True, True]])
    assert _token_weights(token_sum_3, longer)[1, 0] == _token_weights(token_sum_3, mask)[1, 0]
    assert _token_weights(token_mean, longer)[1, 0] != _token_weights(token_mean, mask)[1, 0]
