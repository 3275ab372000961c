"""Evaluation: how well a reward model ranks held-out preferences."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator

from rlhf.algo.losses import listwise_reward_loss, pairwise_reward_loss
from rlhf.algo.types import RewardLossStats
from rlhf.data.batching import collate_preferences
from rlhf.data.preferences import (
    TokenizedPreferences,
    normalise_rows,
    subset,
    tokenize_preferences,
)
from rlhf.data.sources import load_rows
from rlhf.errors import UserError
from rlhf.models import (
    load_reward_model,
    reading_length,
    reward_model_reading,
    sequence_scores,
)


def reward_objective(rewards: torch.Tensor, best: torch.Tensor, margin: torch.Tensor | None,
                     listwise: bool, center_coef: float) -> tuple[torch.Tensor, RewardLossStats]:
    """Pick the loss for the data's layout: (B, N) rewards, best index per row.

    Pairs use the Bradley-Terry loss with an optional margin; best-of-N lists (OpenAI's
    lm-human-preferences layout) use the N-way softmax loss of Ziegler et al. 2019.
    """
    if listwise:
        return listwise_reward_loss(rewards, best, center_coef=center_coef)
    return pairwise_reward_loss(rewards[:, 0], rewards[:, 1], margin, center_coef=center_coef)


@dataclass
class RewardEvaluation:
    """Scores of every held-out example and the loss statistics over them."""

    rewards: torch.Tensor
    """(E, N) scores, column `best` holds the preferred response's score."""
    stats: RewardLossStats
    """Loss, accuracy, margin and score statistics over all examples."""

    def metrics(self, prefix: str) -> dict[str, float]:
        return self.stats.as_dict(prefix) | {f"{prefix}examples": float(len(self.rewards))}


@torch.no_grad()
def score_examples(model: torch.nn.Module, data: TokenizedPreferences, *, batch_size: int,
                   pad_id: int, accelerator: Accelerator) -> torch.Tensor:
    """(E, N) scores for every example, best response first, computed on all processes.

    Examples are dealt out round-robin over processes (padded by repeating the last one) and
    gathered back into their original order.
    """
    n, world, rank = len(data.best), accelerator.num_processes, accelerator.process_index
    per_process = -(-n // world)
    padded = list(range(n)) + [n - 1] * (per_process * world - n)
    mine = padded[rank::world]
    rows = []
    for start in range(0, len(mine), batch_size):
        indices = mine[start:start + batch_size]
        batch = collate_preferences(data, indices, pad_id)
        extra = {name: values.to(accelerator.device)
                 for name, values in batch["extra_inputs"].items()}
        with accelerator.autocast():
            scores = sequence_scores(model, batch["input_ids"].to(accelerator.device),
                                     batch["attention_mask"].to(accelerator.device), **extra)
        rows.append(best_first(scores.float().view(batch["n_responses"], -1).T,
                                batch["best"].to(accelerator.device)))
    local = torch.cat(rows)  # (per_process, N)
    gathered = accelerator.gather(local)  # (world * per_process, N), process-major
    order = gathered.view(world, per_process, -1).transpose(0, 1).reshape(world * per_process, -1)
    return order[:n].cpu()


def best_first(rewards: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Reorder each row so the preferred response's score is in column 0."""
    n = rewards.shape[1]
    columns = torch.arange(n, device=rewards.device).expand_as(rewards)  # (B, N)
    others = columns[columns != best[:, None]].view(len(rewards), n - 1)
    order = torch.cat([best[:, None], others], dim=1)
    return rewards.gather(1, order)


def evaluate_reward(model: torch.nn.Module, data: TokenizedPreferences, *, batch_size: int,
                    pad_id: int, accelerator: Accelerator,
                    center_coef: float = 0.0) -> RewardEvaluation:
    """Accuracy, loss and margins of `model` on tokenized preference data."""
    was_training = model.training
    model.eval()
    rewards = score_examples(model, data, batch_size=batch_size, pad_id=pad_id,
                             accelerator=accelerator)
    model.train(was_training)
    best = torch.zeros(len(rewards), dtype=torch.long)
    margin = torch.tensor(data.margins, dtype=rewards.dtype) if data.margins else None
    _, stats = reward_objective(rewards, best, margin, data.listwise, center_coef)
    return RewardEvaluation(rewards=rewards, stats=stats)


def evaluate_reward_model(reward_model: str, data_path: str, *, name: str | None = None,
                          split: str | None = None, columns: dict[str, str] | None = None,
                          max_samples: int | None = None, batch_size: int = 32,
                          max_length: int | None = None,
                          append_eos: bool | None = None) -> dict[str, float]:
    """`rlhf eval-reward`: accuracy, margin and counts of a saved reward model on a data set.

    Evaluates the data's test split when it has one (or the split named), else every row.
    Text is read as scoring reads it (`RewardModelScorer.from_pretrained`); `append_eos`
    None: the model's own reading (`reward_model_reading`), True/False: forced.
    """
    model, tokenizer = load_reward_model(reward_model, trained=True)
    reading = reward_model_reading(model, tokenizer)
    train_rows, test_rows, source = load_rows(data_path, name=name, split=split or "train",
                                              test_split=None if split else "test",
                                              split_option="--split")
    rows = test_rows if test_rows is not None else train_rows
    data = normalise_rows(rows, source=source, columns=columns, tokenizer=tokenizer,
                          column_option="--column ")
    if not data:
        raise UserError(f"{source}: no usable preference examples to evaluate "
                        f"({data.counts.get('rows', 0)} rows, "
                        f"{data.counts.get('dropped_identical', 0)} with identical responses); "
                        "check --data, --split and --column")
    if max_samples is not None:
        data = subset(data, range(min(max_samples, len(data))))
    tokenized = tokenize_preferences(
        data, tokenizer, template=reading["template"],
        separator=reading["separator"],
        max_length=reading_length(model, max_length, "--max-length", reward_model),
        append_eos=reading["append_eos"] if append_eos is None else append_eos)
    result = evaluate_reward(model, tokenized, batch_size=batch_size,
                             pad_id=tokenizer.pad_token_id, accelerator=Accelerator(cpu=False))
    counts = {k: float(v) for k, v in data.counts.items()}
    return result.metrics("") | counts | {"truncated": float(tokenized.truncated)}


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
        std = float(self.reference_scores.std()) if len(self.reference_scores) > 1 else 0.0
        gain = float(self.policy_scores.mean() - self.reference_scores.mean())
        return {"reference_score_mean": float(self.reference_scores.mean()),
                "reference_score_std": std,
                "policy_score_mean": float(self.policy_scores.mean()),
                "score_gain": gain, "score_gain_in_reference_std": gain / max(std, 1e-8),
                "kl_mean": float(self.policy_kl.mean()),
                "policy_length_mean": float(self.policy_lengths.float().mean())}


@torch.no_grad()
def compare_policies(policy, reference, tokenizer, scorer, prompt_ids: list[list[int]],
                     score_prompts: list[str], *, max_new_tokens: int, temperature: float,
                     stop_token_ids: list[int], seed: int = 0) -> PolicyComparison:
    """Sample both policies on the same prompts (same seed), score, and measure KL and length."""
    from rlhf.algo.kl import kl_k1
    from rlhf.data.prompts import left_pad
    from rlhf.rollout import collect_rollout

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
