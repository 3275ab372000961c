"""Turn (prompt, response) text into reward-model scores.

The reward model reads text with its own tokenizer and the template it was trained with
(sentence pair or concatenation), whatever tokenizer produced the text: the policy's tokens
are decoded to text first and re-encoded here (DESIGN.md; trl #3595). It gets every input its
tokenizer returns (BERT's token_type_ids) and, where it was trained so, an EOS after the
response (`rlhf.reward.reading`).
"""

from __future__ import annotations

import importlib
import re
from typing import Protocol

import torch

from rlhf.data.batching import pad_sequences, pad_to_longest
from rlhf.data.reward_text import EncodedInputs, encode_model_inputs
from rlhf.errors import UserError
from rlhf.models import load_reward_model, sequence_scores
from rlhf.reward.reading import (
    SCORE_MEAN_KEY,
    SCORE_STD_KEY,
    reading_length,
    reward_model_reading,
)


class RewardModelScorer:
    """Scores text with a sequence-classification reward model."""

    def __init__(self, model, tokenizer, *, template: str, separator: str = "\n",
                 max_length: int | None = None, batch_size: int = 32,
                 device: str | torch.device = "cpu", append_eos: bool = False,
                 length_option: str = "--max-length"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.template = template
        self.separator = separator
        # None: the model's own limit (at most 512); one beyond the model's positions is an
        # error naming `length_option`, the user's name for it (a CLI flag or a config key).
        self.max_length = reading_length(model, max_length, length_option,
                                         getattr(model, "name_or_path", None) or "reward model")
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.append_eos = append_eos

    @classmethod
    def from_pretrained(cls, path: str, *, template: str | None = None,
                        separator: str | None = None, append_eos: bool | None = None,
                        **kwargs) -> RewardModelScorer:
        """Load a reward model; template, separator and append_eos default to how the model
        reads text (`reward_model_reading`: what train-reward stored, else how TRL trains a
        decoder or the sentence pair an encoder was trained on)."""
        model, tokenizer = load_reward_model(path, trained=True)
        reading = reward_model_reading(model, tokenizer)
        return cls(model, tokenizer, template=template or reading["template"],
                   separator=reading["separator"] if separator is None else separator,
                   append_eos=reading["append_eos"] if append_eos is None else append_eos,
                   **kwargs)

    def encode_inputs(self, prompts: list[str], responses: list[str]) -> EncodedInputs:
        """Every model input, exactly as the model saw text in training."""
        return encode_model_inputs(
            self.tokenizer, prompts, responses, template=self.template,
            separator=self.separator, max_length=self.max_length, append_eos=self.append_eos)

    def encode(self, prompts: list[str], responses: list[str]) -> list[list[int]]:
        """The reward model's input ids, exactly as it saw text in training."""
        return self.encode_inputs(prompts, responses).input_ids

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """(B,) float scores on the CPU."""
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            encoded = self.encode_inputs(prompts[start:start + self.batch_size],
                                         responses[start:start + self.batch_size])
            input_ids, attention_mask = pad_sequences(encoded.input_ids,
                                                      self.tokenizer.pad_token_id)
            extra = {name: pad_to_longest(rows, encoded.pad_values[name]).to(self.device)
                     for name, rows in encoded.extra.items()}  # each (B, T)
            scores.append(sequence_scores(self.model, input_ids.to(self.device),
                                          attention_mask.to(self.device), **extra).float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)


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


class Scorer(Protocol):
    """Anything that scores (prompt, response) text: (B,) float scores on the CPU."""

    def __call__(self, prompts: list[str], responses: list[str]) -> torch.Tensor: ...


def load_scorer(spec: str, *, template: str | None = None, separator: str | None = None,
                append_eos: bool | None = None, max_length: int | None = None,
                length_option: str = "--max-length", batch_size: int = 32,
                device: str | torch.device = "cpu") -> Scorer:
    """A reward function 'module:function', or a reward model (hub name or folder) that reads
    text with its own tokenizer, template and EOS convention (None: the model's own)."""
    if is_function_spec(spec):
        return load_function_scorer(spec)
    return RewardModelScorer.from_pretrained(
        spec, template=template, separator=separator, append_eos=append_eos,
        max_length=max_length, length_option=length_option, batch_size=batch_size,
        device=device)


def stored_score_stats(scorer: Scorer) -> dict[str, float | None]:
    """The score mean and std train-reward stored with a reward model (empty for others)."""
    if not isinstance(scorer, RewardModelScorer):
        return {}
    config = scorer.model.config
    return {"mean": getattr(config, SCORE_MEAN_KEY, None),
            "std": getattr(config, SCORE_STD_KEY, None)}
