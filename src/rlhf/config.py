"""Typed run configurations: dataclasses loaded from YAML with dotted `key=value` overrides.

Each stage has one top-level dataclass (`RewardConfig`, ...) made of sections (`run`, `data`,
`model`, `train`). OmegaConf does the loading, merging and type conversion; this module adds
what OmegaConf does not: an unknown key names the closest valid key, and every value is
checked by the dataclass that owns it (`__post_init__`) before any model is loaded.

Imports only the standard library and OmegaConf (DESIGN.md dependency rule).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rlhf.errors import UserError

T = TypeVar("T")


def _check(condition: bool, key: str, message: str) -> None:
    """Raise a UserError naming the key when a value is invalid."""
    if not condition:
        raise UserError(f"config key '{key}': {message}")


@dataclass
class RunConfig:
    """Where a run writes, how it is seeded, logged and checkpointed."""

    output_dir: str = "runs/run"
    """Run directory: config.yaml, metrics.jsonl, checkpoints, plots and the final model."""
    seed: int = 0
    """Seed for weights initialisation, data order and sampling (each process adds its rank)."""
    resume: bool = False
    """Continue from the newest complete checkpoint in output_dir instead of starting anew."""
    save_every: int = 0
    """Write a checkpoint every N optimizer steps (0: only at the end of training)."""
    keep_last: int = 2
    """Keep the newest K checkpoints and delete older ones (the newest is never deleted)."""
    eval_every: int = 0
    """Evaluate on the test split every N optimizer steps (0: only at each epoch end)."""
    log_every: int = 1
    """Write training metrics every N optimizer steps."""
    report_to: list[str] = field(default_factory=list)
    """Extra metric sinks besides metrics.jsonl: any of 'tensorboard', 'wandb'."""
    mixed_precision: str = "auto"
    """'auto' (bf16 on a GPU that supports it, else fp32), 'no', 'bf16' or 'fp16'."""
    progress: bool = True
    """Show a progress bar with live metrics."""

    def __post_init__(self) -> None:
        _check(bool(self.output_dir), "run.output_dir", "must not be empty")
        _check(self.save_every >= 0, "run.save_every", "must be >= 0")
        _check(self.keep_last >= 1, "run.keep_last", "must be >= 1")
        _check(self.eval_every >= 0, "run.eval_every", "must be >= 0")
        _check(self.log_every >= 1, "run.log_every", "must be >= 1")
        for sink in self.report_to:
            _check(sink in ("tensorboard", "wandb"), "run.report_to",
                   f"unknown sink '{sink}'; use 'tensorboard' or 'wandb'")
        _check(self.mixed_precision in ("auto", "no", "bf16", "fp16"), "run.mixed_precision",
               f"'{self.mixed_precision}' is not one of auto, no, bf16, fp16")


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
    """Split to evaluate on when the dataset has it; otherwise test_fraction is held out."""
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
        _check(0.0 < self.test_fraction < 1.0, "data.test_fraction", "must be in (0, 1)")
        _check(self.template in ("pair", "concat"), "data.template",
               f"'{self.template}' is not one of pair, concat")
        _check(self.max_length >= 8, "data.max_length", "must be >= 8")
        _check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
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
class RewardTrainConfig:
    """Optimisation of the reward model."""

    epochs: int = 1
    """Passes over the training examples."""
    batch_size: int = 16
    """Examples (pairs or lists) per optimizer step, over all processes and accumulation."""
    micro_batch_size: int = 0
    """Examples per forward/backward pass on one process; 0 means batch_size / processes.
    batch_size must be a multiple of micro_batch_size * processes (gradient accumulation)."""
    eval_batch_size: int = 32
    """Examples per forward pass during evaluation."""
    learning_rate: float = 5e-5
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    scheduler: str = "linear"
    """Learning-rate schedule after warmup: 'linear' (to 0), 'cosine' or 'constant'."""
    warmup_ratio: float = 0.0
    """Fraction of the optimizer steps with a linear warmup from 0."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this value (0 turns clipping off)."""
    center_coef: float = 0.0
    """Weight of the reward-centering term coef * mean((r_chosen + r_rejected)^2)
    (Eisenstein et al. 2023); keeps scores near 0. 0 turns it off."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run all epochs)."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0")
        _check(self.micro_batch_size == 0 or self.batch_size % self.micro_batch_size == 0,
               "train.batch_size",
               f"{self.batch_size} is not a multiple of train.micro_batch_size "
               f"{self.micro_batch_size}")
        _check(self.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1")
        _check(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.scheduler in ("linear", "cosine", "constant"), "train.scheduler",
               f"'{self.scheduler}' is not one of linear, cosine, constant")
        _check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
        _check(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0")
        _check(self.center_coef >= 0, "train.center_coef", "must be >= 0")
        _check(self.max_steps >= 0, "train.max_steps", "must be >= 0")

    def micro_batches_per_step(self, num_processes: int) -> tuple[int, int]:
        """(micro_batch_size, accumulation steps) for this many processes; checks they divide."""
        per_process, remainder = divmod(self.batch_size, num_processes)
        _check(remainder == 0 and per_process >= 1, "train.batch_size",
               f"{self.batch_size} cannot be split evenly over {num_processes} processes")
        micro = self.micro_batch_size or per_process
        _check(per_process % micro == 0, "train.micro_batch_size",
               f"{micro} does not divide the {per_process} examples each process gets per step "
               f"(train.batch_size {self.batch_size} / {num_processes} processes)")
        return micro, per_process // micro


@dataclass
class RewardConfig:
    """`rlhf train-reward`: fit a scalar reward model to preference data (Bradley-Terry)."""

    run: RunConfig = field(default_factory=lambda: RunConfig(output_dir="runs/reward"))
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    train: RewardTrainConfig = field(default_factory=RewardTrainConfig)


# ---------------------------------------------------------------------------------------------
# Loading


def _unknown_keys(schema: type, values: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Every key in `values` that the dataclass `schema` lacks, with the valid keys beside it."""
    if not isinstance(values, dict) or not dataclasses.is_dataclass(schema):
        return []
    fields = {f.name: f for f in dataclasses.fields(schema)}
    found = []
    for key, value in values.items():
        if key not in fields:
            found.append((prefix + str(key), [prefix + name for name in fields]))
            continue
        section = _section_type(fields[key])
        if section is not None:
            found += _unknown_keys(section, value, f"{prefix}{key}.")
    return found


