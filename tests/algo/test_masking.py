"""masking: masked reductions, whitening, the response mask after the first stop token."""

import math

import torch
from torch.testing import assert_close

from rlhf.algo.masking import (
    last_true_index,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    response_mask_after_stop,
)

NAN = float("nan")
X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[True, True, False], [True, False, False]])
# The same real values with garbage (NaN, inf) under the mask.
X_GARBAGE = torch.tensor([[1.0, 2.0, NAN], [4.0, float("inf"), -1e30]])


def test_masked_sum_and_mean_by_hand():
    # real values 1, 2, 4: sum 7, mean 7 / 3; per row: sums 3 and 4, means 1.5 and 4
    for x in (X, X_GARBAGE):
        assert_close(masked_sum(x, MASK), torch.tensor(7.0))
        assert_close(masked_mean(x, MASK), torch.tensor(7.0 / 3))
        assert_close(masked_sum(x, MASK, dim=1), torch.tensor([3.0, 4.0]))
        assert_close(masked_mean(x, MASK, dim=1), torch.tensor([1.5, 4.0]))


def test_masked_mean_of_an_all_false_row_is_zero():
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert_close(masked_mean(X_GARBAGE, mask, dim=1), torch.tensor([1.5, 0.0]))
    assert_close(masked_mean(X, torch.zeros_like(MASK)), torch.tensor(0.0))


def test_masked_var_by_hand():
    # real 1, 2, 4: mean 7/3, deviations -4/3, -1/3, 5/3, squares sum (16 + 1 + 25) / 9 = 14/3
    # unbiased: (14/3) / 2 = 7/3; biased: (14/3) / 3 = 14/9
    for x in (X, X_GARBAGE):
        assert_close(masked_var(x, MASK), torch.tensor(7.0 / 3))
        assert_close(masked_var(x, MASK, unbiased=False), torch.tensor(14.0 / 9))


def test_masked_whiten_by_hand():
    # (x - 7/3) / sqrt(7/3) at real positions, 0 elsewhere; shift_mean=False adds 7/3 back
    std = math.sqrt(7.0 / 3)
    expected = torch.tensor([[1 - 7 / 3, 2 - 7 / 3, 0.0], [4 - 7 / 3, 0.0, 0.0]]) / std
    for x in (X, X_GARBAGE):
        assert_close(masked_whiten(x, MASK), expected)
        unshifted = torch.where(MASK, expected + 7.0 / 3, torch.zeros_like(expected))
        assert_close(masked_whiten(x, MASK, shift_mean=False), unshifted)


def test_masked_whiten_gives_unit_moments_over_real_tokens():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 9, generator=generator) * 3 + 5  # (6, 9)
    lengths = torch.tensor([9, 4, 1, 7, 0, 3])
    mask = torch.arange(9)[None] < lengths[:, None]  # (6, 9) ragged
    x_garbage = torch.where(mask, x, torch.full_like(x, 1e6))

    whitened = masked_whiten(x_garbage, mask)
    assert_close(masked_mean(whitened, mask), torch.tensor(0.0), atol=1e-5, rtol=0)
    assert_close(masked_var(whitened, mask), torch.tensor(1.0), atol=1e-5, rtol=1e-5)
    assert (whitened[~mask] == 0).all()

    scaled = masked_whiten(x_garbage, mask, shift_mean=False)
    assert_close(masked_mean(scaled, mask), masked_mean(x, mask), atol=1e-5, rtol=1e-5)
    assert_close(masked_var(scaled, mask), torch.tensor(1.0), atol=1e-5, rtol=1e-5)
    assert (scaled[~mask] == 0).all()


def test_gradients_ignore_garbage_under_the_mask():
    for reduce in (masked_mean, masked_var, lambda x, m: masked_whiten(x, m).pow(2).sum()):
        clean = X.clone().requires_grad_(True)
        dirty = X_GARBAGE.clone().requires_grad_(True)
        reduce(clean, MASK).backward()
        reduce(dirty, MASK).backward()
        assert torch.isfinite(dirty.grad).all()
        assert_close(dirty.grad, clean.grad)
        assert (dirty.grad[~MASK] == 0).all()


def test_inputs_are_not_mutated():
    x, mask = X_GARBAGE.clone(), MASK.clone()
    masked_whiten(x, mask, shift_mean=False)
    masked_var(x, mask)
    assert_close(x, X_GARBAGE, equal_nan=True)
    assert torch.equal(mask, MASK)


def test_response_mask_after_stop_positions():
    ids = torch.tensor([
        [9, 1, 2, 3],  # stop at position 0: only the stop token is real
        [1, 9, 2, 9],  # stop in the middle: the later stop is masked too
        [1, 2, 3, 9],  # stop at the end
        [1, 2, 3, 4],  # no stop: all real
    ])
    expected = torch.tensor([
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, True],
        [True, True, True, True],
    ])
    assert torch.equal(response_mask_after_stop(ids, 9), expected)
    assert torch.equal(response_mask_after_stop(ids, [9]), expected)
    assert response_mask_after_stop(ids, 9).dtype == torch.bool


def test_response_mask_after_stop_with_several_stop_ids():
    ids = torch.tensor([[1, 8, 9, 2], [1, 2, 9, 8], [8, 8, 8, 8], [1, 2, 3, 4]])
    expected = torch.tensor([
        [True, True, False, False],  # 8 comes first
        [True, True, True, False],  # 9 comes first
        [True, False, False, False],
        [True, True, True, True],
    ])
    assert torch.equal(response_mask_after_stop(ids, [9, 8]), expected)
    assert torch.equal(response_mask_after_stop(ids, (8, 9)), expected)


def test_response_mask_when_pad_equals_eos():
    # GPT-2: pad id == eos id. The first eos is real, the padding copies after it are not.
    eos = 50256
    ids = torch.tensor([[5, eos, eos, eos], [eos, eos, eos, eos]])
    expected = torch.tensor([[True, True, False, False], [True, False, False, False]])
    assert torch.equal(response_mask_after_stop(ids, eos), expected)


def test_response_mask_with_no_stop_ids_is_all_true():
    ids = torch.tensor([[1, 2], [3, 4]])
    assert response_mask_after_stop(ids, []).all()


def test_last_true_index_any_padding_side():
    mask = torch.tensor([
        [True, True, False, False],  # right padding
        [False, False, True, True],  # left padding
        [False, False, False, False],  # empty row: 0 by convention
        [True, False, True, False],  # holes: the last True wins
        [True, True, True, True],
    ])
    expected = torch.tensor([1, 3, 0, 2, 3])
    assert torch.equal(last_true_index(mask), expected)
    assert last_true_index(mask).dtype == torch.long
    assert torch.equal(last_true_index(mask.long()), expected)  # a 0/1 attention mask
