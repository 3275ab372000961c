"""Records passed between the RLHF math and the loops: rollouts and loss statistics."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


class _Stats:
    """Stats records hold 0-dim detached tensors; `as_dict` turns them into floats."""

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {prefix + f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class RewardLossStats(_Stats):
    loss: torch.Tensor
    """The loss value (including any centering term)."""
    accuracy: torch.Tensor
    """Share of examples whose preferred response scores strictly highest (ties are wrong)."""
    margin_mean: torch.Tensor
    """Mean of r_best - max(r_other) (r_chosen - r_rejected for pairs)."""
    chosen_mean: torch.Tensor
    """Mean score of the preferred responses."""
    chosen_std: torch.Tensor
    """Std of the preferred responses' scores."""
    rejected_mean: torch.Tensor
    """Mean score of the other responses."""
    rejected_std: torch.Tensor
    """Std of the other responses' scores."""


@dataclass(frozen=True)
class PolicyLossStats(_Stats):
    loss: torch.Tensor
    """Clipped surrogate loss (token mean)."""
    clipfrac: torch.Tensor
    """Share of real tokens where the clipped branch is the active (larger) one."""
    approx_kl: torch.Tensor
    """mean 0.5 * (logp - logp_old)^2 over real tokens (k2 estimator)."""
    ratio_mean: torch.Tensor
    """Mean of exp(logp - logp_old) over real tokens."""
    ratio_max: torch.Tensor
    """Maximum of that ratio over real tokens."""


@dataclass(frozen=True)
class ValueLossStats(_Stats):
    loss: torch.Tensor
    """Clipped value loss (token mean, with the 0.5 factor)."""
    clipfrac: torch.Tensor
    """Share of real tokens where the clipped value term is strictly larger."""
    value_mean: torch.Tensor
    """Mean predicted value over real tokens."""
    explained_variance: torch.Tensor
    """1 - Var(returns - values) / Var(returns) over real tokens."""


@dataclass(frozen=True)
class SurrogateTerms:
    """Per-token pieces of the clipped surrogate, all (B, R), for the caller to aggregate."""

    loss: torch.Tensor
    """float, with gradient: max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high)); 0 at masked."""
    ratio: torch.Tensor
    """float, detached: r = exp(log_ratio); 1 at masked positions."""
    clipped_low: torch.Tensor
    """bool: A < 0 and r < 1 - clip_low, the clipped branch strictly active (no gradient)."""
    clipped_high: torch.Tensor
    """bool: A > 0 and r > 1 + clip_high, the clipped branch strictly active (no gradient)."""


@dataclass
class Rollout:
    """One batch of experience. B = sequences, Q = query width, R = response width."""

    query_ids: torch.Tensor
    """(B, Q) long: prompts, left-padded (real tokens flush right)."""
    query_mask: torch.Tensor
    """(B, Q) bool: True on real prompt tokens."""
    response_ids: torch.Tensor
    """(B, R) long: sampled tokens; padding after the first stop token."""
    response_mask: torch.Tensor
    """(B, R) bool: True up to and including the first stop token."""
    logprobs: torch.Tensor
    """(B, R) float: log-probs of the response under the rollout policy (temperature-scaled)."""
    ref_logprobs: torch.Tensor
    """(B, R) float: the same under the frozen reference."""
    values: torch.Tensor
    """(B, R) float: V(s_t), the value of the state before response token t."""
    scores: torch.Tensor
    """(B,) float: the reward (model or function) score of each truncated response."""
    ended_with_eos: torch.Tensor
    """(B,) bool: the response emitted a stop token before the length limit."""


@dataclass(frozen=True)
class PreferenceStats(_Stats):
    """Statistics of an offline preference loss (DPO, robust DPO, IPO, SimPO): batch means."""

    loss: torch.Tensor
    """The loss value (batch mean)."""
    chosen_reward: torch.Tensor
    """Mean implicit reward of the chosen responses: beta * (logp - logp_ref) (SimPO: beta *
    the mean token log-prob)."""
    rejected_reward: torch.Tensor
    """The same for the rejected responses."""
    accuracy: torch.Tensor
    """Share of pairs whose chosen reward is strictly higher (ties, e.g. policy = reference at
    the start of training, are wrong)."""
    margin_mean: torch.Tensor
    """Mean of chosen reward - rejected reward."""
    chosen_logprob: torch.Tensor
    """Mean policy log-prob of the chosen responses as the loss got it (sums over response
    tokens; SimPO: per-token means)."""
    rejected_logprob: torch.Tensor
    """The same for the rejected responses."""
