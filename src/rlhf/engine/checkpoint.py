"""Atomic checkpoints and exact resume.

A checkpoint `checkpoint-<step>/` holds, for each named model, its trained weights (safetensors;
for a LoRA model only the adapters and any trained head), its optimizer and scheduler state,
the fp16 loss scale, the trainer state (step, data position, KL controller, ...) as JSON and
every process's RNG states. It is written under a temporary name
and renamed into place, so resume never sees a half-written one. Nothing is ever unpickled:
weights load from safetensors and optimizer state with `torch.load(weights_only=True)`.

Under FSDP2 (`engine.engines`) the trained model and its optimizer state are split over the
processes; they go through accelerate's FSDP checkpoint functions instead (`<name>-fsdp/` and
`optimizer-<name>-fsdp/`): with FULL_STATE_DICT, the only kind rlhf accepts, every process
takes part in gathering them and the main process writes them with torch.save, read back with
weights_only=True and scattered again, exactly. The state file names the engine, and a
checkpoint is resumed only under the kind of engine that wrote it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import (
    load_fsdp_model,
    load_fsdp_optimizer,
    save_fsdp_model,
    save_fsdp_optimizer,
)
from safetensors.torch import load_file, load_model, save_file, save_model

from rlhf.engine.engines import engine_of, is_sharded

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
SCALER_FILE = "scaler.pt"
KILL_POINT_VARIABLE = "RLHF_TEST_KILL_AT"


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


def write_checkpoint(output_dir: Path, state: TrainingState, models: dict[str, torch.nn.Module],
                     optimizers: dict[str, Any], schedulers: dict[str, Any], *, accelerator,
                     keep_last: int) -> Path:
    """Write checkpoint-<step> atomically and prune old ones (keeps the newest `keep_last`).

    Everything goes to .checkpoint-<step>.tmp, is fsynced, then renamed into place; the
    state file is written last, so a directory without it is never taken for complete.
    """
    final = output_dir / f"checkpoint-{state.step}"
    tmp = output_dir / f".checkpoint-{state.step}.tmp"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save_rng(tmp / f"rng-{accelerator.process_index}.safetensors")
    if is_sharded(accelerator):  # every process takes part
        _save_sharded(tmp, models, optimizers, accelerator)
        models, optimizers = {}, {}
    if main:
        _write_state(tmp, state, models, optimizers, schedulers, accelerator)
    accelerator.wait_for_everyone()
    if main:
        _fsync_tree(tmp)
        crash_point("checkpoint_rename", state.step)
        if final.exists():  # the same step saved again: move the old one aside first
            stale = output_dir / f".checkpoint-{state.step}.old"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)
            os.replace(tmp, final)
            shutil.rmtree(stale)
        else:
            os.replace(tmp, final)
        _fsync_dir(output_dir)
        crash_point("checkpoint_prune", state.step)
        for _, path in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _write_state(folder: Path, state: TrainingState, models, optimizers, schedulers,
                 accelerator) -> None:
    """Weights, optimizer, scheduler and loss-scale state, then the state file (last)."""
    for name, model in models.items():
        save_weights(accelerator.unwrap_model(model), folder / f"{name}.safetensors")
    crash_point("checkpoint_weights", state.step)
    for name, optimizer in optimizers.items():
        torch.save(optimizer.state_dict(), folder / f"optimizer-{name}.pt")
    for name, scheduler in schedulers.items():
        torch.save(scheduler.state_dict(), folder / f"scheduler-{name}.pt")
    if accelerator.scaler is not None:  # fp16 loss scale: part of exact resume
        torch.save(accelerator.scaler.state_dict(), folder / SCALER_FILE)
    _write_json(folder / STATE_FILE, vars(state) | {"python_rng": _python_rng(),
                                                     "engine": engine_of(accelerator)})


def _save_sharded(folder: Path, models, optimizers, accelerator) -> None:
    """FSDP2: the trained model and its optimizer through accelerate's FSDP functions."""
    plugin, model = accelerator.state.fsdp_plugin, _only(models)
    for name, each in models.items():
        save_fsdp_model(plugin, accelerator, each, folder / f"{name}-fsdp")
    for name, optimizer in optimizers.items():
        save_fsdp_optimizer(plugin, accelerator, optimizer, model, folder / f"optimizer-{name}-fsdp")


