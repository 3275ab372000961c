"""`rlhf train-reward`'s config: preference data, the reward model, its training, and the
top-level `RewardConfig`."""

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


@dataclass
class PreferenceDataConfig(ExampleDataConfig):
    """Preference pairs (prompt, chosen, rejected) or best-of-N lists, and how to tokenise them."""

    path: str = MISSING
    """Hub dataset name, local file (.json/.jsonl/.jsonl.gz/.csv/.parquet), save_to_disk folder,
    or 'builtin:descriptiveness' (synthetic data made by the package)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Maps canonical names to the file's column names, e.g. {chosen: good, rejected: bad}."""
    max_length: int = 512
    """Token limit per (prompt, response); longer inputs lose the start of the prompt."""
    template: str = "pair"
    """How the reward model reads text: 'pair' = tokenizer(prompt, response) sentence-pair
    encoding; 'concat' = tokenizer(prompt + separator + response)."""
    separator: str = "\n"
    """Text between prompt and response for template 'concat'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.template in ("pair", "concat"), "data.template",
              f"'{self.template}' is not one of pair, concat")


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
    lora: LoraConfig = field(default_factory=LoraConfig)
