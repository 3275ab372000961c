"""losses: token and sequence (GSPO) log ratios and the clipped surrogate with clip-higher."""

import dataclasses
import math

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.aggregation import token_mean
from rlhf.algo.losses import (
    clipped_surrogate,
    ppo_policy_loss,
    sequence_log_ratio,
    token_log_ratio,
)
from rlhf.algo.types import SurrogateTerms

NAN, INF = float("nan"), float("inf")

# clip_low 0.2, clip_high 0.28: r is clipped to [0.8, 1.28]. Last column masked.
#   A    r     -A r    -A clip(r)  max     branch
#  +1   1.1   -1.1    -1.1        -1.1    inside
#  +1   1.25  -1.25   -1.25       -1.25   inside (a symmetric 0.2 would clip it: clip-higher)
#  +1   1.5   -1.5    -1.28       -1.28   clipped_high (A > 0, r > 1.28)
#  +1   0.5   -0.5    -0.8        -0.5    unclipped (below, but A > 0)
#  -1   1.5    1.5     1.28        1.5    unclipped (above, but A < 0)
#  -1   0.5    0.5     0.8         0.8    clipped_low (A < 0, r < 0.8)
#  -1   0.85   0.85    0.85        0.85   inside
#  -2   0.7    1.4     1.6         1.6    clipped_low
RATIOS = [[1.1, 1.25, 1.5, 0.5], [1.5, 0.5, 0.85, 0.7]]
MASK = torch.tensor([[True, True, True, True, False], [True, True, True, True, False]])
OLD = torch.tensor([[-1.0, -2.0, -0.5, -3.0, -1.0], [-1.5, -0.7, -2.2, -1.0, -0.3]])
LOGP = OLD + torch.tensor([[math.log(r) for r in row] + [0.0] for row in RATIOS])
ADV = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, -1.0, -2.0, 0.0]])
LOSS = torch.tensor([[-1.1, -1.25, -1.28, -0.5, 0.0], [1.5, 0.8, 0.85, 1.6, 0.0]])


def _surrogate(logprobs, old=OLD, advantages=ADV, low=0.2, high=0.28):
    return clipped_surrogate(token_log_ratio(logprobs, old, MASK), advantages, MASK, low, high)


def test_clipped_surrogate_by_hand():
    logprobs = LOGP.clone().requires_grad_(True)
    terms = _surrogate(logprobs)
    assert_close(terms.loss, LOSS)
    assert_close(terms.ratio, torch.tensor([row + [1.0] for row in RATIOS]))
    assert not terms.ratio.requires_grad and terms.loss.requires_grad
    assert terms.clipped_high.tolist() == [[False, False, True, False, False], [False] * 5]
    assert terms.clipped_low.tolist() == [[False] * 5, [False, True, False, True, False]]
    # d(-A r)/dlogp = -A r where the unclipped branch is active, 0 where the clip holds
    terms.loss.sum().backward()
    assert_close(logprobs.grad, torch.tensor([[-1.1, -1.25, 0.0, -0.5, 0.0],
                                              [1.5, 0.0, 0.85, 0.0, 0.0]]))


def test_symmetric_clip_matches_ppo_policy_loss():
    terms = _surrogate(LOGP, low=0.2, high=0.2)
    loss, stats = ppo_policy_loss(LOGP, OLD, ADV, MASK, clip_range=0.2)
    assert_close(token_mean(terms.loss, MASK), loss)
    clipped = (terms.clipped_low | terms.clipped_high).float()
    assert_close(token_mean(clipped, MASK), stats.clipfrac)
    # with clip_high 0.2 the ratio 1.25 (A > 0) is now clipped too
    assert terms.clipped_high[0, 1]


def test_surrogate_terms_is_a_frozen_record():
    terms = _surrogate(LOGP)
    assert [f.name for f in dataclasses.fields(SurrogateTerms)] == [
        "loss", "ratio", "clipped_low", "clipped_high"]
    assert terms.clipped_low.dtype == terms.clipped_high.dtype == torch.bool
    with pytest.raises(dataclasses.FrozenInstanceError):
        terms.loss = LOSS


