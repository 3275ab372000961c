"""Gold-labelled preference pairs: the data of a reward over-optimisation study (Gao et al.
2022, "Scaling Laws for Reward Model Overoptimization"; issue 17).

A policy (usually the SFT model RL will start from) answers each prompt twice; a gold reward
(`rlhf.reward.gold:gold_descriptiveness`, or any `module:function` or reward model that
`model.reward` accepts) scores both answers, and a Bradley-Terry draw at `bt_temperature`
picks the preferred one (`rlhf.algo.bradley_terry`): noisy, as human labels are. The rows
`{prompt, chosen, rejected, chosen_gold, rejected_gold, p_chosen}` are an explicit-prompt
preference file for `rlhf train-reward` (the extra columns are ignored there): a proxy reward
model trained on N of them can then be compared with the gold along a policy's KL.

Pair i answers prompt i mod len(prompts) (the prompts are cycled when more pairs are asked
for than there are prompts); its two samples are seeded by (seed, "gold-pair", i, 0 or 1), so
a pair does not depend on the batch size. A pair whose two answers are the same text says
nothing about preference: it is skipped and counted, and further pairs are drawn in its place
(at most MAX_DRAWS_PER_PAIR times the pairs asked for). The labels of the kept pairs are drawn
at the end, in pair order, from one generator seeded by (seed, "gold-label").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch

from rlhf.algo.bradley_terry import preference_probability, sample_preferences
from rlhf.data.prompts import load_prompts
from rlhf.errors import UserError
from rlhf.models import load_policy
from rlhf.reward.scorers import FunctionScorer, load_scorer
from rlhf.rl.generation import row_seed, stop_token_ids
from rlhf.rl.rollout import sample_texts

MAX_DRAWS_PER_PAIR = 4
DEFAULT_REWARD = "rlhf.reward.gold:gold_descriptiveness"


def label_pairs(policy, tokenizer, prompt_ids: list[list[int]], prompt_texts: list[str],
                reward: Callable, *, pairs: int, temperature: float, bt_temperature: float,
                max_new_tokens: int, batch_size: int, seed: int) -> tuple[list[dict], dict]:
    """(rows, counts): `pairs` gold-labelled pairs sampled from `policy` (fewer only when
    identical answers exhaust the draws; counts["pairs"] says how many).

    `prompt_ids` are the policy's token ids of each prompt, `prompt_texts` what the reward
    reads; `reward(prompts, responses)` returns one score per response; `batch_size` counts
    pairs (2 * batch_size sequences per forward). counts: pairs (written), requested, drawn,
    identical_skipped, flipped (labels against the gold order), flip_rate, ties (equal gold).
    """
    check_label_arguments(pairs=pairs, temperature=temperature, bt_temperature=bt_temperature)
    if not prompt_ids:
        raise UserError("no prompts to label pairs for")
    kept: list[tuple[int, str, str]] = []  # (prompt index, answer a, answer b)
    drawn = identical = 0
    while len(kept) < pairs and drawn < MAX_DRAWS_PER_PAIR * pairs:
        count = min(batch_size, pairs - len(kept), MAX_DRAWS_PER_PAIR * pairs - drawn)
        answers = sample_pair_texts(policy, tokenizer, prompt_ids, range(drawn, drawn + count),
                                    temperature=temperature, max_new_tokens=max_new_tokens,
                                    seed=seed)
        for index, (first, second) in zip(range(drawn, drawn + count), answers, strict=True):
            if first == second:
                identical += 1
            else:
                kept.append((index % len(prompt_ids), first, second))
        drawn += count
    rows = _labelled_rows(kept, prompt_texts, reward, bt_temperature, seed)
    return rows, _counts(rows, requested=pairs, drawn=drawn, identical=identical)


def check_label_arguments(*, pairs: int, temperature: float, bt_temperature: float) -> None:
    """The user's mistakes, named by their command-line flags."""
    if pairs < 1:
        raise UserError(f"--pairs must be >= 1, got {pairs}")
    if not temperature > 0:
        raise UserError(f"--temperature {temperature} samples greedily: both answers of a pair "
                        "would be the same text; use a sampling temperature > 0 (e.g. 1.0)")
    if not bt_temperature > 0:
        raise UserError(f"--bt-temperature must be > 0 (the Bradley-Terry label noise), got "
                        f"{bt_temperature}")


