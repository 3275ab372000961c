"""sft_loss: hand-computed values, prompt and padding positions ignored, accumulation."""

import math

import torch

from rlhf.algo.sft import sft_loss


def test_hand_computed_token_mean_over_response_tokens() -> None:
    logprobs = torch.log(torch.tensor([[0.9, 0.5, 0.25, 0.1], [0.2, 0.8, 0.3, 0.3]]))
    mask = torch.tensor([[False, True, True, False], [False, True, False, False]])
    loss, stats = sft_loss(logprobs, mask)
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.8)) / 3
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    assert float(stats.tokens) == 3.0
    assert math.isclose(float(stats.nll_sum), 3 * expected, rel_tol=1e-6)
    assert stats.as_dict("train/").keys() == {"train/loss", "train/nll_sum", "train/tokens"}


def test_prompt_and_padding_positions_change_neither_loss_nor_gradient() -> None:
    torch.manual_seed(0)
    base = -torch.rand(3, 5)
    mask = torch.rand(3, 5) > 0.5
    mask[0, 0] = True
    garbage = torch.where(mask, base, torch.full_like(base, float("nan")))
    a = base.clone().requires_grad_(True)
    b = garbage.clone().requires_grad_(True)
    loss_a, _ = sft_loss(a, mask)
    loss_b, _ = sft_loss(b, mask)
    loss_a.backward()
    loss_b.backward()
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(a.grad, b.grad) and bool((a.grad[~mask] == 0).all())


def test_micro_batches_weighted_by_token_share_equal_the_whole_batch() -> None:
    torch.manual_seed(1)
    logprobs = -torch.rand(8, 6)
    mask = torch.rand(8, 6) > 0.3
    whole, _ = sft_loss(logprobs, mask)
    total = mask.sum()
    parts = [sft_loss(logprobs[i:i + 2], mask[i:i + 2]) for i in range(0, 8, 2)]
    accumulated = sum(loss * stats.tokens / total for loss, stats in parts)
    torch.testing.assert_close(accumulated, whole)


def test_inputs_are_not_mutated_and_no_tokens_gives_zero() -> None:
    logprobs = -torch.rand(2, 3)
    copy = logprobs.clone()
    loss, stats = sft_loss(logprobs, torch.zeros(2, 3, dtype=torch.bool))
    assert float(loss) == 0.0 and float(stats.tokens) == 0.0
    assert torch.equal(logprobs, copy)
