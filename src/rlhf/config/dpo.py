"""`rlhf train-dpo`'s config: preference pairs read as a causal LM reads them, the policy and its
reference, the offline preference objective, and the top-level `DPOConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from rlhf.config.common import (
    BatchTrainConfig,
    ExampleDataConfig,
    LoraConfig,
    RunConfig,
    check,
)

LOSSES = ("dpo", "robust", "ipo", "simpo")


@dataclass
class PairDataConfig(ExampleDataConfig):
    """Preference pairs (prompt, chosen, rejected), or best-of-N lists expanded to pairs, in any
    layout `train-reward` reads; each response is tokenised after its prompt as the policy
    reads it (chat template for conversational rows), with the loss on response tokens."""

    path: str = MISSING
    """Hub dataset name, local file (.json/.jsonl/.jsonl.gz/.csv/.parquet), save_to_disk folder,
    or 'builtin:descriptiveness' (synthetic data made by the package)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Maps canonical names to the file's column names, e.g. {chosen: good, rejected: bad}."""
    max_length: int = 512
    """Token limit per prompt + response + EOS; longer ones lose the start of the prompt, and
    only a response that alone is too long loses its end."""


@dataclass
class DPOModelConfig:
    """The policy to optimise (usually an SFT model) and its fixed reference."""

    name_or_path: str = MISSING
    """Causal LM: hub name, local folder (e.g. RUN/model of train-sft) or 'builtin:tiny-gpt2'."""
    reference: str | None = None
    """The reference policy; None: the policy as loaded (with LoRA, the policy with its adapters
    switched off, so no second copy is held)."""
    disable_dropout: bool = True
    """Turn dropout off, so policy and reference log-probs are deterministic."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository to run. Off unless you trust the repository."""


@dataclass
class DPOAlgoConfig:
    """The offline preference objective."""

    loss: str = "dpo"
    """'dpo' (Rafailov et al. 2023; with label_smoothing: conservative DPO, Mitchell 2023),
    'robust' (Chowdhury et al. 2024: unbiased under label noise label_smoothing), 'ipo' (Azar
    et al. 2023) or 'simpo' (Meng et al. 2024: reference-free, length-normalised, margin
    simpo_gamma)."""
    beta: float = 0.1
    """Inverse temperature of the implicit reward beta * log(pi / pi_ref) (SimPO: of the mean
    token log-prob; its paper uses 2 to 2.5)."""
    label_smoothing: float = 0.0
    """Assumed probability that a pair's label is flipped ('dpo' and 'robust'); 0: none."""
    simpo_gamma: float = 0.5
    """SimPO's target reward margin gamma."""
    reference_free: bool = False
    """DPO/IPO against a uniform reference (reference log-probs 0): no reference model."""
    reference_logprobs: str = "precompute"
    """'precompute': the reference's log-probs of every pair once before training, stored in
    the run directory (resume reads them back); 'on_the_fly': a reference forward in every
    step (no pass before training, more compute per step)."""

    def __post_init__(self) -> None:
        check(self.loss in LOSSES, "dpo.loss", f"'{self.loss}' is not one of {', '.join(LOSSES)}")
        check(self.beta > 0, "dpo.beta", "must be > 0")
        check(0.0 <= self.label_smoothing < 0.5, "dpo.label_smoothing", "must be in [0, 0.5)")
        check(self.label_smoothing == 0 or self.loss in ("dpo", "robust"), "dpo.label_smoothing",
              f"applies to dpo and robust only, not {self.loss}")
        check(self.loss != "robust" or self.label_smoothing > 0, "dpo.label_smoothing",
              "the robust loss needs the flip probability (e.g. 0.1); with 0 it is plain dpo")
        check(self.reference_logprobs in ("precompute", "on_the_fly"), "dpo.reference_logprobs",
              f"'{self.reference_logprobs}' is not one of precompute, on_the_fly")

    @property
    def needs_reference(self) -> bool:
        return self.loss != "simpo" and not self.reference_free


@dataclass
class DPOTrainConfig(BatchTrainConfig):
    """Optimisation of the policy; batch_size counts preference pairs."""

    learning_rate: float = 1e-6
    """Peak AdamW learning rate (DPO moves far per step: its paper uses 1e-6 at batch 64)."""


@dataclass
class DPOConfig:
    """`rlhf train-dpo`: optimise a policy directly on preference pairs against a fixed
    reference (DPO and its variants), with no reward model and no sampling."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/dpo"))
    data: PairDataConfig = field(default_factory=PairDataConfig)
    model: DPOModelConfig = field(default_factory=DPOModelConfig)
    dpo: DPOAlgoConfig = field(default_factory=DPOAlgoConfig)
    train: DPOTrainConfig = field(default_factory=DPOTrainConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
