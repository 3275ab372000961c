"""`rlhf train-sft`'s config: (prompt, response) data, the causal LM, its training, and the
top-level `SFTConfig`."""

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

SFT_COLUMNS = ("prompt", "response", "messages")


@dataclass
class SFTDataConfig(ExampleDataConfig):
    """(prompt, response) examples for supervised fine-tuning, and how to tokenise them."""

    path: str = MISSING
    """Hub dataset name, local file (.json/.jsonl/.jsonl.gz/.csv/.parquet), folder, save_to_disk
    folder, 'builtin:descriptiveness-sft' (synthetic scene openings with their plain
    continuation) or 'builtin:descriptiveness' (the preference data; trains on 'chosen')."""
    columns: dict[str, str] = field(default_factory=dict)
    """Maps canonical names (prompt, response, messages) to the data's columns, e.g.
    {response: chosen}. Without it the response is 'response', 'completion' or 'chosen'."""
    max_length: int = 512
    """Token limit per example (prompt + response + EOS); longer ones lose the start of the
    prompt, and only a response that alone is too long loses its end."""

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.columns) - set(SFT_COLUMNS))
        check(not unknown, "data.columns",
              f"unknown name(s) {', '.join(unknown)}; use {', '.join(SFT_COLUMNS)}")


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
    lora: LoraConfig = field(default_factory=LoraConfig)
