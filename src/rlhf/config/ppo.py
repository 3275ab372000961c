"""`rlhf train-ppo`'s config: prompts, the four models, sampling, the PPO objective, batching,
and the top-level `PPOConfig` with its batch split over processes."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from rlhf.config.common import OptimizerConfig, RunConfig, check


@dataclass
class PromptDataConfig:
    """Prompts the policy answers during PPO."""

    path: str = MISSING
    """Hub dataset name, local file or folder (e.g. a folder of dolly CSV shards), save_to_disk
    folder, or 'builtin:descriptiveness' (the package's synthetic scene openings)."""
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
class PPOModelConfig:
    """The four models of PPO: policy, frozen reference, value model and reward."""

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
    value_init: str = "auto"
    """Initialise the value model from 'policy', 'reward', or 'auto': the reward model when it
    is a decoder sharing the policy's tokenizer, else the policy."""
    disable_dropout: bool = True
    """Turn dropout off in all four models (dropout noise makes the PPO ratio != 1 at the start
    and corrupts KL; Ziegler et al. 2019)."""
    trust_remote_code: bool = False
    """Allow model code from hub repositories to run. Off unless you trust them."""

    def __post_init__(self) -> None:
        check(self.reward_template in (None, "pair", "concat"), "model.reward_template",
              f"'{self.reward_template}' is not one of pair, concat, null")
        check(self.value_init in ("auto", "policy", "reward"), "model.value_init",
              f"'{self.value_init}' is not one of auto, policy, reward")
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
        check(self.temperature > 0, "generate.temperature", "must be > 0 for PPO sampling")


@dataclass
class PPOAlgoConfig:
    """The PPO objective and its schedule (defaults follow Ziegler et al. 2019 and the N+
    implementation details of Huang et al. 2024)."""

    total_episodes: int = 0
    """Responses to sample in total; 0: train.epochs passes over the prompts."""
    kl_coef: float = 0.05
    """Initial (or fixed) coefficient beta of the per-token KL penalty."""
    kl_estimator: str = "k1"
    """Per-token KL penalty in the reward: 'k1' (logp - logp_ref; recommended) or 'k3'
    ((r - 1) - log r with r = p_ref / p). As a reward the penalty acts through the policy
    gradient: k1's expected gradient is exactly grad KL(pi || ref), while k3's is
    grad KL(pi || ref) - grad KL(ref || pi), a few percent of it near the reference (Tang &
    Munos 2025), so k3 barely regularises; k3 is a good estimate of the KL's value, not a
    penalty."""
    adaptive_kl: bool = False
    """Adapt beta towards kl_target (Ziegler et al. 2019) instead of keeping it fixed."""
    kl_target: float = 6.0
    """Target KL per sequence (nats) for the adaptive controller."""
    kl_horizon: int = 10000
    """Horizon (episodes) of the adaptive controller."""
    gamma: float = 1.0
    """Discount over response tokens."""
    lam: float = 0.95
    """GAE lambda."""
    ppo_epochs: int = 4
    """Optimisation passes over each batch of experience."""
    num_minibatches: int = 1
    """Minibatches (optimizer steps) per PPO epoch."""
    clip_range: float = 0.2
    """Policy ratio clip epsilon."""
    value_clip_range: float = 0.2
    """Value clip epsilon around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    whiten_rewards: bool = False
    """Scale per-token rewards to unit variance (no mean shift) before GAE."""
    missing_eos_penalty: float | None = None
    """Added to the score of a response that never emits a stop token (e.g. -1.0)."""
    score_normalization: str = "none"
    """'none'; 'reward_model': use the mean/std stored by train-reward; 'reference': gain and
    bias measured on reference-policy samples before training, so scores have mean 0, std 1."""
    normalization_samples: int = 64
    """Reference samples used to measure the gain and bias for 'reference' normalisation."""
    score_clip: float | None = None
    """Clip (normalised) scores to [-c, c]; None: no clipping."""
    target_approx_kl: float | None = None
    """Stop this iteration's PPO epochs early once approx KL (all-reduced over processes)
    exceeds this; None: never."""
    ratio_threshold: float | None = None
    """Skip a minibatch's update (no optimizer step; counted in ppo/ratio_skipped_minibatches)
    when its mean ratio exp(logp - logp_old) over real tokens exceeds this, as trl 0.11's
    ratio_threshold=10 did against loss spikes; None: never."""

    def __post_init__(self) -> None:
        check(self.total_episodes >= 0, "ppo.total_episodes", "must be >= 0")
        check(self.kl_coef >= 0, "ppo.kl_coef", "must be >= 0")
        check(self.kl_estimator in ("k1", "k3"), "ppo.kl_estimator",
              f"'{self.kl_estimator}' is not one of k1, k3")
        check(self.kl_target > 0, "ppo.kl_target", "must be > 0")
        check(self.kl_horizon > 0, "ppo.kl_horizon", "must be > 0")
        check(0 <= self.gamma <= 1, "ppo.gamma", "must be in [0, 1]")
        check(0 <= self.lam <= 1, "ppo.lam", "must be in [0, 1]")
        check(self.ppo_epochs >= 1, "ppo.ppo_epochs", "must be >= 1")
        check(self.num_minibatches >= 1, "ppo.num_minibatches", "must be >= 1")
        check(self.clip_range > 0, "ppo.clip_range", "must be > 0")
        check(self.value_clip_range > 0, "ppo.value_clip_range", "must be > 0")
        check(self.vf_coef >= 0, "ppo.vf_coef", "must be >= 0")
        check(self.score_normalization in ("none", "reward_model", "reference"),
              "ppo.score_normalization",
              f"'{self.score_normalization}' is not one of none, reward_model, reference")
        check(self.normalization_samples >= 2, "ppo.normalization_samples", "must be >= 2")
        check(self.score_clip is None or self.score_clip > 0, "ppo.score_clip", "must be > 0")
        check(self.target_approx_kl is None or self.target_approx_kl > 0,
              "ppo.target_approx_kl", "must be > 0")
        check(self.ratio_threshold is None or self.ratio_threshold > 1,
              "ppo.ratio_threshold", "must be > 1 (the mean ratio starts at 1)")


@dataclass
class PPOTrainConfig(OptimizerConfig):
    """Batching and optimisation of the policy and value model."""

    epochs: int = 1
    """Passes over the prompt set (used when ppo.total_episodes is 0)."""
    batch_size: int = 64
    """Prompts (episodes) per rollout, over all processes."""
    micro_batch_size: int = 0
    """Sequences per forward/backward pass on one process; 0: a whole minibatch."""
    rollout_batch_size: int = 0
    """Sequences per generation/scoring pass on one process; 0: all of this process's prompts."""
    learning_rate: float = 1e-5
    """Peak AdamW learning rate of policy and value model."""

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "train.epochs", "must be >= 1")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0")
        check(self.rollout_batch_size >= 0, "train.rollout_batch_size", "must be >= 0")
        super().__post_init__()


