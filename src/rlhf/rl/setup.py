"""Setting up an RL run: the policy, its frozen reference and the reward scorer, the checks that
they fit the configured lengths, and the prompts (the ids the policy reads, the text the reward
model reads). PPO adds its value model on top (`stages/ppo/setup.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.adapters import AdaptersOff
from rlhf.config import GenerateConfig, PromptDataConfig, RLModelConfig
from rlhf.data.prompts import load_prompts
from rlhf.engine.run import Run
from rlhf.models import check_fits_positions, frozen_copy, load_policy, set_attention
from rlhf.precision import attention_for
from rlhf.reward.scorers import RewardModelScorer, load_scorer, stored_score_stats
from rlhf.rl.generation import stop_token_ids
from rlhf.trainable import ready_to_train


@dataclass
class PolicyModels:
    """The policy, its frozen reference (None when the run needs none), the reward scorer and
    the policy's tokenizer with its stop tokens."""

    policy: torch.nn.Module
    reference: torch.nn.Module | None
    scorer: object
    tokenizer: object
    stop_ids: list[int]
    reward_stats: dict
    """The reward model's stored score mean/std (empty for a reward function)."""


def load_policy_models(m: RLModelConfig, generate: GenerateConfig, *, seed: int, batch_size: int,
                       device: torch.device, quantize: str = "none",
                       attention: str | None = None) -> PolicyModels:
    """The policy as loaded, with `attention` (`precision.attention_for`; no reference yet:
    `make_trainable` adds it) and the scorer of `m.reward`."""
    policy, tokenizer = load_policy(m.policy, disable_dropout=m.disable_dropout,
                                    trust_remote_code=m.trust_remote_code, seed=seed,
                                    quantize=quantize)
    set_attention(policy, attention)
    scorer = load_run_scorer(m.reward, m, batch_size=batch_size, device=device)
    return PolicyModels(policy=policy, reference=None, scorer=scorer, tokenizer=tokenizer,
                        stop_ids=stop_token_ids(tokenizer, generate.stop_token),
                        reward_stats=stored_score_stats(scorer))


def run_attention(run: Run, m: RLModelConfig) -> str | None:
    """The attention implementation `m.attention` resolves to on this run's device and
    precision."""
    return attention_for(m.attention, run.device.type, run.accelerator.mixed_precision)


def load_run_scorer(spec: str, m: RLModelConfig, *, batch_size: int, device: torch.device):
    """The scorer of `spec` (model.reward, or a second reward such as eval.reward): a reward
    function, or a reward model reading text as the model.reward_* keys say, scoring batches
    of max(8, train.batch_size)."""
    return load_scorer(
        spec, template=m.reward_template, separator=m.reward_separator,
        append_eos=m.reward_append_eos, max_length=m.reward_max_length,
        length_option="model.reward_max_length", batch_size=max(8, batch_size), device=device)


def make_trainable(models: PolicyModels, *, lora, gradient_checkpointing: bool,
                   with_reference: bool, base_name: str) -> None:
    """The policy with LoRA adapters and gradient checkpointing as configured, and its
    reference: with adapters, the policy itself with them switched off (no second copy, and it
    cannot drift); else a frozen copy taken before training; None when the run needs none."""
    if with_reference and not lora.r:
        models.reference = frozen_copy(models.policy)
    models.policy = ready_to_train(models.policy, lora=lora, base_name=base_name,
                                   gradient_checkpointing=gradient_checkpointing)
    if with_reference and lora.r:
        models.reference = AdaptersOff(models.policy)


def check_lengths(data: PromptDataConfig, generate: GenerateConfig, model_name: str,
                  *models: torch.nn.Module) -> None:
    """Prompt plus response fit the positions of each model that reads the policy's tokens, so
    a run fails at load with the keys to change instead of an IndexError mid-run (the reward
    model's limit is checked by its scorer)."""
    total = data.max_prompt_tokens + generate.max_new_tokens
    for model in models:
        check_fits_positions(model, total, "data.max_prompt_tokens + generate.max_new_tokens",
                             model_name)


def prepare_frozen_models(run: Run, models: PolicyModels) -> None:
    """The reference and the reward model at the trained models' forward precision: with the
    policy equal to the reference (iteration 1), the KL is exactly 0 (`Run.prepare_frozen`)."""
    if models.reference is not None:
        models.reference = run.prepare_frozen(models.reference)
    prepare_frozen_scorer(run, models.scorer)


def prepare_frozen_scorer(run: Run, scorer) -> None:
    """A reward model's network at the run's forward precision (a function needs nothing)."""
    if isinstance(scorer, RewardModelScorer):
        scorer.model = run.prepare_frozen(scorer.model)


def load_run_prompts(data: PromptDataConfig, tokenizer, seed: int) -> tuple[list, list[str]]:
    """(token ids of each prompt, the prompt text the reward model reads for it)."""
    prompts, prompt_ids = load_prompts(
        data.path, name=data.name, split=data.split, template=data.template,
        columns=dict(data.columns), tokenizer=tokenizer, max_prompt_tokens=data.max_prompt_tokens,
        context_chars=data.context_chars, max_samples=data.max_samples, seed=seed)
    if data.reward_prompt == "instruction":
        return prompt_ids, [row.get("instruction") or row.get("prompt") or ""
                            for row in prompts.raw]
    return prompt_ids, list(prompts.prompts)
