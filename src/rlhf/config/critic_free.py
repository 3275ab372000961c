"""`rlhf train-critic-free`'s config: RL without a value model. Several responses per prompt
(`generate.num_samples`), an advantage estimator that uses the group (or the batch) as its
baseline, a clipped policy loss aggregated one of three ways, and the KL to the reference as a
reward, a loss term or not at all."""

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

GROUP_ESTIMATORS = ("rloo", "grpo", "dr_grpo")
"""Estimators whose baseline is the other responses to the same prompt."""
ESTIMATORS = (*GROUP_ESTIMATORS, "reinforce_pp", "reinforce")
KL_ESTIMATORS_BY_PENALTY = {"reward": ("k1", "k3"), "loss": ("k2", "k3"), "none": ("k1", "k2", "k3")}


@dataclass
class GroupGenerateConfig(GenerateConfig):
    """How responses are sampled: several per prompt."""

    num_samples: int = 4
    """Responses per prompt (the group, k). Each is seeded by (seed, iteration, prompt, sample
    index), so results do not depend on batch layout or process count. rloo, grpo and dr_grpo
    need at least 2; reinforce_pp and reinforce work with 1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.num_samples >= 1, "generate.num_samples", "must be >= 1")


@dataclass
class CriticFreeAlgoConfig:
    """The estimator, the policy loss, the KL to the reference and the update schedule."""

    advantage: str = "grpo"
    """'rloo': each response's score minus the mean of the other k - 1 of its prompt
    (Ahmadian et al. 2024); 'grpo': (score - group mean) / (group std + 1e-4) (Shao et al.
    2024); 'dr_grpo': score - group mean, no std division (Liu et al. 2025); 'reinforce_pp':
    per-token returns normalised over the whole batch, no groups needed (Hu 2025);
    'reinforce': score minus a moving-average baseline (Williams 1992)."""
    total_prompts: int = 0
    """Prompts to train on in total, each answered num_samples times; 0: train.epochs passes."""
    loss_aggregation: str = "sequence_mean"
    """How per-token losses become one number: 'sequence_mean' (each response's token mean,
    then the mean over responses; GRPO's original), 'token_mean' (every token of the batch
    weighs the same; DAPO) or 'token_sum' (each response's token sum divided by
    token_sum_divisor, then the mean over responses; Dr. GRPO: no length bias)."""
    token_sum_divisor: int | None = None
    """The constant of 'token_sum'; None: generate.max_new_tokens."""
    clip_low: float = 0.2
    """The ratio's lower clip: r >= 1 - clip_low for responses with negative advantage."""
    clip_high: float = 0.2
    """The ratio's upper clip: r <= 1 + clip_high for positive advantage. Larger than clip_low
    lets rare tokens gain probability faster (DAPO's clip-higher, e.g. 0.28)."""
    ratio: str = "token"
    """'token': each token's ratio p / p_old is clipped (PPO); 'sequence': one ratio per
    response, the geometric mean of its tokens' ratios (GSPO, Zheng et al. 2025; clip ranges
    of about 3e-4 to 4e-4 there)."""
    kl_penalty: str = "loss"
    """How the KL to the frozen reference enters: 'reward' (-kl_coef * k1 added to each
    token's reward, as PPO), 'loss' (kl_coef * k2 or k3 per token added to the loss, as GRPO)
    or 'none' (no reference model is loaded at all: less memory, no KL metrics)."""
    kl_estimator: str = "k2"
    """With kl_penalty=loss: 'k2' (0.5 (log p/p_ref)^2; its expected gradient is exactly that
    of KL(pi || ref); recommended) or 'k3' (GRPO's choice; its gradient is that of
    KL(ref || pi)). With kl_penalty=reward: 'k1' (recommended) or 'k3' (see `rlhf config
    ppo`, ppo.kl_estimator). k1 as a loss has zero expected gradient and is refused."""
    kl_coef: float = 0.04
    """Weight beta of the KL term (GRPO used 0.04 as a loss term)."""
    dynamic_sampling: bool = False
    """Leave out groups whose k scores are all equal: they carry no signal, and in a token mean
    they dilute the rest (DAPO, Yu et al. 2025). The batch is not refilled: the update trains
    on fewer rows, and group/dropped_groups counts them."""
    baseline_decay: float = 0.9
    """'reinforce' only: baseline <- decay * baseline + (1 - decay) * the batch's mean score."""
    update_epochs: int = 1
    """Optimisation passes over each batch of responses (GRPO's mu; 1 is on-policy)."""
    num_minibatches: int = 1
    """Optimizer steps per pass, each on an equal share of the batch's responses."""
    missing_eos_penalty: float | None = None
    """Added to the score of a response that never emits a stop token (e.g. -1.0)."""
    score_clip: float | None = None
    """Clip scores to [-c, c] before the estimator; None: no clipping."""

    def __post_init__(self) -> None:
        check(self.advantage in ESTIMATORS, "algo.advantage",
              f"'{self.advantage}' is not one of {', '.join(ESTIMATORS)}")
        check(self.total_prompts >= 0, "algo.total_prompts", "must be >= 0")
        check(self.loss_aggregation in ("sequence_mean", "token_mean", "token_sum"),
              "algo.loss_aggregation",
              f"'{self.loss_aggregation}' is not one of sequence_mean, token_mean, token_sum")
        check(self.token_sum_divisor is None or self.token_sum_divisor >= 1,
              "algo.token_sum_divisor", "must be >= 1 or null")
        check(self.clip_low > 0, "algo.clip_low", "must be > 0")
        check(self.clip_high > 0, "algo.clip_high", "must be > 0")
        check(self.ratio in ("token", "sequence"), "algo.ratio",
              f"'{self.ratio}' is not one of token, sequence")
        check(self.kl_penalty in KL_ESTIMATORS_BY_PENALTY, "algo.kl_penalty",
              f"'{self.kl_penalty}' is not one of reward, loss, none")
        allowed = KL_ESTIMATORS_BY_PENALTY[self.kl_penalty]
        check(self.kl_estimator in allowed, "algo.kl_estimator",
              f"'{self.kl_estimator}' does not work with kl_penalty={self.kl_penalty}; use "
              f"{' or '.join(allowed)} (k1 as a loss term has zero expected gradient; k2 is a "
              "loss term, not a reward)")
        check(self.kl_coef >= 0, "algo.kl_coef", "must be >= 0")
        check(0 <= self.baseline_decay < 1, "algo.baseline_decay", "must be in [0, 1)")
        check(self.update_epochs >= 1, "algo.update_epochs", "must be >= 1")
        check(self.num_minibatches >= 1, "algo.num_minibatches", "must be >= 1")
        check(self.score_clip is None or self.score_clip > 0, "algo.score_clip", "must be > 0")


