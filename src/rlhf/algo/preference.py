"""Offline preference losses on sequence log-probabilities: DPO, conservative and robust DPO,
IPO and SimPO. One function per objective; the caller picks.

Inputs are per-pair (B,) tensors: the policy's and the reference's log-probs of the chosen and
the rejected response, each a sum over the response's tokens (EOS included, prompt and padding
excluded; `sequence_logprobs` makes them from per-token log-probs), or for SimPO the per-token
means. Every loss is a mean over the B pairs, so a micro-batch weighted by its share of the
pairs accumulates exactly to the whole batch, and returns (loss, PreferenceStats) with the
stats detached. Reference-free DPO (a uniform reference) is `dpo_loss` with zero reference
log-probs: no separate function.

The losses depend on the log-probs only through h = (pi_c - ref_c) - (pi_r - ref_r): a constant
added to both chosen and rejected (of the policy, or of the reference) changes nothing. Sigmoid
losses use logsigmoid, which stays finite and keeps its gradient for any |h|; log(sigmoid(x))
underflows to -inf once sigmoid(x) rounds to 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf.algo.masking import masked_sum
from rlhf.algo.types import PreferenceStats


def sequence_logprobs(token_logprobs: torch.Tensor,
                      response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums, means), both (B,): each row's log-prob summed and averaged over its response.

    token_logprobs (B, T), already shifted (log p of token t given the tokens before it);
    response_mask (B, T) True on response tokens and their EOS. DPO and IPO take the sums
    (log pi(y|x)); SimPO the means (log pi(y|x) / |y|). Masked positions are selected away, so
    garbage there (even NaN) reaches neither value nor gradient; a row with no response token
    gives 0 and 0.
    """
    sums = masked_sum(token_logprobs, response_mask, dim=1)  # (B,)
    lengths = response_mask.sum(dim=1).clamp(min=1)  # (B,) as masked_mean counts
    return sums, sums / lengths


def implicit_rewards(policy_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                     beta: float) -> torch.Tensor:
    """(B,) beta * (log pi - log pi_ref): the reward DPO's policy is optimal for (Rafailov et
    al. 2023, up to a per-prompt constant), detached: a metric, never a loss term."""
    return (beta * (policy_logprobs - ref_logprobs)).detach()


def _check_pairs(*tensors: torch.Tensor) -> None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"preference losses take (B,) log-probs of equal shape, one per pair; "
                         f"got shapes {[tuple(t.shape) for t in tensors]}")


def _log_ratio_margin(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                      ref_chosen: torch.Tensor, ref_rejected: torch.Tensor) -> torch.Tensor:
    """(B,) h = (pi_c - pi_r) - (ref_c - ref_r), grouped as TRL groups it."""
    _check_pairs(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    return (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected).detach()


def _stats(loss: torch.Tensor, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
           policy_chosen: torch.Tensor, policy_rejected: torch.Tensor) -> PreferenceStats:
    """Batch means of the detached per-pair rewards (B,) and policy log-probs (B,)."""
    margin = chosen_rewards - rejected_rewards  # (B,)
    return PreferenceStats(
        loss=loss.detach(), chosen_reward=chosen_rewards.mean(),
        rejected_reward=rejected_rewards.mean(),
        accuracy=(margin > 0).float().mean(),  # ties are wrong, as in RewardLossStats and TRL
        margin_mean=margin.mean(), chosen_logprob=policy_chosen.detach().mean(),
        rejected_logprob=policy_rejected.detach().mean())


def _reference_stats(loss: torch.Tensor, policy_chosen: torch.Tensor,
                     policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                     ref_rejected: torch.Tensor, beta: float) -> PreferenceStats:
    return _stats(loss, implicit_rewards(policy_chosen, ref_chosen, beta),
                  implicit_rewards(policy_rejected, ref_rejected, beta),
                  policy_chosen, policy_rejected)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, *, beta: float,
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, PreferenceStats]:
    """DPO (Rafailov et al. 2023): mean -log sigmoid(beta h), all inputs (B,) summed log-probs.

    h = (pi_c - ref_c) - (pi_r - ref_r). With label_smoothing eps it is conservative DPO
    (Mitchell 2023, "A note on DPO with noisy preferences"): each label is taken to be right
    with probability 1 - eps, so the target is a soft label,
    -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h); its minimum is at a finite h
    (sigmoid(beta h) = 1 - eps), which keeps the implicit rewards from growing without bound.
    eps = 0 is plain DPO. The reference log-probs get no gradient; zero reference log-probs
    give reference-free DPO.
    """
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"dpo_loss: label_smoothing (the flip probability) must be in "
                         f"[0, 0.5], got {label_smoothing}")
    logits = beta * _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen,
                                      ref_rejected)  # (B,)
    losses = -F.logsigmoid(logits)  # (B,)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    loss = losses.mean()
    return loss, _reference_stats(loss, policy_chosen, policy_rejected, ref_chosen,
                                  ref_rejected, beta)


