"""`rlhf train-ppo`'s config: the four models, the PPO objective, and the top-level
`PPOConfig` with its batch split over processes (prompts, sampling and batching are the RL
sections of `config/rl.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhf.config.common import LoraConfig, RunConfig, check
from rlhf.config.rl import (
    GenerateConfig,
    PromptDataConfig,
    RLEvalConfig,
    RLModelConfig,
    RLTrainConfig,
)


@dataclass
class PPOModelConfig(RLModelConfig):
    """The four models of PPO: policy, frozen reference, value model and reward."""

    value_init: str = "auto"
    """Initialise the value model from 'policy', 'reward', or 'auto': the reward model when it
    is a decoder sharing the policy's tokenizer, else the policy."""
    value: str = "separate"
    """'separate': the value model is its own network (the default; Huang et al. 2024 found
    separate networks more stable). 'shared': one backbone with the LM head and a scalar value
    head (trl 0.11's value-head model): one forward pass serves policy and value and a backbone
    less is held, but the value loss also shapes the policy's features."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.value in ("separate", "shared"), "model.value",
              f"'{self.value}' is not one of separate, shared")
        check(self.value == "separate" or self.value_init != "reward", "model.value_init",
              "a shared value head starts on the policy's backbone; model.value_init=reward "
              "needs model.value=separate")
        check(self.value_init in ("auto", "policy", "reward"), "model.value_init",
              f"'{self.value_init}' is not one of auto, policy, reward")


@dataclass
class PPOLoraConfig(LoraConfig):
    """LoRA for PPO's trained models: the policy, and the value model unless value=false."""

    value: bool = True
    """Give the value model its own adapters on its own frozen backbone (its scalar head trains
    in full); false trains every value-model parameter."""


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
class PPOConfig:
    """`rlhf train-ppo`: fine-tune a policy against a reward with PPO and a KL penalty."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/ppo"))
    data: PromptDataConfig = field(default_factory=PromptDataConfig)
    model: PPOModelConfig = field(default_factory=PPOModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    ppo: PPOAlgoConfig = field(default_factory=PPOAlgoConfig)
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    lora: PPOLoraConfig = field(default_factory=PPOLoraConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    samples_every: int = 10
    """Write a table of (prompt, response, score) to samples.jsonl every N iterations."""

    def __post_init__(self) -> None:
        check(self.samples_every >= 0, "samples_every", "must be >= 0")
        check(self.lora.quantize == "none" or self.model.value == "shared", "lora.quantize",
              "a 4-bit policy cannot seed a separate value model (it copies the policy's "
              "full-precision weights); use model.value=shared or lora.quantize=none")
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
