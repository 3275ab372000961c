"""One training run: accelerate, seeding, the run directory, metrics.jsonl and the sinks,
signals (checkpoint and stop), the NaN/inf policy, and checkpoints (`engine.checkpoint`)."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from safetensors import SafetensorError

from rlhf.config import RunConfig, to_yaml
from rlhf.engine.checkpoint import (
    TrainingState,
    checkpoint_engine,
    crash_point,
    list_checkpoints,
    read_checkpoint,
    write_checkpoint,
)
from rlhf.engine.engines import (
    check_engine,
    check_requested_engine,
    engine_of,
    is_sharded,
    keep_float32_parameters,
    materialise_from_main,
    whole_while_sampling,
)
from rlhf.engine.host_memory import keep_freed_host_memory
from rlhf.engine.sinks import check_sinks_installed, make_trackers, start_trackers
from rlhf.errors import NonFiniteError, StoppedBySignal, UserError, first_line
from rlhf.planning import STAGE_NAMES, plan_lines
from rlhf.precision import cpu_has_fast_bf16, store_matmul_weights_in

LOG_FILES = ("metrics.jsonl", "samples.jsonl")
"""Per-step logs (JSON lines with a "step"): cut back to the checkpoint on resume."""


def resolve_mixed_precision(setting: str) -> str:
    """'auto' means bf16 on a CUDA device that supports it and full precision elsewhere."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