def robust_dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                    ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, *, beta: float,
                    label_smoothing: float) -> tuple[torch.Tensor, PreferenceStats]:
    """Robust DPO (Chowdhury et al. 2024, "Provably robust DPO"), all inputs (B,):
    mean (-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)) / (1 - 2 eps).

    eps (label_smoothing) is the probability that a label was flipped. Unlike conservative
    DPO this is an unbiased estimate of the clean loss: its expectation over flips with
    probability eps is exactly -log sigmoid(beta h) of the true labels.
    eps >= 0.5 is refused: at 0.5 the labels carry no information and the weight 1/(1 - 2 eps)
    diverges. eps = 0 is plain DPO.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust_dpo_loss: label_smoothing (the flip probability) must be in "
                         f"[0, 0.5), got {label_smoothing}")
    logits = beta * _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen,
                                      ref_rejected)  # (B,)
    losses = (-(1.0 - label_smoothing) * F.logsigmoid(logits)
              + label_smoothing * F.logsigmoid(-logits)) / (1.0 - 2.0 * label_smoothing)  # (B,)
    loss = losses.mean()
    return loss, _reference_stats(loss, policy_chosen, policy_rejected, ref_chosen,
                                  ref_rejected, beta)


def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, *,
             beta: float) -> tuple[torch.Tensor, PreferenceStats]:
    """IPO (Azar et al. 2023, "A general theoretical paradigm ..."): mean
    (h - 1 / (2 beta))^2, all inputs (B,) summed log-probs; beta is the paper's tau.

    A squared loss regresses h to a finite target, so deterministic preferences cannot drive
    the log-ratio to infinity as they can under DPO's sigmoid. We follow the paper: h uses the
    log-probs summed over the response. TRL's IPO averages them over the response tokens
    instead, which rescales h by 1/length and so changes what beta means.
    """
    h = _log_ratio_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)  # (B,)
    loss = ((h - 1.0 / (2.0 * beta)) ** 2).mean()
    return loss, _reference_stats(loss, policy_chosen, policy_rejected, ref_chosen,
                                  ref_rejected, beta)


def simpo_loss(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, *,
               beta: float, gamma: float) -> tuple[torch.Tensor, PreferenceStats]:
    """SimPO (Meng et al. 2024): mean -log sigmoid(beta (avg_c - avg_r) - gamma).

    avg_c, avg_r (B,): the policy's per-token mean log-probs of the responses
    (`sequence_logprobs`' means). Reference-free: the implicit reward is beta * avg, the
    likelihood the policy generates with, and averaging removes the pull toward long
    responses that summed log-probs have. gamma is the target reward margin: the loss is
    log 2 at beta (avg_c - avg_r) = gamma, so a pair counts as won only by more than gamma.
    TRL's CPO trainer spells gamma as simpo_gamma (it divides by beta and multiplies back).
    Stats: rewards beta * avg; accuracy and margin ignore gamma.
    """
    _check_pairs(policy_chosen_avg, policy_rejected_avg)
    chosen_rewards = beta * policy_chosen_avg  # (B,)
    rejected_rewards = beta * policy_rejected_avg  # (B,)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma).mean()
    return loss, _stats(loss, chosen_rewards.detach(), rejected_rewards.detach(),
                        policy_chosen_avg, policy_rejected_avg)
