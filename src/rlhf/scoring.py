"""Turn (prompt, response) text into reward-model scores.

The reward model reads text with its own tokenizer and the template it was trained with
(sentence pair or concatenation), whatever tokenizer produced the text: the policy's tokens
are decoded to text first and re-encoded here (DESIGN.md; trl #3595).
"""

from __future__ import annotations

import importlib
import json
import re

import torch

from rlhf.data.batching import pad_sequences
from rlhf.data.preferences import encode_prompt_response
from rlhf.data.sources import load_rows, row_location
from rlhf.errors import UserError
from rlhf.models import load_reward_model, reward_model_reading, sequence_scores


class RewardModelScorer:
    """Scores text with a sequence-classification reward model."""

    def __init__(self, model, tokenizer, *, template: str, separator: str = "\n",
                 max_length: int = 512, batch_size: int = 32, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.template = template
        self.separator = separator
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device)

    @classmethod
    def from_pretrained(cls, path: str, *, template: str | None = None,
                        separator: str | None = None, **kwargs) -> RewardModelScorer:
        """Load a reward model; template and separator default to what train-reward stored."""
        model, tokenizer = load_reward_model(path, trained=True)
        reading = reward_model_reading(model)
        return cls(model, tokenizer, template=template or reading["template"] or "pair",
                   separator=separator if separator is not None else reading["separator"] or "\n",
                   **kwargs)

    def encode(self, prompts: list[str], responses: list[str]) -> list[list[int]]:
        """The reward model's input ids, exactly as it saw text in training."""
        input_ids, _ = encode_prompt_response(
            self.tokenizer, prompts, responses, template=self.template,
            separator=self.separator, max_length=self.max_length)
        return input_ids

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """(B,) float scores on the CPU."""
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            ids = self.encode(prompts[start:start + self.batch_size],
                              responses[start:start + self.batch_size])
            input_ids, attention_mask = pad_sequences(ids, self.tokenizer.pad_token_id)
            scores.append(sequence_scores(self.model, input_ids.to(self.device),
                                          attention_mask.to(self.device)).float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)


def score_pair(reward_model: str, prompt: str, response: str, **kwargs) -> float:
    """The score of one (prompt, response) pair."""
    return float(RewardModelScorer.from_pretrained(reward_model, **kwargs)([prompt], [response])[0])


def score_file(reward_model: str, input_path: str, output_path: str, *, batch_size: int = 32,
               max_length: int = 512) -> int:
    """Score every {prompt, response} line of a JSONL file; write the lines with `score` added."""
    rows = read_prompt_response_rows(input_path)
    scorer = RewardModelScorer.from_pretrained(reward_model, batch_size=batch_size,
                                               max_length=max_length)
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


FUNCTION_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class FunctionScorer:
    """Scores text with a Python function `fn(prompts, responses) -> list of floats`."""

    def __init__(self, function, name: str):
        self.function = function
        self.name = name

    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        scores = self.function(list(prompts), list(responses))
        try:
            scores = torch.as_tensor([float(s) for s in scores], dtype=torch.float32)
        except (TypeError, ValueError):
            raise UserError(f"reward function {self.name} must return one float per response"
                            ) from None
        if len(scores) != len(responses):
            raise UserError(f"reward function {self.name} returned {len(scores)} scores for "
                            f"{len(responses)} responses")
        return scores


def is_function_spec(spec: str) -> bool:
    """'package.module:function' (not a built-in model name or a path)."""
    return not spec.startswith("builtin:") and bool(FUNCTION_SPEC.match(spec))


def load_function_scorer(spec: str) -> FunctionScorer:
    """Import 'module:function' as a reward; errors name what is missing."""
    module_name, function_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"cannot import reward module '{module_name}' ({error}); check "
                        "model.reward and PYTHONPATH") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserError(f"module '{module_name}' has no function '{function_name}' "
                        "(model.reward)")
    return FunctionScorer(function, spec)
