"""logprobs: token log-probs and entropy at the sampling temperature."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.logprobs import token_logprobs, token_logprobs_and_entropy


def _random(dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 11, generator=generator) * 4).to(dtype)  # (B, T, V)
    labels = torch.randint(0, 11, (3, 5), generator=generator)  # (B, T)
    return logits, labels


def entropy(logits, temperature=1.0):
    labels = torch.zeros(logits.shape[:-1], dtype=torch.long)
    return token_logprobs_and_entropy(logits, labels, temperature)[1]


def _reference(logits, labels, temperature):
    log_softmax = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    return log_softmax.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def test_token_logprobs_by_hand():
    # logits (0, ln 3): softmax (1/4, 3/4), so log p(1) = ln 0.75 and log p(0) = ln 0.25.
    # At temperature 0.5 the logits double to (0, 2 ln 3): softmax (1/10, 9/10).
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])  # (1, 2, 2)
    labels = torch.tensor([[1, 0]])
    assert_close(token_logprobs(logits, labels), torch.tensor([[math.log(0.75), math.log(0.25)]]))
    assert_close(token_logprobs(logits, labels, temperature=0.5),
                 torch.tensor([[math.log(0.9), math.log(0.1)]]))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_equals_log_softmax_gather(temperature):
    logits, labels = _random()
    out = token_logprobs(logits, labels, temperature)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert_close(out, _reference(logits, labels, temperature))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_gradient_matches_log_softmax(temperature):
    logits, labels = _random()
    ours = logits.clone().requires_grad_(True)
    theirs = logits.clone().requires_grad_(True)
    token_logprobs(ours, labels, temperature).sum().backward()
    _reference(theirs, labels, temperature).sum().backward()
    assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_bf16_computes_in_float32(temperature):
    logits, labels = _random(torch.bfloat16)
    out = token_logprobs(logits, labels, temperature)
    assert out.dtype == torch.float32
    # Same upcast bf16 values, so float32 agreement, not bf16 agreement.
    assert_close(out, _reference(logits, labels, temperature))
    leaf = logits.clone().requires_grad_(True)
    token_logprobs(leaf, labels, temperature).sum().backward()
    assert leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad.float()).all()


def test_float64_stays_float64_and_input_is_untouched():
    logits, labels = _random(torch.float64)
    before = logits.clone()
    assert token_logprobs(logits, labels, 0.7).dtype == torch.float64
    assert entropy(logits, 0.7).dtype == torch.float64
    assert torch.equal(logits, before)


def test_entropy_by_hand():
    # uniform over 4: ln 4; (1/4, 3/4): -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351446
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e4, -1e4]]])  # (1, 2, 4)
    expected = torch.tensor([[math.log(4.0), 0.5623351446188083]])
    assert_close(entropy(logits), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_entropy_equals_direct_formula(dtype, temperature):
    logits, _ = _random(dtype)
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    direct = -(probabilities * probabilities.log()).sum(-1)  # (B, T)
    out = entropy(logits, temperature)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert_close(out, direct)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logprobs_with_entropy_equal_logprobs_alone_and_entropy_has_no_gradient(dtype):
    logits, labels = _random(dtype)
    leaf = logits.clone().requires_grad_(True)
    logprobs, entropies = token_logprobs_and_entropy(leaf, labels, 0.7)
    assert torch.equal(logprobs, token_logprobs(logits, labels, 0.7))
    assert logprobs.requires_grad and not entropies.requires_grad
    logprobs.sum().backward()
    alone = logits.clone().requires_grad_(True)
    token_logprobs(alone, labels, 0.7).sum().backward()
    assert torch.equal(leaf.grad, alone.grad)
