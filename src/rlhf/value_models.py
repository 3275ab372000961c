"""The value model of PPO: a scalar head on a decoder that reads every position, started from the
policy's backbone or from a decoder reward model."""

from __future__ import annotations

import copy

from transformers import AutoModelForSequenceClassification, PreTrainedModel

from rlhf.errors import UserError
from rlhf.models import (
    is_decoder_classifier,
    load_reward_model,
    turn_off_dropout,
    use_fused_gelu,
)
from rlhf.seeding import weights_seeded


def value_model_from_policy(policy: PreTrainedModel, *, seed: int = 0,
                            disable_dropout: bool = True) -> PreTrainedModel:
    """A value model with the policy's backbone weights and a fresh scalar head per token.

    It is an AutoModelForSequenceClassification(num_labels=1) whose `score` head
    `rollout.response_values` applies at every position, so a value at position t depends only
    on tokens up to t. Dropout is off unless asked for: noisy values would be noise in the
    advantages (and differ between processes, whose RNGs differ).
    """
    config = copy.deepcopy(policy.config)
    config.num_labels = 1
    if config.pad_token_id is None:  # the pooled output is unused; we read every position
        config.pad_token_id = config.eos_token_id
    with weights_seeded(seed):
        value = AutoModelForSequenceClassification.from_config(config)
    value.base_model.load_state_dict(policy.base_model.state_dict())
    use_fused_gelu(value)
    if disable_dropout:
        turn_off_dropout(value)
    if not is_decoder_classifier(value):
        raise UserError(f"the policy ({type(policy).__name__}) has no decoder classifier "
                        "counterpart to serve as a value model")
    return value.float()


def value_model_from_reward(reward_path: str, *, disable_dropout: bool = True,
                            trust_remote_code: bool = False) -> PreTrainedModel:
    """A value model initialised from a decoder reward model (backbone and head)."""
    model, _ = load_reward_model(reward_path, disable_dropout=disable_dropout,
                                 trust_remote_code=trust_remote_code, trained=True)
    if not is_decoder_classifier(model):
        raise UserError(f"reward model '{reward_path}' is an encoder; a value model must be a "
                        "decoder: use model.value_init=policy")
    return model
