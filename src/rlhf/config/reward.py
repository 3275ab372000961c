"""`rlhf train-reward`'s config: preference data, the reward model, its training, and the
top-level `RewardConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from rlhf.config.common import BatchTrainConfig, RunConfig, check


@dataclass
class PreferenceDataConfig:
    """Preference pairs (prompt, chosen, rejected) or best-of-N lists, and how to tokenise them."""

    path: str = MISSING
    """Hub dataset name, local file (.json/.jsonl/.jsonl.gz/.csv/.parquet), save_to_disk folder,
    or 'builtin:descriptiveness' (synthetic data made by the package)."""
    name: str | None = None
    """Hub dataset configuration name, if the dataset has several."""
    split: str = "train"
    """Split to train on."""
    test_split: str = "test"
    """Split to evaluate on. The default 'test' may be absent (then test_fraction is held out);
    any other name must exist. Set it to the value of split to hold out test_fraction."""
    test_fraction: float = 0.1
    """Fraction of the training rows held out (seeded) when there is no test split."""
    columns: dict[str, str] = field(default_factory=dict)
    """Maps canonical names to the file's column names, e.g. {chosen: good, rejected: bad}."""
    template: str = "pair"
    """How the reward model reads text: 'pair' = tokenizer(prompt, response) sentence-pair
    encoding; 'concat' = tokenizer(prompt + separator + response)."""
    separator: str = "\n"
    """Text between prompt and response for template 'concat'."""
    max_length: int = 512
    """Token limit per (prompt, response); longer inputs lose the start of the prompt."""
    max_samples: int | None = None
    """Use at most this many training (and test) examples; None for all."""
    group_by_length: bool = True
    """Batch examples of similar length together (shuffled batch order) to cut padding."""

    def __post_init__(self) -> None:
        check(0.0 < self.test_fraction < 1.0, "data.test_fraction", "must be in (0, 1)")
        check(self.template in ("pair", "concat"), "data.template",
              f"'{self.template}' is not one of pair, concat")
        check(self.max_length >= 8, "data.max_length", "must be >= 8")
        check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
              "must be >= 1 or null")


@dataclass
class RewardModelConfig:
    """The sequence-classification model trained as a reward model (one scalar output)."""

    name_or_path: str = MISSING
    """Hub model name, local save_pretrained folder, or 'builtin:tiny-roberta' /
    'builtin:tiny-gpt2' (tiny random-weight models with a tokenizer trained locally)."""
    tokenizer: str | None = None
    """Tokenizer name or folder when it differs from name_or_path."""
    disable_dropout: bool = True
    """Turn dropout off: reward noise from dropout hurts RLHF (Ziegler et al. 2019)."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository to run. Off unless you trust the repository."""


@dataclass
class RewardTrainConfig(BatchTrainConfig):
    """Optimisation of the reward model; batch_size counts pairs (or best-of-N lists)."""

    center_coef: float = 0.0
    """Weight of the reward-centering term coef * mean((r_chosen + r_rejected)^2)
    (Eisenstein et al. 2023); keeps scores near 0. 0 turns it off."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.center_coef >= 0, "train.center_coef", "must be >= 0")


@dataclass
class RewardConfig:
    """`rlhf train-reward`: fit a scalar reward model to preference data (Bradley-Terry)."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/reward"))
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    train: RewardTrainConfig = field(default_factory=RewardTrainConfig)
