"""How a reward model reads text: the keys train-reward writes into a model's config.json, the
conventions other tools trained with (TRL's RewardTrainer), and how many tokens it reads."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from rlhf.models import check_fits_positions, is_decoder_classifier, position_limit

# Keys written into a reward model's config.json so scoring reads text the way it was trained
# and PPO can normalise scores without another pass over data.
TEMPLATE_KEY = "rlhf_template"
SEPARATOR_KEY = "rlhf_separator"
SCORE_MEAN_KEY = "rlhf_score_mean"
SCORE_STD_KEY = "rlhf_score_std"
APPEND_EOS_KEY = "rlhf_append_eos"  # whether an EOS ended each input (`encode_model_inputs`)

APPEND_EOS_CHOICES = {"auto": None, "yes": True, "no": False}
"""The command line's --append-eos: auto = the model's own reading (`reward_model_reading`)."""


READ_LIMIT = 512
"""Default token limit of a reward model's input when none is set (and the model reads more)."""


def reading_length(model: nn.Module, requested: int | None, key: str, name: str) -> int:
    """The token limit a frozen model reads text with: `requested` when it fits the model's
    positions (else a UserError naming `key`), or, when None, the model's own limit capped at
    READ_LIMIT, so a reward model with a short position table never crashes mid-run."""
    if requested is not None:
        check_fits_positions(model, requested, key, name)
        return requested
    return min(READ_LIMIT, position_limit(model) or READ_LIMIT)


def reward_model_reading(model: PreTrainedModel, tokenizer=None) -> dict:
    """How a reward model reads text: its template, separator and EOS convention.

    A model saved by train-reward says itself how it read text (template, separator,
    append_eos; one saved before the EOS key existed was trained without). Any other model is
    read the way the common tools trained it: a decoder as TRL's RewardTrainer feeds text,
    prompt + response as one string with EOS handled by `trl_appends_eos`; an encoder
    (BERT, RoBERTa) as the sentence pair tokenizer(prompt, response) it was trained on (e.g.
    argilla/roberta-base-reward-model-falcon-dolly).
    """
    config = model.config
    saved_by_rlhf = getattr(config, TEMPLATE_KEY, None) is not None
    append_eos = getattr(config, APPEND_EOS_KEY, None)
    if append_eos is None:
        eos = tokenizer.eos_token_id if tokenizer is not None else config.eos_token_id
        append_eos = False if saved_by_rlhf else trl_appends_eos(eos, config.pad_token_id)
    if saved_by_rlhf:
        template, separator = config.rlhf_template, getattr(config, SEPARATOR_KEY, None)
    elif is_decoder_classifier(model):
        template, separator = "concat", ""
    else:
        template, separator = "pair", None
    return {
        "template": template,
        "separator": "\n" if separator is None else separator,
        "append_eos": bool(append_eos),
    }


def trl_appends_eos(eos_token_id: int | None, pad_token_id: int | None) -> bool:
    """Whether a reward model trained with TRL's RewardTrainer read an EOS after the response.

    RewardTrainer (trl/trainer/reward_trainer.py, v0.24 to v1.9) appends EOS to every response
    and scores `model(**inputs).logits`, whose pooling reads the last token that is not
    `config.pad_token_id`. So the EOS was read only when it is not the pad token; with
    pad == EOS (GPT-2's usual set-up) the pooling skipped it and read the last response token,
    which a causal model scores the same with no EOS after it. TRL <= 0.23 appended nothing:
    such models need append_eos=false.
    """
    return eos_token_id is not None and eos_token_id != pad_token_id