class Run:
    """One training run: its Accelerator, directory, metric sinks and checkpoints.

    Nothing is written until `start`, which a stage calls once its models, data and optimizer
    are ready: a bad input found while loading them never touches the run directory.
    """

    def __init__(self, run_config: RunConfig, config: Any, *, stage: str):
        check_sinks_installed(run_config.report_to)
        self.config = run_config
        self.full_config = config
        self.output_dir = Path(run_config.output_dir)
        # accelerate keeps one process-wide state and refuses a second Accelerator with other
        # settings (a notebook running a bf16 stage after an fp32 one); each run sets its own.
        # The process group (PartialState) is kept.
        AcceleratorState._reset_state()
        check_requested_engine()
        self.accelerator = Accelerator(
            cpu=_distributed_without_gpu(),
            mixed_precision=resolve_mixed_precision(run_config.mixed_precision),
            log_with=make_trackers(run_config.report_to, self.output_dir, stage) or None,
            project_dir=str(self.output_dir),
        )
        if self.accelerator.mixed_precision == "fp16" and not self.accelerator.native_amp:
            raise UserError("run.mixed_precision=fp16 needs a GPU: on this device accelerate "
                            "would silently train in float32; use bf16 or no")
        check_engine(self.accelerator, stage=stage, config=config)
        keep_float32_parameters(self.accelerator)
        if self.accelerator.device.type == "cpu":
            if run_config.keep_host_memory:
                keep_freed_host_memory()
            if self.accelerator.mixed_precision == "bf16" and not cpu_has_fast_bf16() \
                    and self.accelerator.is_main_process:
                print("[rlhf] run.mixed_precision=bf16 on a CPU without AMX or AVX512-BF16 "
                      "units: bf16 is emulated there and not expected to be faster than "
                      "float32 (run.mixed_precision=no)", flush=True)
        # Each process seeds every stream with seed + rank (rlhf.seeding).
        set_seed(run_config.seed + self.accelerator.process_index)
        self.stage = stage
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self._logged: set[tuple[int, tuple[str, ...]]] = set()
        self._stop_signal: int | None = None
        self._trained: list[torch.nn.Module] = []
        self._previous_handlers: dict[int, Any] = {}
        if list_checkpoints(self.output_dir) and not self.config.resume:
            raise UserError(f"run directory {self.output_dir} already has checkpoints; pass "
                            "run.resume=true to continue it or choose another run.output_dir")
        if self.is_main and stage in STAGE_NAMES:  # before any model loads: will it fit?
            for line in plan_lines(stage, config, self.accelerator.num_processes,
                                   self.device.type):
                print(line, flush=True)

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
        sequence at GPT-2 scale instead of 0. Under bf16/fp16 the weights of its matrix
        multiplies are stored in that dtype (`precision.store_matmul_weights_in`): the same
        numbers as autocast's per-call casts, without the casts, in half the memory.

        Under FSDP it stays whole on every process (`engines.materialise_from_main` fills in
        the processes where loading left it on the meta device), and is put on the device
        here: accelerate leaves placement under FSDP to the sharding, which it skips.
        """
        model.eval().requires_grad_(False)
        model = materialise_from_main(model, self.accelerator)
        model = store_matmul_weights_in(model, self.accelerator.mixed_precision)
        return self.accelerator.prepare_model(model, device_placement=True, evaluation_mode=True)

    def prepare_trained(self, *objects):
        """`accelerator.prepare` of the trained models and their optimizer. Under bf16/fp16 the
        frozen matrix-multiply weights inside a trained model (a LoRA model's base and its tied
        LM head) are first stored in that dtype, as a frozen model's are (`prepare_frozen`):
        autocast caches only the casts of weights that train, so it would cast these again at
        every call, every sampled token included. Not under FSDP, which shards parameters of
        one dtype per unit."""
        if not is_sharded(self.accelerator):
            for model in objects:
                if isinstance(model, torch.nn.Module):
                    store_matmul_weights_in(model, self.accelerator.mixed_precision)
        return self.accelerator.prepare(*objects)

    def trained_models_whole(self):
        """A context for a rollout: under FSDP2 the trained models' weights are gathered for
        its duration, so processes may take different numbers of sampling steps
        (`engines.whole_while_sampling`); elsewhere it does nothing."""
        return whole_while_sampling(self.accelerator, self._trained)

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
            start_trackers(self.accelerator, self.full_config)
        self.accelerator.wait_for_everyone()
        self._trained = list(models.values())
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
        crash_point("after_step", state.step)
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
        """Write checkpoint-<step> atomically and prune old ones (keeps the newest K)."""
        return write_checkpoint(self.output_dir, state, models, optimizers, schedulers,
                                accelerator=self.accelerator, keep_last=self.config.keep_last)

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
        self._check_same_engine(path)
        rng_file = path / f"rng-{self.accelerator.process_index}.safetensors"
        if not rng_file.is_file():
            raise UserError(f"{path} was written by a run with a different number of "
                            f"processes (no {rng_file.name}); resume with the same number")
        try:
            saved = read_checkpoint(path, rng_file, models, optimizers, schedulers,
                                    accelerator=self.accelerator)
        except (OSError, RuntimeError, ValueError, KeyError, SafetensorError,
                pickle.UnpicklingError) as error:  # JSONDecodeError is a ValueError
            raise UserError(f"checkpoint {path} cannot be read ({first_line(error)}); delete "
                            "it to resume from the one before, or start a new run") from None
        self._truncate_logs(step)
        if self.is_main:
            print(f"[rlhf] resumed from {path}", flush=True)
        return TrainingState(**saved)

    def _check_same_engine(self, path: Path) -> None:
        """A checkpoint holds its weights whole (one process, DDP) or in FSDP2's form; it is
        resumed under the same kind of engine."""
        written, now = checkpoint_engine(path), engine_of(self.accelerator)
        if written is not None and (written == "fsdp2") != is_sharded(self.accelerator):
            raise UserError(f"{path} was written under {written} and this run uses {now}; "
                            "resume with the launcher and accelerate config that wrote it")

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


def resume_command() -> str:
    """The command line that started this process, with run.resume=true added."""
    args = [a for a in sys.argv[1:] if not a.startswith("run.resume=")]
    return " ".join(["rlhf", *map(shlex.quote, args), "run.resume=true"])


def _distributed_without_gpu() -> bool:
    """True when a launcher (torchrun, accelerate launch) started several processes on a
    machine without CUDA: accelerate then needs cpu=True to join them with gloo, or each
    process would train alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return world_size > 1 and not torch.cuda.is_available()


def _parse_json_line(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None  # the last line of a log whose writer was killed mid-write
    return record if isinstance(record, dict) and "step" in record else None


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value
