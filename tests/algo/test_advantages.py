"""advantages: GAE over the real response tokens."""

import pytest
import torch
from torch.testing import assert_close

from rlhf.algo.advantages import gae

NAN = float("nan")


def _slow_gae(rewards, values, mask, gamma, lam):
    """Plain Python GAE, one row at a time over its real tokens (a reference, not clever)."""
    advantages = [[0.0] * len(row) for row in rewards]
    returns = [[0.0] * len(row) for row in rewards]
    for b in range(len(rewards)):
        real = [t for t in range(len(rewards[b])) if mask[b][t]]
        next_value, next_advantage = 0.0, 0.0
        for t in reversed(real):
            delta = rewards[b][t] + gamma * next_value - values[b][t]
            next_advantage = delta + gamma * lam * next_advantage
            next_value = values[b][t]
            advantages[b][t] = next_advantage
            returns[b][t] = next_advantage + values[b][t]
    return torch.tensor(advantages, dtype=torch.float64), torch.tensor(returns, dtype=torch.float64)


def test_gae_by_hand():
    # gamma 0.9, lam 0.5 (so gamma * lam = 0.45); row 0 all real, row 1 stops after 2 tokens
    # row 0: t2: delta = 2 + 0 - 1.5 = 0.5, A = 0.5
    #        t1: delta = 0 + 0.9 * 1.5 - 1 = 0.35, A = 0.35 + 0.45 * 0.5 = 0.575
    #        t0: delta = 1 + 0.9 * 1 - 0.5 = 1.4, A = 1.4 + 0.45 * 0.575 = 1.65875
    #        returns = A + V = 2.15875, 1.575, 2.0
    # row 1: t2 masked (garbage 99 / 77 must not matter), the value after t1 is 0
    #        t1: delta = 0 + 0 - 1 = -1, A = -1;  t0: delta = 1.4, A = 1.4 - 0.45 = 0.95
    #        returns = 1.45, 0.0, 0
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 77.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert_close(advantages, torch.tensor([[1.65875, 0.575, 0.5], [0.95, -1.0, 0.0]]))
    assert_close(returns, torch.tensor([[2.15875, 1.575, 2.0], [1.45, 0.0, 0.0]]))


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    # lam = gamma = 1: A_t = sum_{k >= t} r_k - V_t, returns = reward-to-go
    rewards = torch.tensor([[0.1, -0.2, 3.0, 0.0]])
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.tensor([[True, True, True, False]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert_close(returns, torch.tensor([[2.9, 2.8, 3.0, 0.0]]))
    assert_close(advantages, torch.tensor([[1.9, 0.8, 0.0, 0.0]]))


def _ragged(seed, batch=7, width=12):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(batch, width, generator=generator, dtype=torch.float64)  # (B, R)
    values = torch.randn(batch, width, generator=generator, dtype=torch.float64)  # (B, R)
    lengths = torch.tensor([width, 0, 1, 5, width - 1, 3, 8])[:batch]
    mask = torch.arange(width)[None] < lengths[:, None]  # (B, R) includes an empty row
    return rewards, values, mask


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.99, 0.9), (0.5, 0.0)])
def test_gae_matches_slow_loop_on_ragged_masks(gamma, lam):
    rewards, values, mask = _ragged(seed=int(gamma * 100 + lam * 10))
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    slow_adv, slow_ret = _slow_gae(rewards.tolist(), values.tolist(), mask.tolist(), gamma, lam)
    assert advantages.dtype == torch.float64
    assert_close(advantages, slow_adv)
    assert_close(returns, slow_ret)


def test_gae_with_holes_treats_the_row_as_its_real_tokens():
    rewards, values, mask = _ragged(seed=3)
    mask = mask.clone()
    mask[0, 4] = mask[4, 0] = False  # holes inside two rows
    advantages, returns = gae(rewards, values, mask, 1.0, 0.95)
    slow_adv, slow_ret = _slow_gae(rewards.tolist(), values.tolist(), mask.tolist(), 1.0, 0.95)
    assert_close(advantages, slow_adv)
    assert_close(returns, slow_ret)


def test_garbage_under_the_mask_changes_nothing():
    rewards, values, mask = _ragged(seed=1)
    clean = gae(rewards, values, mask, 1.0, 0.95)
    for garbage in (NAN, float("inf"), 1e9):
        dirty_rewards = torch.where(mask, rewards, torch.full_like(rewards, garbage))
        dirty_values = torch.where(mask, values, torch.full_like(values, -garbage))
        before = dirty_rewards.clone(), dirty_values.clone()
        advantages, returns = gae(dirty_rewards, dirty_values, mask, 1.0, 0.95)
        assert_close(advantages, clean[0])
        assert_close(returns, clean[1])
        assert (advantages[~mask] == 0).all() and (returns[~mask] == 0).all()
        assert_close((dirty_rewards, dirty_values), before, equal_nan=True)  # not mutated


def test_gae_upcasts_half_precision():
    rewards, values, mask = _ragged(seed=2)
    advantages, returns = gae(rewards.bfloat16(), values.bfloat16(), mask, 1.0, 0.95)
    assert advantages.dtype == returns.dtype == torch.float32
