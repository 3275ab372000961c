"""Run plumbing shared by every stage: accelerate, seeding, the run directory, metric sinks,
atomic checkpoints and exact resume.

A checkpoint `checkpoint-<step>/` holds, for each named model, its weights (safetensors), its
optimizer and scheduler state, the trainer state (step, data position, KL controller, ...) as
JSON and every process's RNG states. It is written under a temporary name and renamed into
place, so resume never sees a half-written one. Nothing is ever unpickled: weights load from
safetensors and optimizer state with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from rlhf.config import RunConfig, to_yaml
from rlhf.errors import NonFiniteError, StoppedBySignal, UserError, first_line

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
SCALER_FILE = "scaler.pt"
LOG_FILES = ("metrics.jsonl", "samples.jsonl")
"""Per-step logs (JSON lines with a "step"): cut back to the checkpoint on resume."""
KILL_POINT_VARIABLE = "RLHF_TEST_KILL_AT"


def resolve_mixed_precision(setting: str) -> str:
    """'auto' means bf16 on a CUDA device that supports it and full precision elsewhere."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


@dataclass
class TrainingState:
    """Where training stands; saved in every checkpoint so resume continues exactly."""

    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """Current epoch (0-based)."""
    batch_in_epoch: int = 0
    """Batches of the current epoch already trained on."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Stage-specific state (e.g. the KL controller), JSON-serialisable."""


