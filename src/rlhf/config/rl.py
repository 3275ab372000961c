"""Sections every RL stage shares (PPO and the critic-free methods): the prompts, the policy
with its reference and reward, how responses are sampled, and batching."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from rlhf.config.common import OptimizerConfig, check


@dataclass
class PromptDataConfig:
    """Prompts the policy answers during RL training."""

    path: str = MISSING
    """Hub dataset name, local file or folder (e.g. a folder of dolly CSV shards), save_to_disk
    folder, 'builtin:descriptiveness' (the package's synthetic scene openings) or
    'builtin:arithmetic' (small sums, for rlhf.reward.rules:arithmetic_answer)."""
    name: str | None = None
    """Hub dataset configuration name."""
    split: str = "train"
    """Split to draw prompts from."""
    template: str = "dolly"
    """'dolly' (### Instruction / optional ### Context / ### Response), 'prompt' (a plain
    prompt column used verbatim) or 'chat' (the tokenizer's chat template)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Maps canonical names (instruction, context, prompt, messages) to the file's columns."""
    context_chars: int = 500
    """Dolly context is cut to this many characters before tokenising (as the reference
    dolly/GPT-2 workload did with trl 0.11.4)."""
    max_prompt_tokens: int = 64
    """Longer prompts are shortened inside the context/instruction, never losing the
    '### Response:' marker; plain prompts lose their start."""
    max_samples: int | None = None
    """Use at most this many prompts; None for all."""
    reward_prompt: str = "template"
    """What the reward model reads as the prompt: 'template' (the rendered prompt the policy
    saw) or 'instruction' (the raw instruction text, for reward models trained on it)."""

    def __post_init__(self) -> None:
        check(self.template in ("dolly", "prompt", "chat"), "data.template",
              f"'{self.template}' is not one of dolly, prompt, chat")
        check(self.context_chars >= 0, "data.context_chars", "must be >= 0")
        check(self.max_prompt_tokens >= 8, "data.max_prompt_tokens", "must be >= 8")
        check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
              "must be >= 1 or null")
        check(self.reward_prompt in ("template", "instruction"), "data.reward_prompt",
              f"'{self.reward_prompt}' is not one of template, instruction")


@dataclass
class RLModelConfig:
    """The policy, its frozen reference and the reward of an RL stage."""

    policy: str = MISSING
    """Causal LM to fine-tune: hub name, local folder or 'builtin:tiny-gpt2'. The reference
    is a frozen copy of it."""
    reward: str = MISSING
    """Reward: a sequence-classification model (hub name or folder, e.g. one saved by
    train-reward) with its own tokenizer, or a Python function 'module:function' taking
    (prompts, responses) and returning one float per response."""
    reward_template: str | None = None
    """How the reward model reads text: 'pair' (tokenizer(prompt, response)) or 'concat'.
    None: what train-reward stored with the model; for other models 'concat' for a decoder
    (TRL's RewardTrainer reads prompt + response as one string) and 'pair' for an encoder."""
    reward_separator: str | None = None
    """Separator for reward_template 'concat'; None: the stored one; for other models nothing
    for a decoder (TRL's convention), else a newline."""
    reward_append_eos: bool | None = None
    """Whether the reward model reads an EOS after the response. None: models saved by
    train-reward are read as they were trained (they record it in config.json); any other
    reward model gets TRL RewardTrainer's convention: EOS appended when the tokenizer does not
    already end the input with it, except when the EOS is the model's pad token (TRL's model
    then read the token before it). Models trained with TRL <= 0.23 saw no EOS: set false.
    true/false force it."""
    reward_max_length: int | None = None
    """Token limit of the reward model's input (the prompt is cut from the left); at most the
    model's positions. None: the model's own limit, at most 512."""
    disable_dropout: bool = True
    """Turn dropout off in every model (dropout noise makes the policy ratio != 1 at the start
    and corrupts KL; Ziegler et al. 2019)."""
    trust_remote_code: bool = False
    """Allow model code from hub repositories to run. Off unless you trust them."""
    attention: str = "auto"
    """Attention kernel of the policy, its reference and value model: any transformers
    `attn_implementation` (sdpa, eager, flash_attention_2, ...), or auto: eager on a CPU under
    bf16 (torch's SDPA has no fast bf16 backward there: a GPT-2-small PPO epoch ran 1.3x
    faster eager), transformers' default (SDPA) elsewhere."""

    def __post_init__(self) -> None:
        check(self.reward_template in (None, "pair", "concat"), "model.reward_template",
              f"'{self.reward_template}' is not one of pair, concat, null")
        check(self.reward_max_length is None or self.reward_max_length >= 8,
              "model.reward_max_length", "must be >= 8 or null")


@dataclass
class GenerateConfig:
    """How responses are sampled during rollouts."""

    max_new_tokens: int = 16
    """Longest response in tokens."""
    min_new_tokens: int | None = None
    """When set, each response draws its own length limit uniformly from [min, max], keyed by
    (seed, iteration, prompt) like trl 0.11.4's per-sample LengthSampler; a row still stops early
    at a stop token. None: every response may use max_new_tokens."""
    temperature: float = 0.7
    """Sampling temperature; log-probs everywhere use logits / temperature."""
    stop_token: str | None = None
    """Extra text token that ends a response besides EOS (e.g. a newline); None: EOS only."""

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1, "generate.max_new_tokens", "must be >= 1")
        check(self.min_new_tokens is None or 1 <= self.min_new_tokens <= self.max_new_tokens,
              "generate.min_new_tokens", "must be between 1 and generate.max_new_tokens")
        check(self.temperature > 0, "generate.temperature", "must be > 0 for RL sampling")


@dataclass
class RLEvalConfig:
    """Held-out evaluation during an RL run: the same prompts answered by the policy before
    training and every `every` iterations, scored by the training reward and optionally by a
    second one, with the KL to the reference: is the true quality rising, and at what cost?"""

    every: int = 0
    """Iterations between held-out evaluations (plus one before training); 0: none."""
    prompts: int = 64
    """Held-out prompts: the first N of `split` (the same ones at every evaluation)."""
    split: str = "test"
    """The split of data.path the held-out prompts come from."""
    reward: str | None = None
    """A second reward scored on the same responses (logged as eval/reward): a reward-model
    folder or hub name, or a reward function `module:function` such as
    `rlhf.reward.gold:gold_descriptiveness` (the synthetic task's gold reward); None: only
    the training reward (eval/score)."""
    alarm_patience: int = 3
    """Over-optimisation alarm: warn when eval/reward has stayed below its best for this many
    evaluations while eval/score (the training reward on the same responses) rose above its
    value there: the policy is gaming the training reward (Gao et al. 2022)."""

    def __post_init__(self) -> None:
        check(self.every >= 0, "eval.every", "must be >= 0")
        check(self.prompts >= 1, "eval.prompts", "must be >= 1")
        check(self.alarm_patience >= 1, "eval.alarm_patience", "must be >= 1")


@dataclass
class RLTrainConfig(OptimizerConfig):
    """Batching and optimisation of the trained models (the policy, and PPO's value model)."""

    epochs: int = 1
    """Passes over the prompt set (used when the total number of prompts is not set)."""
    batch_size: int = 64
    """Prompts per rollout, over all processes (each answered generate.num_samples times where
    the stage samples several responses per prompt)."""
    micro_batch_size: int = 0
    """Sequences per forward/backward pass on one process; 0: a whole minibatch."""
    rollout_batch_size: int = 0
    """Sequences per generation/scoring pass on one process; 0: all of this process's prompts."""
    learning_rate: float = 1e-5
    """Peak AdamW learning rate of the trained models."""

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "train.epochs", "must be >= 1")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0")
        check(self.rollout_batch_size >= 0, "train.rollout_batch_size", "must be >= 0")
        super().__post_init__()