@dataclass
class CriticFreeConfig:
    """`rlhf train-critic-free`: RLOO, GRPO (Dr. GRPO, DAPO, GSPO options), REINFORCE++ or
    REINFORCE: policy-gradient fine-tuning against a reward without a value model."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/critic_free"))
    data: PromptDataConfig = field(default_factory=PromptDataConfig)
    model: RLModelConfig = field(default_factory=RLModelConfig)
    generate: GroupGenerateConfig = field(default_factory=GroupGenerateConfig)
    algo: CriticFreeAlgoConfig = field(default_factory=CriticFreeAlgoConfig)
    train: RLTrainConfig = field(default_factory=RLTrainConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    samples_every: int = 10
    """Write a table of (prompt, response, score) to samples.jsonl every N iterations."""

    def __post_init__(self) -> None:
        check(self.samples_every >= 0, "samples_every", "must be >= 0")
        k, estimator = self.generate.num_samples, self.algo.advantage
        check(k >= 2 or estimator not in GROUP_ESTIMATORS, "generate.num_samples",
              f"algo.advantage={estimator} compares the responses to one prompt, so it needs "
              f"at least 2 per prompt (got {k}); set generate.num_samples >= 2 or use "
              "reinforce_pp or reinforce")
        check(k >= 2 or not self.algo.dynamic_sampling, "generate.num_samples",
              "algo.dynamic_sampling drops groups of equal scores, which needs groups: set "
              "generate.num_samples >= 2")
        self.batch_split(1)

    def batch_split(self, num_processes: int) -> tuple[int, int, int]:
        """(responses per process, per minibatch, per micro-batch); checks that they divide.
        Prompts are split over processes, so a prompt's group stays on one process."""
        prompts, remainder = divmod(self.train.batch_size, num_processes)
        check(remainder == 0, "train.batch_size",
              f"{self.train.batch_size} prompts cannot be split evenly over {num_processes} "
              "processes")
        per_process = prompts * self.generate.num_samples
        per_minibatch, remainder = divmod(per_process, self.algo.num_minibatches)
        check(remainder == 0 and per_minibatch >= 1, "algo.num_minibatches",
              f"{self.algo.num_minibatches} does not divide the {per_process} responses each "
              f"process gets per rollout ({prompts} prompts x generate.num_samples "
              f"{self.generate.num_samples}); use a divisor of {per_process}")
        micro = self.train.micro_batch_size or per_minibatch
        check(per_minibatch % micro == 0, "train.micro_batch_size",
              f"{micro} does not divide the minibatch of {per_minibatch} responses; use a "
              f"divisor of {per_minibatch}")
        return per_process, per_minibatch, micro