class Run:
    """One training run: its Accelerator, directory, metric sinks and checkpoints.

    Nothing is written until `start`, which a stage calls once its models, data and optimizer
    are ready: a bad input found while loading them never touches the run directory.
    """

    def __init__(self, run_config: RunConfig, config: Any, *, stage: str):
        _check_sinks_installed(run_config.report_to)
        self.config = run_config
        self.full_config = config
        self.output_dir = Path(run_config.output_dir)
        # accelerate keeps one process-wide state and refuses a second Accelerator with other
        # settings (a notebook running a bf16 stage after an fp32 one); each run sets its own.
        # The process group (PartialState) is kept.
        AcceleratorState._reset_state()
        self.accelerator = Accelerator(
            cpu=_distributed_without_gpu(),
            mixed_precision=resolve_mixed_precision(run_config.mixed_precision),
            log_with=_trackers(run_config.report_to, self.output_dir, stage) or None,
            project_dir=str(self.output_dir),
        )
        if self.accelerator.mixed_precision == "fp16" and not self.accelerator.native_amp:
            raise UserError("run.mixed_precision=fp16 needs a GPU: on this device accelerate "
                            "would silently train in float32; use bf16 or no")
        # Each process seeds every stream with seed + rank (rlhf.seeding).
        set_seed(run_config.seed + self.accelerator.process_index)
        self.stage = stage
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self._logged: set[tuple[int, tuple[str, ...]]] = set()
        self._stop_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        if list_checkpoints(self.output_dir) and not self.config.resume:
            raise UserError(f"run directory {self.output_dir} already has checkpoints; pass "
                            "run.resume=true to continue it or choose another run.output_dir")

    # -- properties -------------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def prepare_frozen(self, model: torch.nn.Module) -> torch.nn.Module:
        """A model that is only run, never trained (PPO's reference, a reward model): on the
        run's device, in eval mode, without gradients or a DDP wrapper, and with exactly the
        forward precision of the trained models (`accelerator.prepare` runs their forward
        under autocast and returns float32 outputs; this model gets the same wrapper).

        A reference left in float32 beside a bf16-autocast policy made KL(policy || reference)
        at the first iteration, where the two are equal, range from -0.18 to +0.40 nats per
        sequence at GPT-2 scale instead of 0.
        """
        model.eval().requires_grad_(False)
        return self.accelerator.prepare_model(model, evaluation_mode=True)

    # -- start ------------------------------------------------------------------------------

    def start(self, models: dict[str, torch.nn.Module], optimizers: dict[str, Any],
              schedulers: dict[str, Any]) -> TrainingState:
        """Write config.yaml, restore the newest checkpoint when resuming, and from here on
        turn SIGINT/SIGTERM into a checkpoint and a clean exit."""
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(to_yaml(self.full_config),
                                                         encoding="utf-8")
            if not self.config.resume:
                for log in LOG_FILES:
                    (self.output_dir / log).unlink(missing_ok=True)
        if self.config.report_to:
            _start_trackers(self.accelerator, self.full_config)
        self.accelerator.wait_for_everyone()
        state = self.load_latest(models, optimizers, schedulers) or TrainingState()
        self._install_signal_handlers()
        return state

    # -- metrics ----------------------------------------------------------------------------

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one JSON line to metrics.jsonl (main process) and send to the trackers.

        A resumed run skips a line the run before it already wrote (same step, same keys):
        e.g. the final evaluation, logged just before the last checkpoint.
        """
        record = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        key = (step, tuple(sorted(metrics)))
        if key in self._logged:
            return
        self._logged.add(key)
        if self.is_main:
            with open(self.metrics_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.config.report_to:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def mean_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over all processes (a no-op with one)."""
        if self.accelerator.num_processes == 1 or not metrics:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], device=self.device)
        values = self.accelerator.reduce(values, reduction="mean")
        return dict(zip(keys, values.tolist(), strict=True))

    def sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce sum across processes (the tensor itself with one process)."""
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor, reduction="sum")

    def finish(self) -> None:
        self._restore_signal_handlers()
        if self.config.report_to:
            self.accelerator.end_training()
        self.accelerator.wait_for_everyone()

    # -- stopping: signals and non-finite numbers -------------------------------------------

    def _install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM set a flag the loop reads after each step; a second SIGINT stops at
        once (KeyboardInterrupt), for a user who does not want to wait for the step."""
        if threading.current_thread() is not threading.main_thread():
            return

        def request_stop(signum, frame):
            if self._stop_signal == signal.SIGINT and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum
            if self.is_main:
                print(f"\n[rlhf] {signal.Signals(signum).name} received: stopping after this "
                      "step with a checkpoint (press Ctrl-C again to stop at once)", flush=True)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, request_stop)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _any_process(self, flag: bool) -> bool:
        """True on every process if `flag` is true on any of them (they must agree)."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        return bool(self.accelerator.reduce(value, reduction="sum").item() > 0)

    def end_of_step(self, state: TrainingState, checkpointed: dict[str, dict], *,
                    last: bool) -> None:
        """Checkpoint when due; on a stop request, checkpoint and raise StoppedBySignal."""
        _crash_point("after_step", state.step)
        stop = self._any_process(self._stop_signal is not None) and not last
        if stop or last or self.should_save(state.step):
            self.save_checkpoint(state, **checkpointed)
        if stop:
            name = signal.Signals(self._stop_signal or signal.SIGTERM).name
            raise StoppedBySignal(f"stopped by {name} at step {state.step}; checkpoint written "
                                  f"to {self.output_dir / f'checkpoint-{state.step}'}. Resume "
                                  f"with: {resume_command()}")

    def finite_or_skip(self, step: int, quantities: dict[str, Any]) -> bool:
        """True if every quantity is finite on every process. Otherwise stop the run
        (run.on_nonfinite=stop: the last good checkpoint is kept as it is) or return False so
        the caller skips this update (run.on_nonfinite=skip)."""
        bad = [name for name, value in quantities.items()
               if not bool(torch.isfinite(torch.as_tensor(value)).all())]
        if not self._any_process(bool(bad)):
            return True
        if self.config.on_nonfinite == "stop":
            checkpoints = list_checkpoints(self.output_dir)
            kept = f"the last good checkpoint is {checkpoints[-1][1]}" if checkpoints \
                else "no checkpoint was written yet"
            what = " and ".join(bad) or "a value on another process"
            raise NonFiniteError(
                f"non-finite {what} at step {step + 1}; {kept}. Lower train.learning_rate or "
                "check the data and reward, or set run.on_nonfinite=skip to skip such batches")
        if self.is_main:
            print(f"[rlhf] step {step + 1}: non-finite {' and '.join(bad) or 'value'}; "
                  "update skipped (run.on_nonfinite=skip)", flush=True)
        return False

    # -- checkpoints ------------------------------------------------------------------------

    def should_save(self, step: int) -> bool:
        return self.config.save_every > 0 and step % self.config.save_every == 0

    def save_checkpoint(self, state: TrainingState, models: dict[str, torch.nn.Module],
                        optimizers: dict[str, Any], schedulers: dict[str, Any]) -> Path:
        """Write checkpoint-<step> atomically and prune old ones (keeps the newest K).

        Everything goes to .checkpoint-<step>.tmp, is fsynced, then renamed into place; the
        state file is written last, so a directory without it is never taken for complete.
        """
        final = self.output_dir / f"checkpoint-{state.step}"
        tmp = self.output_dir / f".checkpoint-{state.step}.tmp"
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        _save_rng(tmp / f"rng-{self.accelerator.process_index}.safetensors")
        if self.is_main:
            for name, model in models.items():
                save_model(self.accelerator.unwrap_model(model), str(tmp / f"{name}.safetensors"))
            _crash_point("checkpoint_weights", state.step)
            for name, optimizer in optimizers.items():
                torch.save(optimizer.state_dict(), tmp / f"optimizer-{name}.pt")
            for name, scheduler in schedulers.items():
                torch.save(scheduler.state_dict(), tmp / f"scheduler-{name}.pt")
            if self.accelerator.scaler is not None:  # fp16 loss scale: part of exact resume
                torch.save(self.accelerator.scaler.state_dict(), tmp / SCALER_FILE)
            _write_json(tmp / STATE_FILE, vars(state) | {"python_rng": _python_rng()})
        self.accelerator.wait_for_everyone()
        if self.is_main:
            _fsync_tree(tmp)
            _crash_point("checkpoint_rename", state.step)
            if final.exists():  # the same step saved again: move the old one aside first
                stale = self.output_dir / f".checkpoint-{state.step}.old"
                shutil.rmtree(stale, ignore_errors=True)
                os.replace(final, stale)
                os.replace(tmp, final)
                shutil.rmtree(stale)
            else:
                os.replace(tmp, final)
            _fsync_dir(self.output_dir)
            _crash_point("checkpoint_prune", state.step)
            self._prune_checkpoints()
        self.accelerator.wait_for_everyone()
        return final

    def _prune_checkpoints(self) -> None:
        checkpoints = list_checkpoints(self.output_dir)
        for _, path in checkpoints[: -self.config.keep_last]:
            shutil.rmtree(path, ignore_errors=True)

    def load_latest(self, models: dict[str, torch.nn.Module], optimizers: dict[str, Any],
                    schedulers: dict[str, Any]) -> TrainingState | None:
        """Restore the newest complete checkpoint if run.resume is set; None when starting anew."""
        if not self.config.resume:
            return None
        checkpoints = list_checkpoints(self.output_dir)
        if not checkpoints:
            self._truncate_logs(-1)  # a run killed before its first checkpoint starts over
            return None
        step, path = checkpoints[-1]
        rng_file = path / f"rng-{self.accelerator.process_index}.safetensors"
        if not rng_file.is_file():
            raise UserError(f"{path} was written by a run with a different number of "
                            f"processes (no {rng_file.name}); resume with the same number")
        try:
            saved = _restore_checkpoint(path, rng_file, models, optimizers, schedulers,
                                        self.accelerator.unwrap_model, self.accelerator.scaler)
        except (OSError, RuntimeError, ValueError, KeyError, SafetensorError,
                pickle.UnpicklingError) as error:  # JSONDecodeError is a ValueError
            raise UserError(f"checkpoint {path} cannot be read ({first_line(error)}); delete "
                            "it to resume from the one before, or start a new run") from None
        self._truncate_logs(step)
        if self.is_main:
            print(f"[rlhf] resumed from {path}", flush=True)
        return TrainingState(**saved)

    def _truncate_logs(self, step: int) -> None:
        """Drop log lines written after the checkpoint (and a line cut short by a kill), so
        a resumed run's logs read as if it had never stopped."""
        self._logged.clear()
        if not self.is_main:
            return
        for name in LOG_FILES:
            path = self.output_dir / name
            if not path.exists():
                continue
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                record = _parse_json_line(line)
                if record is not None and record["step"] <= step:
                    kept.append(line)
                    if name == self.metrics_path.name:
                        self._logged.add((record["step"], tuple(sorted(set(record) - {"step"}))))
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