@dataclass
class PPOConfig:
    """`rlhf train-ppo`: fine-tune a policy against a reward with PPO and a KL penalty."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/ppo"))
    data: PromptDataConfig = field(default_factory=PromptDataConfig)
    model: PPOModelConfig = field(default_factory=PPOModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    ppo: PPOAlgoConfig = field(default_factory=PPOAlgoConfig)
    train: PPOTrainConfig = field(default_factory=PPOTrainConfig)
    samples_every: int = 10
    """Write a table of (prompt, response, score) to samples.jsonl every N iterations."""

    def __post_init__(self) -> None:
        check(self.samples_every >= 0, "samples_every", "must be >= 0")
        # The split must work on one process at least; more processes are checked at start.
        self.batch_split(1)

    def batch_split(self, num_processes: int) -> tuple[int, int, int]:
        """(sequences per process, per minibatch, per micro-batch); checks that they divide."""
        per_process, remainder = divmod(self.train.batch_size, num_processes)
        check(remainder == 0, "train.batch_size",
              f"{self.train.batch_size} cannot be split evenly over {num_processes} processes")
        per_minibatch, remainder = divmod(per_process, self.ppo.num_minibatches)
        check(remainder == 0 and per_minibatch >= 1, "ppo.num_minibatches",
              f"{self.ppo.num_minibatches} does not divide the {per_process} episodes each "
              f"process gets per rollout (train.batch_size {self.train.batch_size} / "
              f"{num_processes} processes); use a divisor of {per_process}")
        micro = self.train.micro_batch_size or per_minibatch
        check(per_minibatch % micro == 0, "train.micro_batch_size",
              f"{micro} does not divide the minibatch of {per_minibatch} sequences; use a "
              f"divisor of {per_minibatch}")
        return per_process, per_minibatch, micro
