"""The file jobs behind `rlhf generate` (best-of-n included), `rlhf score` and
`rlhf eval-reward`: read a file, run a model over it, write or print the result."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from rlhf.algo.best_of_n import best_of_n, best_of_n_kl
from rlhf.data.preferences import normalize_rows, subset
from rlhf.data.prompts import load_prompts
from rlhf.data.reward_text import tokenize_preferences
from rlhf.data.sources import load_rows, row_location
from rlhf.errors import UserError
from rlhf.models import load_policy, load_reward_model
from rlhf.reward.reading import reading_length, reward_model_reading
from rlhf.reward.scorers import RewardModelScorer, load_scorer
from rlhf.rl.generation import row_seed, stop_token_ids
from rlhf.rl.rollout import sample_texts
from rlhf.stages.reward import evaluate_reward


@dataclass
class GenerationSummary:
    """What `rlhf generate` wrote. The scores are None when no reward was given."""

    count: int
    best_of: int = 1
    mean_best: float | None = None
    mean_candidates: float | None = None
    """The mean of every finite candidate score: what best-of-1 gives on average."""
    non_finite: int = 0
    """Candidate scores that were NaN or infinite (left out of the means, never picked)."""

    def lines(self, output_path: str) -> list[str]:
        """The closing report: the best score against the average one, and the KL paid."""
        if self.mean_best is None:
            return [f"generated {self.count} responses -> {output_path}"]
        n = self.best_of
        lines = [f"best-of-{n} over {self.count} prompts -> {output_path}",
                 f"  mean best score       {self.mean_best:.6g}",
                 f"  mean candidate score  {self.mean_candidates:.6g}  (best-of-1 on average)",
                 f"  KL(best-of-{n} || policy) <= {best_of_n_kl(n):.4f} nats  "
                 "(log n - (n - 1) / n, docs/best_of_n.md)"]
        if self.non_finite:
            lines.append(f"  {self.non_finite} candidate scores were NaN or infinite; "
                         "they were never picked and are left out of the means")
        return lines


def check_best_of_options(best_of: int, reward_model: str | None, keep_candidates: bool,
                          temperature: float) -> None:
    """The flag combinations of `rlhf generate` that cannot mean what the user wants.

    --reward-model with --best-of 1 is allowed: it scores plain samples (the n = 1 point of a
    best-of-n curve). --best-of N > 1 without a reward has nothing to pick with, and greedy
    decoding would give N identical candidates (and no KL at all).
    """
    if reward_model is None and best_of > 1:
        raise UserError(f"--best-of {best_of} needs --reward-model (a reward model folder or "
                        "hub name, or a function module:function) to pick the best response")
    if reward_model is None and keep_candidates:
        raise UserError("--keep-candidates needs --reward-model (and --best-of N) to score "
                        "the candidates")
    if best_of > 1 and temperature == 0:
        raise UserError(f"--best-of {best_of} needs --temperature > 0: greedy decoding gives "
                        f"{best_of} identical candidates")


def candidate_seed(seed: int, prompt: int, candidate: int) -> int:
    """The sampling seed of one candidate response: candidate 0 is keyed (seed, prompt) like
    a plain `rlhf generate` sample, others (seed, prompt, candidate). So best-of-1 writes what
    plain generate writes, and the first n candidates of a best-of-N run are those of a
    best-of-n run: one run at N = 64 holds every n <= 64 (with --keep-candidates)."""
    return row_seed(seed, prompt) if candidate == 0 else row_seed(seed, prompt, candidate)


def generate_file(model_path: str, prompts_path: str, output_path: str, *, template: str,
                  max_new_tokens: int, temperature: float, batch_size: int,
                  max_prompt_tokens: int, seed: int = 0, best_of: int = 1,
                  reward_model: str | None = None, keep_candidates: bool = False,
                  reward_max_length: int | None = None,
                  append_eos: bool | None = None) -> GenerationSummary:
    """`rlhf generate`: answer every prompt of a file; one JSON line per prompt.

    With `reward_model` (a reward model, or a function 'module:function' as `model.reward`
    takes), each prompt gets `best_of` candidates, scored on the prompt text written to the
    file, and the line holds the best one (`algo.best_of_n`) with its score. `batch_size`
    counts sampled sequences, so memory does not grow with `best_of`; every candidate has its
    own seed (`candidate_seed`), so the output does not depend on `batch_size`.
    """
    check_best_of_options(best_of, reward_model, keep_candidates, temperature)
    scorer = None if reward_model is None else load_scorer(  # first: a bad name fails fast
        reward_model, append_eos=append_eos, max_length=reward_max_length,
        length_option="--reward-max-length", batch_size=batch_size)
    model, tokenizer = load_policy(model_path)
    model.eval()
    prompts, prompt_ids = load_prompts(prompts_path, template=template, tokenizer=tokenizer,
                                       max_prompt_tokens=max_prompt_tokens)
    stops = stop_token_ids(tokenizer, None)
    per_chunk = max(1, batch_size // best_of)  # prompts whose candidates are sampled together
    totals = _ScoreTotals(best_of)
    with open(output_path, "w", encoding="utf-8") as handle:
        for start in range(0, len(prompt_ids), per_chunk):
            indices = range(start, min(start + per_chunk, len(prompt_ids)))
            rows = [prompt_ids[i] for i in indices for _ in range(best_of)]
            seeds = [candidate_seed(seed, i, j) for i in indices for j in range(best_of)]
            texts = sample_texts(model, tokenizer, rows, seeds, batch_size=batch_size,
                                 max_new_tokens=max_new_tokens, temperature=temperature,
                                 stop_token_ids=stops)
            texts_of = [texts[k * best_of:(k + 1) * best_of] for k in range(len(indices))]
            for line in _output_lines([prompts.prompts[i] for i in indices], texts_of, scorer,
                                      totals, first_index=start, reward_model=reward_model,
                                      keep_candidates=keep_candidates):
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return totals.result(len(prompt_ids), scored=scorer is not None)


class _ScoreTotals:
    """Running sums for the closing report of a best-of-n run."""

    def __init__(self, best_of: int):
        self.best_of, self.best, self.candidates, self.finite, self.non_finite = \
            best_of, 0.0, 0.0, 0, 0

    def add(self, scores: torch.Tensor, best: torch.Tensor) -> None:
        """`scores` (P, n) and the (P,) index of each row's best candidate."""
        finite = torch.isfinite(scores)  # (P, n)
        self.best += float(scores.gather(1, best[:, None]).sum())
        self.candidates += float(scores[finite].double().sum())
        self.finite += int(finite.sum())
        self.non_finite += int((~finite).sum())

    def result(self, count: int, *, scored: bool) -> GenerationSummary:
        if not scored or not count:
            return GenerationSummary(count, self.best_of)
        return GenerationSummary(count, self.best_of, mean_best=self.best / count,
                                 mean_candidates=self.candidates / self.finite,
                                 non_finite=self.non_finite)