SCHEDULER_NAMES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def adamw_with_schedule(parameters, *, learning_rate: float, weight_decay: float,
                        scheduler: str, warmup_ratio: float, total_steps: int):
    """AdamW and its learning-rate schedule (linear warmup, then linear/cosine/constant)."""
    from transformers import get_scheduler

    optimizer = _adamw(list(parameters), lr=learning_rate, weight_decay=weight_decay)
    schedule = get_scheduler(SCHEDULER_NAMES[scheduler], optimizer,
                             num_warmup_steps=math.ceil(warmup_ratio * total_steps),
                             num_training_steps=total_steps)
    return optimizer, schedule


def _adamw(parameters: list, **settings) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters' device.

    Measured on the 2-core CPU (BENCHMARKS.md): one step over 105M parameters takes 0.09 s
    fused against 0.56 s with the default multi-tensor kernel, a few percent of a PPO
    iteration at GPT-2-small size. Same update rule; results differ only by float rounding.
    """
    try:
        return torch.optim.AdamW(parameters, fused=True, **settings)
    except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(parameters, **settings)


STEPPED, OVERFLOW, SKIPPED = "stepped", "overflow", "skipped"
"""What `optimizer_step` did: updated; skipped an fp16 loss-scale overflow (and lowered the
scale); skipped a batch with a NaN/inf that loss scaling cannot explain (run.on_nonfinite=skip)."""


def gradient_norm_after_clipping(accelerator, parameters, max_grad_norm: float) -> float:
    """Unscale fp16 gradients, clip their norm to `max_grad_norm` (0: no clipping); the norm
    before clipping, of the true (unscaled) gradients."""
    parameters = list(parameters)
    if max_grad_norm > 0:
        return float(accelerator.clip_grad_norm_(parameters, max_grad_norm))
    accelerator.unscale_gradients()
    norms = [p.grad.norm() for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def optimizer_step(accelerator, optimizer, scheduler, parameters, *, max_grad_norm: float,
                   loss: torch.Tensor, is_finite: Callable[[dict[str, Any]], bool]
                   ) -> tuple[str, float]:
    """Unscale and clip the gradients of the backward passes just made, then step:
    (outcome, gradient norm before clipping). Gradients are cleared whatever happens.

    Under fp16, GradScaler multiplies the loss by a large scale so small gradients survive
    in half precision, and expects the scaled gradients to overflow now and then: it then
    skips that update and halves the scale. Such an overflow (finite loss, inf/NaN
    gradients, scale > 1) is counted, not treated as a bad batch. A non-finite loss, or an
    overflow at a scale <= 1, is what loss scaling cannot explain: `is_finite`
    (Run.finite_or_skip) stops the run or skips the batch. The scheduler steps only with
    the optimizer, as in transformers' Trainer.
    """
    grad_norm = gradient_norm_after_clipping(accelerator, parameters, max_grad_norm)
    scaler = getattr(accelerator, "scaler", None)  # a GradScaler under fp16, else None
    overflow = not math.isfinite(grad_norm) and scaler is not None and scaler.get_scale() > 1
    quantities = {"loss": loss} if overflow else {"loss": loss, "gradient norm": grad_norm}
    if not is_finite(quantities):  # agreed by every process (gradients are synchronised)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.update()  # forget this step's unscale_ record, or the next step raises
        return SKIPPED, grad_norm
    optimizer.step()  # under fp16: GradScaler skips the update if it found an inf
    outcome = OVERFLOW if getattr(optimizer, "step_was_skipped", False) else STEPPED
    if outcome == STEPPED:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return outcome, grad_norm


def count_outcomes(state: TrainingState, metrics: dict[str, float] | None,
                   outcomes: list[str]) -> dict[str, float]:
    """A step's metrics (None when it has none) with the running counts, kept in the
    checkpoint, of skipped batches and of fp16 overflow steps."""
    counts = {}
    for key, outcome in (("skipped_batches", SKIPPED), ("overflow_steps", OVERFLOW)):
        state.extra[key] = state.extra.get(key, 0) + outcomes.count(outcome)
        counts[f"train/{key}"] = state.extra[key]
    return (metrics or {}) | counts


def resume_command() -> str:
    """The command line that started this process, with run.resume=true added."""
    args = [a for a in sys.argv[1:] if not a.startswith("run.resume=")]
    return " ".join(["rlhf", *map(shlex.quote, args), "run.resume=true"])


def total_optimizer_steps(n_examples: int, *, batch_size: int, epochs: int,
                          max_steps: int) -> int:
    """Full batches per epoch times epochs, capped by max_steps (0: no cap)."""
    batches_per_epoch = n_examples // batch_size
    if batches_per_epoch == 0:
        raise UserError(f"train.batch_size {batch_size} is larger than the {n_examples} "
                        "training examples; lower train.batch_size")
    total = epochs * batches_per_epoch
    return min(total, max_steps) if max_steps else total


def _distributed_without_gpu() -> bool:
    """True when a launcher (torchrun, accelerate launch) started several processes on a
    machine without CUDA: accelerate then needs cpu=True to join them with gloo, or each
    process would train alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return world_size > 1 and not torch.cuda.is_available()


