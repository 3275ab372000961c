"""The value model of PPO: a scalar head on a decoder that reads every position, either a network
of its own (started from the policy's backbone or from a decoder reward model) or a head on the
policy's own backbone (`PolicyWithValueHead`, model.value=shared)."""

from __future__ import annotations

import copy

from torch import nn
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


class PolicyWithValueHead(nn.Module):
    """Policy and value on one backbone (model.value=shared), as trl 0.11's
    AutoModelForCausalLMWithValueHead: the causal LM `lm` and a scalar head `score` on its final
    hidden states.

    Calling it calls the LM (generation, log-probs); the head has the name a decoder
    classifier's has, so `models.token_scores` and `rl.forward.response_values` read values from
    it as from a separate value model, and `rl.forward.response_logprobs_and_values` reads both
    from one forward pass. The trade-off (docs/design.md): a backbone less in memory and one
    forward pass instead of two per update, but the value loss also moves the policy's
    features (Huang et al. 2024 found separate networks more stable; separate is the default).
    """

    def __init__(self, lm: nn.Module, *, seed: int = 0):
        super().__init__()
        self.lm = lm
        with weights_seeded(seed):  # like a classifier head: N(0, initializer_range), bias 0
            self.score = nn.Linear(lm.config.hidden_size, 1)
            nn.init.normal_(self.score.weight, std=getattr(lm.config, "initializer_range", 0.02))
            nn.init.zeros_(self.score.bias)

    @property
    def config(self):
        return self.lm.config

    @property
    def _no_split_modules(self):
        """The LM's transformer blocks: FSDP's transformer-based auto wrap shards by them."""
        return getattr(self.lm, "_no_split_modules", None)

    def tie_weights(self) -> None:
        """Tie the LM's embeddings again: accelerate's FSDP2 loading (cpu_ram_efficient_loading)
        moves the model to the meta device, which unties them, and calls this to undo it;
        without it GPT-2's input and output embeddings would train as two matrices."""
        if hasattr(self.lm, "tie_weights"):
            self.lm.tie_weights()

    def forward(self, **inputs):
        return self.lm(**inputs)
