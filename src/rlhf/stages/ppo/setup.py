"""Setting up a PPO run: the four models (policy, frozen reference, value model, reward), the
checks that they fit the configured lengths, the score transform and the KL controller."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algo.kl import AdaptiveKLController, FixedKLController
from rlhf.algo.rewards import (
    apply_missing_eos_penalty,
    clip_scores,
    gain_bias_for_unit_normal,
    normalize_scores,
)
from rlhf.config import PPOConfig
from rlhf.engine.run import Run
from rlhf.errors import UserError
from rlhf.models import (
    check_fits_positions,
    frozen_copy,
    is_decoder_classifier,
    load_policy,
    value_model_from_policy,
    value_model_from_reward,
)
from rlhf.reward.scorers import RewardModelScorer, load_scorer, stored_score_stats
from rlhf.rl.generation import stop_token_ids


@dataclass
class PPOModels:
    """Policy, frozen reference, value model, reward scorer and the policy's tokenizer."""

    policy: torch.nn.Module
    reference: torch.nn.Module
    value: torch.nn.Module
    scorer: object
    tokenizer: object
    stop_ids: list[int]
    reward_stats: dict


def load_ppo_models(cfg: PPOConfig, device: torch.device) -> PPOModels:
    """Load the four models; the value model starts from the reward model or the policy."""
    m = cfg.model
    policy, tokenizer = load_policy(m.policy, disable_dropout=m.disable_dropout,
                                    trust_remote_code=m.trust_remote_code, seed=cfg.run.seed)
    scorer = load_scorer(
        m.reward, template=m.reward_template, separator=m.reward_separator,
        append_eos=m.reward_append_eos, max_length=m.reward_max_length,
        length_option="model.reward_max_length", batch_size=max(8, cfg.train.batch_size),
        device=device)
    value = _value_model(cfg, policy, tokenizer, scorer)
    return PPOModels(policy=policy, reference=frozen_copy(policy), value=value,
                     scorer=scorer, tokenizer=tokenizer,
                     stop_ids=stop_token_ids(tokenizer, cfg.generate.stop_token),
                     reward_stats=stored_score_stats(scorer))


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


@dataclass
class ScoreTransform:
    """gain * score + bias (Ziegler et al. 2019), then the missing-EOS penalty (so it is in
    normalised units), then clipping."""

    gain: float = 1.0
    bias: float = 0.0
    missing_eos_penalty: float | None = None
    clip: float | None = None

    def __call__(self, scores: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        scores = normalize_scores(scores, self.gain, self.bias)
        if self.missing_eos_penalty is not None:
            scores = apply_missing_eos_penalty(scores, ended, self.missing_eos_penalty)
        return clip_scores(scores, self.clip) if self.clip is not None else scores


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
    """Prompt plus response fit the positions of the policy and value model, so a run fails
    at load with the keys to change instead of an IndexError mid-run (the reward model's
    limit is checked by its scorer)."""
    total = cfg.data.max_prompt_tokens + cfg.generate.max_new_tokens
    for model in (models.policy, models.value):
        check_fits_positions(model, total, "data.max_prompt_tokens + generate.max_new_tokens",
                             cfg.model.policy)


def prepare_frozen_models(run: Run, models: PPOModels) -> None:
    """The reference and the reward model at the trained models' forward precision: with the
    policy equal to the reference (iteration 1), the KL is exactly 0 (`Run.prepare_frozen`)."""
    models.reference = run.prepare_frozen(models.reference)
    if isinstance(models.scorer, RewardModelScorer):
        models.scorer.model = run.prepare_frozen(models.scorer.model)


def kl_controller(cfg: PPOConfig):
    if cfg.ppo.adaptive_kl:
        return AdaptiveKLController(cfg.ppo.kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
    return FixedKLController(cfg.ppo.kl_coef)