def _trackers(sinks: list[str], output_dir: Path, stage: str) -> list:
    """accelerate trackers for run.report_to, each writing inside the run directory:
    TensorBoard event files in RUN/tensorboard/, the W&B run folder in RUN/wandb/.

    Made here rather than named ("tensorboard") so that each gets its own place and name:
    accelerate would give both the one project name, a TensorBoard folder and a W&B project.
    The W&B run is named after the run directory, in project $WANDB_PROJECT (else "rlhf"),
    with the stage as its job type.
    """
    from accelerate.tracking import TensorBoardTracker, WandBTracker

    made = []
    for sink in sinks:
        if sink == "tensorboard":
            made.append(TensorBoardTracker("tensorboard", str(output_dir)))  # RUN/tensorboard
        else:
            made.append(WandBTracker(os.environ.get("WANDB_PROJECT") or "rlhf",
                                     dir=str(output_dir), name=output_dir.resolve().name,
                                     job_type=stage))
    return made


def _start_trackers(accelerator: Accelerator, config: Any) -> None:
    """Start the trackers and give each the resolved config in the form it can show: W&B the
    nested config; TensorBoard's hparams only flat scalars (it rejects lists and mappings),
    written beside the metrics so that TensorBoard shows one run, not a second timestamped one.
    """
    from omegaconf import OmegaConf

    try:
        accelerator.init_trackers("rlhf")
    except Exception as error:  # W&B's own errors (no API key, ...) are the user's to fix
        if type(error).__module__.split(".")[0] != "wandb":
            raise
        raise UserError(f"run.report_to: W&B could not start ({first_line(error)}); run "
                        "`wandb login`, or set WANDB_MODE=offline to keep the run on disk "
                        "(RUN/wandb/, upload later with `wandb sync`)") from None
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_hparams(_flat_config(config), {}, run_name=".")
        else:
            tracker.store_init_configuration(OmegaConf.to_container(OmegaConf.structured(config)))


