"""The file jobs behind `rlhf generate`, `rlhf score` and `rlhf eval-reward`: read a file, run
a model over it, write or print the result."""

from __future__ import annotations

import json

from accelerate import Accelerator

from rlhf.algo.masking import response_mask_after_stop
from rlhf.data.batching import left_pad
from rlhf.data.preferences import normalize_rows, subset
from rlhf.data.prompts import load_prompts
from rlhf.data.reward_text import tokenize_preferences
from rlhf.data.sources import load_rows, row_location
from rlhf.errors import UserError
from rlhf.models import load_policy, load_reward_model
from rlhf.reward.reading import reading_length, reward_model_reading
from rlhf.reward.scorers import RewardModelScorer
from rlhf.rl.generation import row_seed, sample_responses, stop_token_ids
from rlhf.rl.rollout import decode_responses
from rlhf.stages.reward import evaluate_reward


def generate_file(model_path: str, prompts_path: str, output_path: str, *, template: str,
                  max_new_tokens: int, temperature: float, batch_size: int,
                  max_prompt_tokens: int, seed: int = 0) -> int:
    """`rlhf generate`: answer every prompt of a file; one JSON line per prompt."""
    model, tokenizer = load_policy(model_path)
    model.eval()
    prompts, prompt_ids = load_prompts(prompts_path, template=template, tokenizer=tokenizer,
                                       max_prompt_tokens=max_prompt_tokens)
    stops = stop_token_ids(tokenizer, None)
    with open(output_path, "w", encoding="utf-8") as handle:
        for start in range(0, len(prompt_ids), batch_size):
            query_ids, query_mask = left_pad(prompt_ids[start:start + batch_size],
                                             tokenizer.pad_token_id)
            seeds = [row_seed(seed, start + offset) for offset in range(len(query_ids))]
            responses = sample_responses(model, query_ids, query_mask,
                                         max_new_tokens=max_new_tokens, temperature=temperature,
                                         stop_token_ids=stops, pad_id=tokenizer.pad_token_id,
                                         row_seeds=seeds)
            texts = decode_responses(tokenizer, responses,
                                     response_mask_after_stop(responses, stops), stops)
            for offset, text in enumerate(texts):
                handle.write(json.dumps({"prompt": prompts.prompts[start + offset],
                                         "response": text}, ensure_ascii=False) + "\n")
    return len(prompt_ids)


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