def _output_lines(prompts: list[str], texts: list[list[str]], scorer, totals: _ScoreTotals, *,
                  first_index: int, reward_model: str | None,
                  keep_candidates: bool) -> list[dict]:
    """The JSON objects of a chunk of prompts, each with its candidates' texts: the one sample
    (no scorer), or the best candidate with its score and n (and every candidate if kept)."""
    if scorer is None:
        return [{"prompt": prompt, "response": candidates[0]}
                for prompt, candidates in zip(prompts, texts, strict=True)]
    n = len(texts[0])
    scores = scorer([p for p in prompts for _ in range(n)],
                    [t for candidates in texts for t in candidates]).view(len(prompts), n)
    hopeless = ~torch.isfinite(scores).any(dim=1)  # (P,) rows best_of_n would refuse
    if bool(hopeless.any()):
        row = first_index + int(hopeless.nonzero()[0]) + 1
        raise UserError(f"prompt {row}: all {n} candidate scores from --reward-model "
                        f"{reward_model} are NaN or infinite; check the reward")
    best = best_of_n(scores)  # (P,)
    totals.add(scores, best)
    lines = []
    for row, (prompt, candidates) in enumerate(zip(prompts, texts, strict=True)):
        line = {"prompt": prompt, "response": candidates[int(best[row])],
                "score": float(scores[row, best[row]]), "n": n}
        if keep_candidates:
            line["candidates"] = [{"response": text, "score": _json_score(score)}
                                  for text, score in zip(candidates, scores[row].tolist(),
                                                         strict=True)]
        lines.append(line)
    return lines


def _json_score(score: float) -> float | None:
    """A score as JSON can hold it: NaN and infinities (not JSON) become null."""
    return score if math.isfinite(score) else None


def score_pair(reward_model: str, prompt: str, response: str, **kwargs) -> float:
    """The score of one (prompt, response) pair."""
    return float(RewardModelScorer.from_pretrained(reward_model, **kwargs)([prompt], [response])[0])


def score_file(reward_model: str, input_path: str, output_path: str, *, batch_size: int = 32,
               max_length: int | None = None, append_eos: bool | None = None) -> int:
    """Score every {prompt, response} line of a JSONL file; write the lines with `score` added."""
    rows = read_prompt_response_rows(input_path)
    scorer = RewardModelScorer.from_pretrained(reward_model, batch_size=batch_size,
                                               max_length=max_length, append_eos=append_eos)
    scores = scorer([r["prompt"] for r in rows], [r["response"] for r in rows])
    with open(output_path, "w", encoding="utf-8") as handle:
        for row, score in zip(rows, scores.tolist(), strict=True):
            handle.write(json.dumps(row | {"score": score}, ensure_ascii=False) + "\n")
    return len(rows)


def read_prompt_response_rows(path: str) -> list[dict]:
    """JSONL rows that each have string `prompt` and `response` fields (file:line errors)."""
    rows, _, source = load_rows(path, test_split=None)
    for index, row in enumerate(rows):
        for key in ("prompt", "response"):
            if not isinstance(row.get(key), str):
                found = ", ".join(repr(name) for name in row) or "none"
                raise UserError(f"{source}: {row_location(rows, index)} needs a string '{key}' "
                                f"field (fields found: {found}); every row must look like "
                                '{"prompt": "...", "response": "..."}')
    return rows


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
    data = normalize_rows(rows, source=source, columns=columns, tokenizer=tokenizer,
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
