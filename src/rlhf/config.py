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
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rlhf.errors import UserError, first_line

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
    """Seed of drawn weights, data order, sampling and minibatch order (keyed by it, the same on
    every process); each process seeds its other random streams with seed + rank
    (rlhf.seeding)."""
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
    """'auto' (bf16 on a GPU that supports it, else fp32), 'no', 'bf16' or 'fp16' (GPU only,
    with loss scaling: an overflow skips that step and is counted in train/overflow_steps).
    Every model of the run computes at it: trained, reference and reward models alike."""
    progress: bool = True
    """Show a progress bar with live metrics."""
    on_nonfinite: str = "stop"
    """A NaN or inf loss, reward or gradient norm: 'stop' the run (the last good checkpoint
    stays as it is) or 'skip' that batch's update and count it in train/skipped_batches."""

    def __post_init__(self) -> None:
        _check(bool(self.output_dir), "run.output_dir", "must not be empty")
        _check(self.on_nonfinite in ("stop", "skip"), "run.on_nonfinite",
               f"'{self.on_nonfinite}' is not one of stop, skip")
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
class OptimizerConfig:
    """AdamW and its learning-rate schedule; shared by every stage's `train` section."""

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

    def __post_init__(self) -> None:
        _check(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.scheduler in ("linear", "cosine", "constant"), "train.scheduler",
               f"'{self.scheduler}' is not one of linear, cosine, constant")
        _check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
        _check(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0")


@dataclass
class BatchTrainConfig(OptimizerConfig):
    """Epochs and batch splitting of a supervised stage (reward model, SFT)."""

    epochs: int = 1
    """Passes over the training examples."""
    batch_size: int = 16
    """Examples per optimizer step, over all processes and accumulation."""
    micro_batch_size: int = 0
    """Examples per forward/backward pass on one process; 0 means batch_size / processes.
    batch_size must be a multiple of micro_batch_size * processes (gradient accumulation)."""
    eval_batch_size: int = 32
    """Examples per forward pass during evaluation."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run all epochs)."""

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0")
        _check(self.micro_batch_size == 0 or self.batch_size % self.micro_batch_size == 0,
               "train.batch_size",
               f"{self.batch_size} is not a multiple of train.micro_batch_size "
               f"{self.micro_batch_size}; change one of them so that it is")
        _check(self.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1")
        _check(self.max_steps >= 0, "train.max_steps", "must be >= 0")
        super().__post_init__()

    def micro_batches_per_step(self, num_processes: int) -> tuple[int, int]:
        """(micro_batch_size, accumulation steps) for this many processes; checks they divide."""
        per_process, remainder = divmod(self.batch_size, num_processes)
        _check(remainder == 0 and per_process >= 1, "train.batch_size",
               f"{self.batch_size} cannot be split evenly over {num_processes} processes")
        micro = self.micro_batch_size or per_process
        _check(per_process % micro == 0, "train.micro_batch_size",
               f"{micro} does not divide the {per_process} examples each process gets per step "
               f"(train.batch_size {self.batch_size} / {num_processes} processes); use a "
               f"divisor of {per_process}")
        return micro, per_process // micro


@dataclass
class RewardTrainConfig(BatchTrainConfig):
    """Optimisation of the reward model; batch_size counts pairs (or best-of-N lists)."""

    center_coef: float = 0.0
    """Weight of the reward-centering term coef * mean((r_chosen + r_rejected)^2)
    (Eisenstein et al. 2023); keeps scores near 0. 0 turns it off."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.center_coef >= 0, "train.center_coef", "must be >= 0")


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
    merged = merge_config(schema, path, overrides)
    try:
        return OmegaConf.to_object(merged)
    except MissingMandatoryValue as error:
        raise UserError(f"config key '{error.full_key}' is required; set it in the YAML file "
                        f"(--config FILE) or as {error.full_key}=... on the command line") from None
    except OmegaConfBaseException as error:
        raise _type_error(error, "") from None


def merge_config(schema: type, path: str | Path | None, overrides: list[str] = ()) -> Any:
    """The structured OmegaConf config of `schema` with the file and overrides merged in,
    type-checked but not yet validated by the dataclasses (required keys may be unset)."""
    layers = []
    if path is not None:
        layers.append((_load_yaml(Path(path)), str(path), {}))
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise UserError(f"override '{bad[0]}' is not of the form key=value (e.g. train.epochs=2)")
    typed = {key.strip(): text.strip() for key, text in (o.split("=", 1) for o in overrides)}
    layers.append((OmegaConf.from_dotlist(list(overrides)), "the command-line overrides", typed))

    merged = OmegaConf.structured(schema)
    for layer, origin, typed in layers:
        plain = OmegaConf.to_container(layer, resolve=False) or {}
        _raise_unknown(schema, plain, origin)
        plain = _undo_yaml_booleans(schema, plain, _BooleanSource(origin, typed))
        try:
            merged = OmegaConf.merge(merged, plain)
        except OmegaConfBaseException as error:
            raise _type_error(error, f" in {origin}") from None
    return merged


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"config file not found: {path}; check the path (the configs/ "
                        "folder of the repository has examples)")
    try:
        return OmegaConf.load(path)
    except Exception as error:  # yaml.YAMLError and friends
        raise UserError(f"cannot parse config file {path}{_yaml_position(error)}: "
                        f"{_yaml_problem(error)}; fix the YAML syntax") from None


def _type_error(error: OmegaConfBaseException, where: str) -> UserError:
    key = getattr(error, "full_key", "") or "?"
    return UserError(f"config key '{key}'{where}: {first_line(error)}; give it a value of the "
                     "right type")


# YAML 1.1 (PyYAML, hence OmegaConf, also for command-line overrides) reads an unquoted yes, no,
# on, off, true or false in any case as a boolean, and OmegaConf would then store "False" in a
# text field. Where a text field's valid values include such a word, the boolean stands for
# that word (mixed_precision: no); any other text field given a boolean is told to quote it.
BOOLEAN_WORDS: dict[tuple[type, str], dict[bool, str]] = {
    (RunConfig, "mixed_precision"): {False: "no"},
}
_YAML_BOOLEANS = {"yes", "no", "on", "off", "true", "false"}


@dataclass
class _BooleanSource:
    """Where a layer of values came from, and the text typed for each dotted key (overrides),
    so an error can quote the very word YAML turned into a boolean."""

    origin: str
    typed: dict[str, str]


def _undo_yaml_booleans(schema: type, values: Any, source: _BooleanSource,
                        prefix: str = "") -> Any:
    """`values` (a plain container) with each YAML boolean in a text field of `schema` turned
    back into the word it stands for; a UserError where the field has no such word."""
    if not isinstance(values, dict) or not dataclasses.is_dataclass(schema):
        return values
    hints = typing.get_type_hints(schema)
    fixed = dict(values)
    for key, value in values.items():
        hint, dotted = hints.get(key), f"{prefix}{key}"
        if dataclasses.is_dataclass(hint):
            fixed[key] = _undo_yaml_booleans(hint, value, source, dotted + ".")
        elif _is_text(hint) and isinstance(value, bool):
            word = BOOLEAN_WORDS.get((schema, key), {}).get(value)
            if word is None:
                _quote_error(dotted, value, source)
            fixed[key] = word
        elif typing.get_origin(hint) in (list, dict) and _is_text(typing.get_args(hint)[-1]):
            _check_text_items(value, dotted, source)
    return fixed


def _check_text_items(value: Any, key: str, source: _BooleanSource) -> None:
    """A list or mapping of text (run.report_to, data.columns) holds no YAML boolean."""
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, bool):
                _quote_error(f"{key}.{name}", item, source)
    elif isinstance(value, list) and any(isinstance(item, bool) for item in value):
        _quote_error(key, next(i for i in value if isinstance(i, bool)), source, in_list=True)


def _is_text(hint: Any) -> bool:
    """True for `str` and `str | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return set(typing.get_args(hint)) == {str, type(None)}
    return hint is str


def _quote_error(key: str, value: bool, source: _BooleanSource,
                 in_list: bool = False) -> NoReturn:
    typed = source.typed.get(key, "")
    word = typed if typed.lower() in _YAML_BOOLEANS else ("yes" if value else "no")
    said = f"'{word}'" if typed == word else ("yes/on/true" if value else "no/off/false")
    quoted = f"['{word}']" if in_list else f"'{word}'"
    example = f"\"{key}={quoted}\"" if source.typed else f"{key.rsplit('.', 1)[-1]}: {quoted}"
    raise UserError(f"config key '{key}' in {source.origin}: YAML read {said} as the boolean "
                    f"{str(value).lower()}, but this key takes text; quote the value, e.g. "
                    f"{example}")


def _yaml_position(error: Exception) -> str:
    """' (line L, column C)' where PyYAML found the problem, or '' when it does not say."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _yaml_problem(error: Exception) -> str:
    """PyYAML's messages span several lines (context, problem, a caret under the text); the
    problem itself is the part that helps on one line."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    problem = ", ".join(part for part in parts if part)
    return problem or first_line(error)


def to_yaml(config: Any) -> str:
    """The resolved config as YAML, as written to the run directory."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


# ---------------------------------------------------------------------------------------------
# PPO


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
    """Dolly context is cut to this many characters before tokenising (as in the seed)."""
    max_prompt_tokens: int = 64
    """Longer prompts are shortened inside the context/instruction, never losing the
    '### Response:' marker; plain prompts lose their start."""
    max_samples: int | None = None
    """Use at most this many prompts; None for all."""
    reward_prompt: str = "template"
    """What the reward model reads as the prompt: 'template' (the rendered prompt the policy
    saw) or 'instruction' (the raw instruction text, for reward models trained on it)."""

    def __post_init__(self) -> None:
        _check(self.template in ("dolly", "prompt", "chat"), "data.template",
               f"'{self.template}' is not one of dolly, prompt, chat")
        _check(self.context_chars >= 0, "data.context_chars", "must be >= 0")
        _check(self.max_prompt_tokens >= 8, "data.max_prompt_tokens", "must be >= 8")
        _check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
               "must be >= 1 or null")
        _check(self.reward_prompt in ("template", "instruction"), "data.reward_prompt",
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
        _check(self.reward_template in (None, "pair", "concat"), "model.reward_template",
               f"'{self.reward_template}' is not one of pair, concat, null")
        _check(self.value_init in ("auto", "policy", "reward"), "model.value_init",
               f"'{self.value_init}' is not one of auto, policy, reward")
        _check(self.reward_max_length is None or self.reward_max_length >= 8,
               "model.reward_max_length", "must be >= 8 or null")


@dataclass
class GenerateConfig:
    """How responses are sampled during rollouts."""

    max_new_tokens: int = 16
    """Longest response in tokens."""
    min_new_tokens: int | None = None
    """When set, each response draws its own length limit uniformly from [min, max], keyed by
    (seed, iteration, prompt) like the seed's per-sample LengthSampler; a row still stops early
    at a stop token. None: every response may use max_new_tokens."""
    temperature: float = 0.7
    """Sampling temperature; log-probs everywhere use logits / temperature."""
    stop_token: str | None = None
    """Extra text token that ends a response besides EOS (e.g. a newline); None: EOS only."""

    def __post_init__(self) -> None:
        _check(self.max_new_tokens >= 1, "generate.max_new_tokens", "must be >= 1")
        _check(self.min_new_tokens is None or 1 <= self.min_new_tokens <= self.max_new_tokens,
               "generate.min_new_tokens", "must be between 1 and generate.max_new_tokens")
        _check(self.temperature > 0, "generate.temperature", "must be > 0 for PPO sampling")


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
        _check(self.total_episodes >= 0, "ppo.total_episodes", "must be >= 0")
        _check(self.kl_coef >= 0, "ppo.kl_coef", "must be >= 0")
        _check(self.kl_estimator in ("k1", "k3"), "ppo.kl_estimator",
               f"'{self.kl_estimator}' is not one of k1, k3")
        _check(self.kl_target > 0, "ppo.kl_target", "must be > 0")
        _check(self.kl_horizon > 0, "ppo.kl_horizon", "must be > 0")
        _check(0 <= self.gamma <= 1, "ppo.gamma", "must be in [0, 1]")
        _check(0 <= self.lam <= 1, "ppo.lam", "must be in [0, 1]")
        _check(self.ppo_epochs >= 1, "ppo.ppo_epochs", "must be >= 1")
        _check(self.num_minibatches >= 1, "ppo.num_minibatches", "must be >= 1")
        _check(self.clip_range > 0, "ppo.clip_range", "must be > 0")
        _check(self.value_clip_range > 0, "ppo.value_clip_range", "must be > 0")
        _check(self.vf_coef >= 0, "ppo.vf_coef", "must be >= 0")
        _check(self.score_normalization in ("none", "reward_model", "reference"),
               "ppo.score_normalization",
               f"'{self.score_normalization}' is not one of none, reward_model, reference")
        _check(self.normalization_samples >= 2, "ppo.normalization_samples", "must be >= 2")
        _check(self.score_clip is None or self.score_clip > 0, "ppo.score_clip", "must be > 0")
        _check(self.target_approx_kl is None or self.target_approx_kl > 0,
               "ppo.target_approx_kl", "must be > 0")
        _check(self.ratio_threshold is None or self.ratio_threshold > 1,
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
        _check(self.epochs >= 1, "train.epochs", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0")
        _check(self.rollout_batch_size >= 0, "train.rollout_batch_size", "must be >= 0")
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
        _check(self.samples_every >= 0, "samples_every", "must be >= 0")
        # The split must work on one process at least; more processes are checked at start.
        self.batch_split(1)

    def batch_split(self, num_processes: int) -> tuple[int, int, int]:
        """(sequences per process, per minibatch, per micro-batch); checks that they divide."""
        per_process, remainder = divmod(self.train.batch_size, num_processes)
        _check(remainder == 0, "train.batch_size",
               f"{self.train.batch_size} cannot be split evenly over {num_processes} processes")
        per_minibatch, remainder = divmod(per_process, self.ppo.num_minibatches)
        _check(remainder == 0 and per_minibatch >= 1, "ppo.num_minibatches",
               f"{self.ppo.num_minibatches} does not divide the {per_process} episodes each "
               f"process gets per rollout (train.batch_size {self.train.batch_size} / "
               f"{num_processes} processes); use a divisor of {per_process}")
        micro = self.train.micro_batch_size or per_minibatch
        _check(per_minibatch % micro == 0, "train.micro_batch_size",
               f"{micro} does not divide the minibatch of {per_minibatch} sequences; use a "
               f"divisor of {per_minibatch}")
        return per_process, per_minibatch, micro


# ---------------------------------------------------------------------------------------------
# SFT

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
        _check(0.0 < self.test_fraction < 1.0, "data.test_fraction", "must be in (0, 1)")
        unknown = sorted(set(self.columns) - set(SFT_COLUMNS))
        _check(not unknown, "data.columns",
               f"unknown name(s) {', '.join(unknown)}; use {', '.join(SFT_COLUMNS)}")
        _check(self.max_length >= 8, "data.max_length", "must be >= 8")
        _check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
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
