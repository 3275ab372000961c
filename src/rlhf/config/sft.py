"""`rlhf train-sft`'s config: (prompt, response) data, the causal LM, its training, and the
top-level `SFTConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from rlhf.config.common import BatchTrainConfig, RunConfig, check

SFT_COLUMNS = ("prompt", "response", "messages")


@dataclass
class SFTDataConfig:
    """(prompt, response) examples for supervised fine-tuning, and how to tokenise them."""

    path: str = MISSING
    """Hub dataset name, local file (.json/.jsonl/.jsonl.gz/.csv/.parquet), folder, save_to_disk
    folder, 'builtin:descriptiveness-sft' (synthetic scene openings with their plain
    continuation) or 'builtin:descriptiveness' (the preference data; trains on 'chosen')."""
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
    """Maps canonical names (prompt, response, messages) to the data's columns, e.g.
    {response: chosen}. Without it the response is 'response', 'completion' or 'chosen'."""
    max_length: int = 512
    """Token limit per example (prompt + response + EOS); longer ones lose the start of the
    prompt, and only a response that alone is too long loses its end."""
    max_samples: int | None = None
    """Use at most this many training (and test) examples; None for all."""
    group_by_length: bool = True
    """Batch examples of similar length together (shuffled batch order) to cut padding."""

    def __post_init__(self) -> None:
        check(0.0 < self.test_fraction < 1.0, "data.test_fraction", "must be in (0, 1)")
        unknown = sorted(set(self.columns) - set(SFT_COLUMNS))
        check(not unknown, "data.columns",
              f"unknown name(s) {', '.join(unknown)}; use {', '.join(SFT_COLUMNS)}")
        check(self.max_length >= 8, "data.max_length", "must be >= 8")
        check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
              "must be >= 1 or null")


@dataclass
class SFTModelConfig:
    """The causal language model to fine-tune (later the PPO policy)."""

    name_or_path: str = MISSING
    """Hub model name, local save_pretrained folder, or 'builtin:tiny-gpt2' (a tiny
    random-weight GPT-2 with a tokenizer trained locally)."""
    disable_dropout: bool = True
    """Turn dropout off, so the model trains as PPO will run it (PPO keeps dropout off)."""
    trust_remote_code: bool = False
    """Allow model code from the hub repository to run. Off unless you trust the repository."""


@dataclass
class SFTTrainConfig(BatchTrainConfig):
    """Optimisation of the policy on response tokens."""


@dataclass
class SFTConfig:
    """`rlhf train-sft`: supervised fine-tuning of a causal LM on (prompt, response) pairs,
    with the loss on response tokens only."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/sft"))
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    model: SFTModelConfig = field(default_factory=SFTModelConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