def _dirty(x, garbage):
    return torch.where(MASK, x, torch.full_like(x, garbage))


@pytest.mark.parametrize("log_ratio_of", [token_log_ratio, sequence_log_ratio,
                                          lambda logp, old, mask: logp - old])
def test_garbage_under_the_mask_changes_neither_loss_nor_gradient(log_ratio_of):
    clean_logp = LOGP.clone().requires_grad_(True)
    dirty_logp = _dirty(LOGP, NAN).requires_grad_(True)
    dirty_old, dirty_adv = _dirty(OLD, INF), _dirty(ADV, NAN)
    before = dirty_old.clone(), dirty_adv.clone()
    clean = clipped_surrogate(log_ratio_of(clean_logp, OLD, MASK), ADV, MASK, 0.2, 0.28)
    dirty = clipped_surrogate(log_ratio_of(dirty_logp, dirty_old, MASK), dirty_adv, MASK,
                              0.2, 0.28)
    clean.loss.sum().backward()
    dirty.loss.sum().backward()
    for field in ("loss", "ratio", "clipped_low", "clipped_high"):
        assert_close(getattr(dirty, field), getattr(clean, field))
    assert_close(dirty_logp.grad, clean_logp.grad)
    assert (dirty.loss[~MASK] == 0).all() and (dirty.ratio[~MASK] == 1).all()
    assert not (dirty.clipped_low | dirty.clipped_high)[~MASK].any()
    assert_close((dirty_old, dirty_adv), before, equal_nan=True)  # inputs not mutated


def test_token_log_ratio_by_hand():
    ratio = token_log_ratio(_dirty(LOGP, NAN), OLD, MASK)
    expected = torch.tensor([[math.log(r) for r in row] + [0.0] for row in RATIOS])
    assert_close(ratio, expected)


# ---- GSPO: the sequence ratio ---------------------------------------------------------------

def test_sequence_log_ratio_by_hand():
    # row 0: (0.1 + 0.3) / 2 = 0.2 on its two real tokens; row 1: (-0.3 + 0 + 0.6) / 3 = 0.1;
    # row 2 has no real token: 0 everywhere
    old = torch.zeros(3, 3)
    logp = torch.tensor([[0.1, 0.3, NAN], [-0.3, 0.0, 0.6], [NAN, INF, 5.0]])
    mask = torch.tensor([[True, True, False], [True, True, True], [False, False, False]])
    assert_close(sequence_log_ratio(logp, old, mask),
                 torch.tensor([[0.2, 0.2, 0.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]]))


def test_sequence_ratio_is_the_geometric_mean_of_token_ratios():
    ratio = torch.exp(sequence_log_ratio(LOGP, OLD, MASK))  # (B, R)
    for b, row in enumerate(RATIOS):
        assert_close(ratio[b, :4], torch.full((4,), math.prod(row) ** (1 / 4)))


def test_sequence_log_ratio_gradient_is_the_mean_of_token_gradients():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64)  # (B, R, D)
    weight = torch.randn(4, generator=generator, dtype=torch.float64, requires_grad=True)
    old = torch.randn(3, 5, generator=generator, dtype=torch.float64)  # (B, R)
    mask = torch.tensor([[True, True, False, True, False], [True] * 5, [False] * 5])
    logp = features @ weight  # (B, R)
    sequence = sequence_log_ratio(logp, old, mask)  # (B, R)
    for b in range(2):
        real = mask[b].nonzero().flatten().tolist()
        token_grads = [torch.autograd.grad(logp[b, t], weight, retain_graph=True)[0]
                       for t in real]
        for t in real:
            (grad,) = torch.autograd.grad(sequence[b, t], weight, retain_graph=True)
            assert_close(grad, torch.stack(token_grads).mean(dim=0))
    (empty_grad,) = torch.autograd.grad(sequence[2].sum(), weight)
    assert (empty_grad == 0).all()  # a row with no real token: no gradient, no NaN
