"""Steps 2 to 4 of a PPO iteration: the per-token KL to the reference, per-token rewards (the
score at the last real token, -beta * KL on every token) and GAE advantages, whitened."""

from __future__ import annotations

import torch

from rlhf.algo.advantages import gae
from rlhf.algo.kl import kl_k1, kl_k3
from rlhf.algo.masking import masked_whiten
from rlhf.algo.rewards import shape_rewards
from rlhf.algo.types import Rollout

KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


def per_token_kl(rollout: Rollout, estimator: str) -> torch.Tensor:
    """(B, R) per-token KL estimate of policy vs reference, 0 after the stop token."""
    kl = KL_ESTIMATORS[estimator](rollout.logprobs, rollout.ref_logprobs)  # (B, R)
    return kl * rollout.response_mask


def advantages_and_returns(rollout: Rollout, kl: torch.Tensor, kl_coef: float, *, gamma: float,
                           lam: float, whiten_rewards: bool, sum_over_processes=None):
    """Steps 3 and 4: shaped per-token rewards, then GAE; advantages whitened over the real
    tokens of the global batch (`sum_over_processes` all-reduces the statistics)."""
    rewards, non_score = shape_rewards(rollout.scores, kl, kl_coef, rollout.response_mask)
    if whiten_rewards:  # scale only: a mean shift would change the incentive to stop early
        rewards = masked_whiten(rewards, rollout.response_mask, shift_mean=False,
                                sum_over_processes=sum_over_processes)
    advantages, returns = gae(rewards, rollout.values, rollout.response_mask, gamma, lam)
    advantages = masked_whiten(advantages, rollout.response_mask,
                               sum_over_processes=sum_over_processes)
    return advantages, returns, rewards, non_score