def sample_pair_texts(policy, tokenizer, prompt_ids: list[list[int]], indices: range, *,
                      temperature: float, max_new_tokens: int, seed: int) -> list[tuple[str, str]]:
    """The two answers of each pair in `indices`, as text up to the first stop token; pair i
    answers prompt i mod len(prompt_ids), its samples seeded by (seed, "gold-pair", i, k)."""
    rows = [prompt_ids[index % len(prompt_ids)] for index in indices for _ in range(2)]
    seeds = [row_seed(seed, "gold-pair", index, k) for index in indices for k in range(2)]
    texts = sample_texts(policy, tokenizer, rows, seeds, max_new_tokens=max_new_tokens,
                         temperature=temperature, stop_token_ids=stop_token_ids(tokenizer, None))
    return list(zip(texts[0::2], texts[1::2], strict=True))


def _labelled_rows(kept: list[tuple[int, str, str]], prompt_texts: list[str], reward: Callable,
                   bt_temperature: float, seed: int) -> list[dict]:
    """Score both answers of every kept pair with the gold and draw each label."""
    if not kept:
        return []
    prompts = [prompt_texts[index] for index, _, _ in kept]
    gold_a = _scores(reward, prompts, [a for _, a, _ in kept])  # (P,)
    gold_b = _scores(reward, prompts, [b for _, _, b in kept])  # (P,)
    generator = torch.Generator().manual_seed(row_seed(seed, "gold-label"))
    a_wins = sample_preferences(gold_a, gold_b, bt_temperature, generator)  # (P,)
    p_a = preference_probability(gold_a, gold_b, bt_temperature)  # (P,)
    rows = []
    for i, (prompt, (_, a, b)) in enumerate(zip(prompts, kept, strict=True)):
        win = bool(a_wins[i])
        chosen, rejected = (a, b) if win else (b, a)
        gold_chosen, gold_rejected = (gold_a[i], gold_b[i]) if win else (gold_b[i], gold_a[i])
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                     "chosen_gold": float(gold_chosen), "rejected_gold": float(gold_rejected),
                     "p_chosen": float(p_a[i] if win else 1 - p_a[i])})
    return rows


def _scores(reward: Callable, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """(B,) float64 scores from a reward function or scorer (a list or a tensor): one finite
    number per response, or a UserError naming the reward."""
    name = getattr(reward, "__name__", type(reward).__name__)
    returned = reward(prompts, responses)
    try:
        scores = torch.as_tensor([float(score) for score in returned], dtype=torch.float64)
    except (TypeError, ValueError):
        raise UserError(f"--reward {name} must return one number per response") from None
    if len(scores) != len(responses) or not bool(torch.isfinite(scores).all()):
        raise UserError(f"--reward {name} returned {len(scores)} scores for {len(responses)} "
                        "responses, or a NaN/inf; it must return one finite number per response")
    return scores


def _counts(rows: list[dict], *, requested: int, drawn: int, identical: int) -> dict:
    flipped = sum(row["chosen_gold"] < row["rejected_gold"] for row in rows)
    ties = sum(row["chosen_gold"] == row["rejected_gold"] for row in rows)
    return {"pairs": len(rows), "requested": requested, "drawn": drawn,
            "identical_skipped": identical, "flipped": flipped,
            "flip_rate": flipped / len(rows) if rows else 0.0, "ties": ties}


def label_pairs_file(policy_path: str, prompts_path: str, output_path: str, *,
                     reward: str = DEFAULT_REWARD, pairs: int, temperature: float,
                     bt_temperature: float, max_new_tokens: int, max_prompt_tokens: int,
                     template: str, batch_size: int, seed: int) -> dict:
    """`rlhf label-pairs`: load the policy, the prompts and the gold reward (a `module:function`
    or a reward model, as `model.reward` names it), label the pairs and write them as JSONL.
    Returns the counts of `label_pairs`; nothing is written when no pair could be kept."""
    check_label_arguments(pairs=pairs, temperature=temperature, bt_temperature=bt_temperature)
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder):
        raise UserError(f"--output {output_path}: folder {folder} does not exist")
    scorer = load_scorer(reward)
    # A function's own floats (FunctionScorer would round them to float32), checked in _scores.
    gold = scorer.function if isinstance(scorer, FunctionScorer) else scorer
    policy, tokenizer = load_policy(policy_path)  # as `rlhf generate` loads it
    policy.eval()
    prompts, prompt_ids = load_prompts(prompts_path, template=template, tokenizer=tokenizer,
                                       max_prompt_tokens=max_prompt_tokens)
    rows, counts = label_pairs(policy, tokenizer, prompt_ids, list(prompts.prompts), gold,
                               pairs=pairs, temperature=temperature,
                               bt_temperature=bt_temperature, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, seed=seed)
    if not rows:
        raise UserError(f"{policy_path}: all {counts['drawn']} pairs drawn had two identical "
                        "answers, so there is nothing to label; raise --temperature or "
                        "--max-new-tokens; nothing was written")
    with open(output_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return counts