def _check_sinks_installed(sinks: list[str]) -> None:
    """A missing tracker package is a set-up mistake the user can fix, said before any work."""
    import importlib.util

    for sink in sinks:
        module = {"tensorboard": "tensorboard", "wandb": "wandb"}[sink]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"run.report_to includes '{sink}' but the package is not installed; "
                            f"pip install 'rlhf[{sink}]' or remove it from run.report_to")


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (renamed into place, state file present), oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


# -- RNG state ----------------------------------------------------------------------------------


def _save_rng(path: Path) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{index}"] = state
    numpy_state = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(numpy_state[1].astype(np.int64))
    tensors["numpy_meta"] = torch.tensor([numpy_state[2], numpy_state[3]], dtype=torch.int64)
    tensors["numpy_gauss"] = torch.tensor([numpy_state[4]], dtype=torch.float64)
    save_file(tensors, str(path))


def _restore_rng(path: Path, python_state: list) -> None:
    tensors = load_file(str(path))
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all(
            [tensors[k] for k in sorted(tensors) if k.startswith("cuda")])
    position, has_gauss = tensors["numpy_meta"].tolist()
    np.random.set_state(("MT19937", tensors["numpy_keys"].numpy().astype(np.uint32),
                         position, has_gauss, float(tensors["numpy_gauss"][0])))
    version, internal, gauss = python_state
    random.setstate((version, tuple(internal), gauss))