def _section_type(config_field: dataclasses.Field) -> type | None:
    """The dataclass type of a nested section, or None for a plain field."""
    if config_field.default_factory is dataclasses.MISSING:
        return None
    value = config_field.default_factory()
    return type(value) if dataclasses.is_dataclass(value) else None


def _raise_unknown(schema: type, values: dict, origin: str) -> None:
    unknown = _unknown_keys(schema, values)
    if not unknown:
        return
    key, valid = unknown[0]
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"
    raise UserError(f"unknown config key '{key}' in {origin}{hint}")


def load_config(schema: type[T], path: str | Path | None, overrides: list[str] = ()) -> T:
    """Load `schema` from a YAML file plus dotted `key=value` overrides, validated.

    Raises UserError for a missing file, bad YAML, an unknown key (with a suggestion), a value of
    the wrong type, a required key left unset, or a value its dataclass rejects.
    """
    layers = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"config file not found: {path}")
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as error:  # yaml.YAMLError and friends
            raise UserError(f"cannot parse config file {path}: {error}") from None
        layers.append((file_cfg, str(path)))
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise UserError(f"override '{bad[0]}' is not of the form key=value (e.g. train.epochs=2)")
    layers.append((OmegaConf.from_dotlist(list(overrides)), "the command-line overrides"))

    merged = OmegaConf.structured(schema)
    for layer, origin in layers:
        plain = OmegaConf.to_container(layer, resolve=False) or {}
        _raise_unknown(schema, plain, origin)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", "") or "?"
            raise UserError(f"config key '{key}' in {origin}: {_first_line(error)}") from None
    try:
        return OmegaConf.to_object(merged)
    except MissingMandatoryValue as error:
        raise UserError(f"config key '{error.full_key}' is required; set it in the YAML file "
                        f"or as {error.full_key}=... on the command line") from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or "?"
        raise UserError(f"config key '{key}': {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def to_yaml(config: Any) -> str:
    """The resolved config as YAML, as written to the run directory."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))