def _load_sharded(folder: Path, models, optimizers, accelerator) -> None:
    plugin, model = accelerator.state.fsdp_plugin, _only(models)
    for name, each in models.items():
        load_fsdp_model(plugin, accelerator, each, folder / f"{name}-fsdp")
    for name, optimizer in optimizers.items():
        load_fsdp_optimizer(plugin, accelerator, optimizer, model, folder / f"optimizer-{name}-fsdp")


def _only(models: dict[str, torch.nn.Module]) -> torch.nn.Module:
    """The one trained model an FSDP2 run has (`engines.check_engine` refuses two)."""
    if len(models) != 1:
        raise RuntimeError(f"FSDP2 checkpoints hold one trained model, not {sorted(models)}")
    return next(iter(models.values()))


def checkpoint_engine(path: Path) -> str | None:
    """The engine that wrote a checkpoint (one from before engines were recorded was written
    with every model whole on each process: one process or DDP); None when the state file
    cannot be read (`read_checkpoint` then says so)."""
    try:
        saved = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved.get("engine", "ddp") if isinstance(saved, dict) else None


def read_checkpoint(path: Path, rng_file: Path, models, optimizers, schedulers, *,
                    accelerator) -> dict:
    """Load weights, optimizer/scheduler state, the loss scale and RNG from `path`; the saved
    state dict.

    Weights come from safetensors and optimizer state through torch.load(weights_only=True),
    which refuses anything but tensors and plain containers: a crafted pickle cannot run code.
    """
    if is_sharded(accelerator):  # every process takes part
        _load_sharded(path, models, optimizers, accelerator)
        models, optimizers = {}, {}
    for name, model in models.items():
        load_weights(accelerator.unwrap_model(model), path / f"{name}.safetensors")
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(
            torch.load(path / f"optimizer-{name}.pt", weights_only=True, map_location="cpu"))
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(torch.load(path / f"scheduler-{name}.pt", weights_only=True))
    if accelerator.scaler is not None and (path / SCALER_FILE).is_file():
        accelerator.scaler.load_state_dict(torch.load(path / SCALER_FILE, weights_only=True))
    saved = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    saved.pop("engine", None)
    _restore_rng(rng_file, saved.pop("python_rng"))
    return saved


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """The weights that train: the whole model, or only the trainable parameters of a model
    with a frozen part (LoRA: the adapters and a trained head, not the base it never
    changes)."""
    parameters = dict(model.named_parameters())
    if all(p.requires_grad for p in parameters.values()):
        save_model(model, str(path))  # handles tied weights
        return
    save_file({name: p.detach().contiguous() for name, p in parameters.items()
               if p.requires_grad}, str(path))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Restore what `save_weights` wrote; a file whose names are not exactly the trainable
    parameters (another LoRA rank or target, or a full model) is refused."""
    parameters = dict(model.named_parameters())
    if all(p.requires_grad for p in parameters.values()):
        load_model(model, str(path))
        return
    saved = load_file(str(path))
    trained = {name for name, p in parameters.items() if p.requires_grad}
    if set(saved) != trained:
        raise ValueError(f"{path.name} holds {len(saved)} tensors, not the {len(trained)} "
                         "trainable ones of this model (was it saved with other LoRA settings?)")
    with torch.no_grad():
        for name, tensor in saved.items():
            parameters[name].copy_(tensor)


def crash_point(point: str, step: int) -> None:
    """Fault injection for the kill-and-resume tests: RLHF_TEST_KILL_AT=<point>:<step>[:<signal>]
    makes this process send itself SIGKILL (or the named signal) there, e.g. halfway through
    writing a checkpoint."""
    wanted = os.environ.get(KILL_POINT_VARIABLE, "").split(":")
    if wanted[:2] == [point, str(step)]:
        os.kill(os.getpid(), getattr(signal, wanted[2]) if len(wanted) > 2 else signal.SIGKILL)


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
