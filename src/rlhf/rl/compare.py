"""Two policies on the same prompts: samples, scores, KL to the reference and length."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algo.kl import kl_k1
from rlhf.data.batching import left_pad
from rlhf.rl.rollout import collect_rollout


@dataclass
class PolicyComparison:
    """The same prompts answered by the reference and by the trained policy, scored."""

    prompts: list[str]
    reference_responses: list[str]
    policy_responses: list[str]
    reference_scores: torch.Tensor
    """(P,) scores of the reference's responses."""
    policy_scores: torch.Tensor
    """(P,) scores of the trained policy's responses."""
    policy_kl: torch.Tensor
    """(P,) sum over response tokens of logp_policy - logp_ref, on the policy's own samples."""
    policy_lengths: torch.Tensor
    """(P,) real response tokens of the trained policy."""

    def summary(self) -> dict[str, float]:
        gain = gain_over_reference(self.reference_scores, self.policy_scores)
        return {"reference_score_mean": gain["reference_mean"],
                "reference_score_std": gain["reference_std"],
                "policy_score_mean": gain["policy_mean"], "score_gain": gain["gain"],
                "score_gain_in_reference_std": gain["gain_in_reference_std"],
                "kl_mean": float(self.policy_kl.mean()),
                "policy_length_mean": float(self.policy_lengths.float().mean())}


def gain_over_reference(reference: torch.Tensor, policy: torch.Tensor) -> dict[str, float]:
    """How far the policy's mean score rose above the reference's, also in the reference's
    std (0 std with one score; the ratio's floor keeps it finite)."""
    std = float(reference.std()) if len(reference) > 1 else 0.0
    gain = float(policy.mean() - reference.mean())
    return {"reference_mean": float(reference.mean()), "reference_std": std,
            "policy_mean": float(policy.mean()), "gain": gain,
            "gain_in_reference_std": gain / max(std, 1e-8)}


@torch.no_grad()
def compare_policies(policy, reference, tokenizer, scorer, prompt_ids: list[list[int]],
                     score_prompts: list[str], *, max_new_tokens: int, temperature: float,
                     stop_token_ids: list[int], seed: int = 0) -> PolicyComparison:
    """Sample both policies on the same prompts (same seed), score, and measure KL and length."""
    query_ids, query_mask = left_pad(prompt_ids, tokenizer.pad_token_id)
    results = {}
    for name, model in (("reference", reference), ("policy", policy)):
        torch.manual_seed(seed)
        results[name] = collect_rollout(
            model, reference, None, scorer, query_ids=query_ids, query_mask=query_mask,
            score_prompts=score_prompts, tokenizer=tokenizer, max_new_tokens=max_new_tokens,
            temperature=temperature, stop_token_ids=stop_token_ids)
    trained, texts = results["policy"]
    kl = (kl_k1(trained.logprobs, trained.ref_logprobs) * trained.response_mask).sum(1)
    return PolicyComparison(
        prompts=score_prompts, reference_responses=results["reference"][1].responses,
        policy_responses=texts.responses, reference_scores=results["reference"][0].scores,
        policy_scores=trained.scores, policy_kl=kl, policy_lengths=trained.response_mask.sum(1))