def _python_rng() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


# -- small file helpers -------------------------------------------------------------------------


def _restore_checkpoint(path: Path, rng_file: Path, models, optimizers, schedulers,
                        unwrap, scaler=None) -> dict:
    """Load weights, optimizer/scheduler state and RNG from `path`; the saved state dict.

    Weights come from safetensors and optimizer state through torch.load(weights_only=True),
    which refuses anything but tensors and plain containers: a crafted pickle cannot run code.
    """
    for name, model in models.items():
        load_model(unwrap(model), str(path / f"{name}.safetensors"))
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(
            torch.load(path / f"optimizer-{name}.pt", weights_only=True, map_location="cpu"))
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(torch.load(path / f"scheduler-{name}.pt", weights_only=True))
    if scaler is not None and (path / SCALER_FILE).is_file():
        scaler.load_state_dict(torch.load(path / SCALER_FILE, weights_only=True))
    saved = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    _restore_rng(rng_file, saved.pop("python_rng"))
    return saved


def _crash_point(point: str, step: int) -> None:
    """Fault injection for the kill-and-resume tests: RLHF_TEST_KILL_AT=<point>:<step>[:<signal>]
    makes this process send itself SIGKILL (or the named signal) there, e.g. halfway through
    writing a checkpoint."""
    wanted = os.environ.get(KILL_POINT_VARIABLE, "").split(":")
    if wanted[:2] == [point, str(step)]:
        os.kill(os.getpid(), getattr(signal, wanted[2]) if len(wanted) > 2 else signal.SIGKILL)


def _parse_json_line(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None  # the last line of a log whose writer was killed mid-write
    return record if isinstance(record, dict) and "step" in record else None


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _flat_config(config: Any) -> dict[str, Any]:
    """Config as flat scalars for trackers (TensorBoard hparams reject nested values)."""
    from omegaconf import OmegaConf

    flat = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix.rstrip(".")] = node if isinstance(node, (int, float, str, bool)) \
                else str(node)

    walk("", OmegaConf.to_container(OmegaConf.structured(config)))
    return flat
