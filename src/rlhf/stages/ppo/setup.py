"""Setting up a PPO run: the value model beside the policy, reference and reward of every RL run
(`rl.setup`), the score transform and the KL controller."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algo.kl import AdaptiveKLController, FixedKLController
from rlhf.algo.rewards import ScoreTransform, gain_bias_for_unit_normal
from rlhf.config import PPOConfig
from rlhf.errors import UserError
from rlhf.models import is_decoder_classifier, set_attention
from rlhf.rl.schedule import IterationSchedule
from rlhf.rl.setup import PolicyModels, load_policy_models, make_trainable, prepare_frozen_models
from rlhf.rl.setup import check_lengths as check_rl_lengths
from rlhf.trainable import ready_to_train
from rlhf.value_models import (
    PolicyWithValueHead,
    value_model_from_policy,
    value_model_from_reward,
)

__all__ = ["PPOModels", "ScoreTransform", "check_lengths", "iteration_schedule", "kl_controller",
           "load_ppo_models", "prepare_frozen_models", "score_transform"]


@dataclass
class PPOModels(PolicyModels):
    """Policy, frozen reference, reward scorer and tokenizer, and PPO's value model (the policy
    itself, a `PolicyWithValueHead`, when model.value=shared)."""

    value: torch.nn.Module


def load_ppo_models(cfg: PPOConfig, device: torch.device,
                    attention: str | None = None) -> PPOModels:
    """Load the four models; the value model starts from the reward model or the policy (as
    loaded, before adapters), and each trained model gets adapters and checkpointing as
    configured. Policy, reference and value model compute attention with `attention`."""
    base = load_policy_models(cfg.model, cfg.generate, seed=cfg.run.seed,
                              batch_size=cfg.train.batch_size, device=device,
                              quantize=cfg.lora.quantize, attention=attention)
    shared = cfg.model.value == "shared"
    value = None if shared else set_attention(
        _value_model(cfg, base.policy, base.tokenizer, base.scorer), attention)
    make_trainable(base, lora=cfg.lora, gradient_checkpointing=cfg.train.gradient_checkpointing,
                   with_reference=True, base_name=cfg.model.policy)
    if shared:  # the value head sits on the policy's backbone: `value` is the policy
        base.policy = PolicyWithValueHead(base.policy, seed=cfg.run.seed)
        return PPOModels(**vars(base), value=base.policy)
    value = ready_to_train(value, lora=cfg.lora if cfg.lora.value else None, classifier=True,
                           gradient_checkpointing=cfg.train.gradient_checkpointing)
    return PPOModels(**vars(base), value=value)


def _value_model(cfg: PPOConfig, policy, tokenizer, scorer) -> torch.nn.Module:
    """From the reward model when it is a decoder over the policy's vocabulary, else the policy.

    A value head must read each prefix of the policy's own tokens, so an encoder reward model
    or one with another tokenizer cannot seed it (N+ implementation details, Huang et al. 2024).
    """
    reward_model = getattr(scorer, "model", None)
    compatible = (reward_model is not None and is_decoder_classifier(reward_model)
                  and scorer.tokenizer.get_vocab() == tokenizer.get_vocab())
    choice = cfg.model.value_init
    if choice == "reward" and not compatible:
        raise UserError("model.value_init=reward needs a decoder reward model with the policy's "
                        "tokenizer; use model.value_init=policy")
    if choice == "reward" or (choice == "auto" and compatible):
        value = value_model_from_reward(cfg.model.reward, disable_dropout=cfg.model.disable_dropout)
    else:
        value = value_model_from_policy(policy, seed=cfg.run.seed,
                                        disable_dropout=cfg.model.disable_dropout)
    value.config.pad_token_id = tokenizer.pad_token_id
    return value


def score_transform(cfg: PPOConfig, reward_stats: dict, reference_scores) -> ScoreTransform:
    """The configured normalisation: none, the reward model's stored stats, or measured."""
    gain, bias = 1.0, 0.0
    if cfg.ppo.score_normalization == "reward_model":
        mean, std = reward_stats.get("mean"), reward_stats.get("std")
        if mean is None or not std:
            raise UserError("ppo.score_normalization=reward_model needs a reward model saved by "
                            "train-reward (rlhf_score_mean/std in its config.json); use "
                            "'reference' instead")
        gain, bias = 1.0 / std, -mean / std
    elif cfg.ppo.score_normalization == "reference":
        gain, bias = gain_bias_for_unit_normal(reference_scores)
    return ScoreTransform(gain=gain, bias=bias, missing_eos_penalty=cfg.ppo.missing_eos_penalty,
                          clip=cfg.ppo.score_clip)


def check_lengths(cfg: PPOConfig, models: PPOModels) -> None:
    """Prompt plus response fit the policy's and the value model's positions."""
    check_rl_lengths(cfg.data, cfg.generate, cfg.model.policy, models.policy, models.value)


def kl_controller(cfg: PPOConfig):
    if cfg.ppo.adaptive_kl:
        return AdaptiveKLController(cfg.ppo.kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
    return FixedKLController(cfg.ppo.kl_coef)


def iteration_schedule(n_prompts: int, cfg: PPOConfig) -> IterationSchedule:
    """Prompts and response length limits of every iteration (ppo.total_episodes episodes)."""
    return IterationSchedule(
        n_prompts, batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
        total_prompts=cfg.ppo.total_episodes, seed=cfg.run.seed,
        min_new_tokens=cfg.generate.min_new_tokens, max_new_tokens=cfg.generate.max_new_tokens)
