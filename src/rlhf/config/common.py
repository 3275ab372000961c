"""The config parts every stage shares: the `run` section, AdamW and its schedule, the batch
split of a supervised stage, and `check`, which refuses a value naming its key.

Every value is checked by the dataclass that owns it (`__post_init__`) before any model is
loaded. Imports only the standard library and rlhf.errors (DESIGN.md dependency rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from rlhf.errors import UserError


def check(condition: bool, key: str, message: str) -> None:
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
    keep_host_memory: bool = True
    """On a CPU, keep host memory the run frees for its next step instead of returning it to
    the system at once (glibc on Linux): fresh pages cost a page fault each, and a step
    allocates the same large tensors again (a bf16 GPT-2-small PPO epoch: 2.97 s -> 1.95 s).
    Memory freed after the peak stays with the process until it exits."""
    progress: bool = True
    """Show a progress bar with live metrics."""
    on_nonfinite: str = "stop"
    """A NaN or inf loss, reward or gradient norm: 'stop' the run (the last good checkpoint
    stays as it is) or 'skip' that batch's update and count it in train/skipped_batches."""

    def __post_init__(self) -> None:
        check(bool(self.output_dir), "run.output_dir", "must not be empty")
        check(self.on_nonfinite in ("stop", "skip"), "run.on_nonfinite",
              f"'{self.on_nonfinite}' is not one of stop, skip")
        check(self.save_every >= 0, "run.save_every", "must be >= 0")
        check(self.keep_last >= 1, "run.keep_last", "must be >= 1")
        check(self.eval_every >= 0, "run.eval_every", "must be >= 0")
        check(self.log_every >= 1, "run.log_every", "must be >= 1")
        for sink in self.report_to:
            check(sink in ("tensorboard", "wandb"), "run.report_to",
                  f"unknown sink '{sink}'; use 'tensorboard' or 'wandb'")
        check(self.mixed_precision in ("auto", "no", "bf16", "fp16"), "run.mixed_precision",
              f"'{self.mixed_precision}' is not one of auto, no, bf16, fp16")


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
    gradient_checkpointing: bool = False
    """Keep only each layer's input in the forward pass and recompute the rest during the
    backward pass (transformers' non-reentrant gradient checkpointing): much less activation
    memory for about one extra forward pass of time; the same losses and gradients to float
    tolerance."""

    def __post_init__(self) -> None:
        check(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        check(self.scheduler in ("linear", "cosine", "constant"), "train.scheduler",
              f"'{self.scheduler}' is not one of linear, cosine, constant")
        check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
        check(self.max_grad_norm >= 0, "train.max_grad_norm", "must be >= 0")


@dataclass
class LoraConfig:
    """LoRA adapters (Hu et al. 2021) through peft: only low-rank updates of the chosen layers
    train; the base weights stay frozen, and an RL run's reference is the same model with its
    adapters switched off (no second copy in memory)."""

    r: int = 0
    """Rank of each adapter; 0 trains every parameter (no adapters)."""
    alpha: float = 16.0
    """Scale of the update: the layer adds (alpha / r) * B A x."""
    dropout: float = 0.0
    """Dropout on the adapters' input. 0: an RL update must compute the same function the
    rollout sampled from (ratio exactly 1 before the first step)."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Layers that get adapters: module names or name suffixes (e.g. [c_attn] for GPT-2,
    [q_proj, v_proj] for Llama), or [all-linear]: every linear layer except the output head
    (the QLoRA recommendation, Dettmers et al. 2023)."""
    merge: bool = True
    """Also write RUN/model with the adapters merged into the weights, a folder plain
    transformers loads; RUN/adapter always holds the adapters in peft's format. false saves
    the disk and time of a full copy of a large model."""
    quantize: str = "none"
    """'none' or '4bit': QLoRA, the frozen base in 4-bit NF4 through bitsandbytes with the
    adapters in full precision; needs a CUDA GPU and the bitsandbytes package."""

    def __post_init__(self) -> None:
        check(self.r >= 0, "lora.r", "must be >= 0 (0 turns LoRA off)")
        check(self.alpha > 0, "lora.alpha", "must be > 0")
        check(0.0 <= self.dropout < 1.0, "lora.dropout", "must be in [0, 1)")
        check(bool(self.target_modules), "lora.target_modules",
              "must name at least one module, or be [all-linear]")
        check(self.quantize in ("none", "4bit"), "lora.quantize",
              f"'{self.quantize}' is not one of none, 4bit")
        check(self.quantize == "none" or self.r > 0, "lora.quantize",
              "a 4-bit base cannot be trained without adapters; set lora.r (e.g. 16)")


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
        check(self.epochs >= 1, "train.epochs", "must be >= 1")
        check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        check(self.micro_batch_size >= 0, "train.micro_batch_size", "must be >= 0")
        check(self.micro_batch_size == 0 or self.batch_size % self.micro_batch_size == 0,
              "train.batch_size",
              f"{self.batch_size} is not a multiple of train.micro_batch_size "
              f"{self.micro_batch_size}; change one of them so that it is")
        check(self.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1")
        check(self.max_steps >= 0, "train.max_steps", "must be >= 0")
        super().__post_init__()

    def micro_batches_per_step(self, num_processes: int) -> tuple[int, int]:
        """(micro_batch_size, accumulation steps) for this many processes; checks they divide."""
        per_process, remainder = divmod(self.batch_size, num_processes)
        check(remainder == 0 and per_process >= 1, "train.batch_size",
              f"{self.batch_size} cannot be split evenly over {num_processes} processes")
        micro = self.micro_batch_size or per_process
        check(per_process % micro == 0, "train.micro_batch_size",
              f"{micro} does not divide the {per_process} examples each process gets per step "
              f"(train.batch_size {self.batch_size} / {num_processes} processes); use a "
              f"divisor of {per_process}")
        return micro, per_process // micro


@dataclass
class ExampleDataConfig:
    """Where a supervised stage's examples come from and how they are split and batched; each
    stage's data section adds how its examples are read."""

    path: str = MISSING
    """Hub dataset name, local file (.json/.jsonl/.jsonl.gz/.csv/.parquet), folder or
    save_to_disk folder."""
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
    """Maps canonical names to the file's column names."""
    max_length: int = 512
    """Token limit per example; longer inputs lose the start of the prompt."""
    max_samples: int | None = None
    """Use at most this many training (and test) examples; None for all."""
    group_by_length: bool = True
    """Batch examples of similar length together (shuffled batch order) to cut padding."""

    def __post_init__(self) -> None:
        check(0.0 < self.test_fraction < 1.0, "data.test_fraction", "must be in (0, 1)")
        check(self.max_length >= 8, "data.max_length", "must be >= 8")
        check(self.max_samples is None or self.max_samples >= 1, "data.max_samples",
              "must be >= 1 or null")
