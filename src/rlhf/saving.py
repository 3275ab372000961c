"""Writing a trained model's final folders atomically: a plain `save_pretrained` folder, and for
a LoRA model also its adapters (`<name>-adapter`, peft's format) beside the merged weights.

A crash never leaves a half-written folder under the final name: each is written under a
temporary name and renamed into place.

A model sharded over processes (FSDP2) is saved from its full weights, gathered beforehand by
every process (`engine.engines.full_state_dict`): the main process rebuilds the same
structure without weights and fills it with them, a plain model the usual savers write.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path

import torch
from accelerate import init_empty_weights
from transformers import PreTrainedModel

from rlhf.adapters import has_adapters, merged_copy, save_adapters


def save_trained(model, tokenizer, path: str | Path, extra_config: dict | None = None, *,
                 merge: bool = True, state_dict: dict | None = None) -> list[Path]:
    """The folders a user loads after training, written atomically; returns them.

    A plain model goes to `path`. A LoRA model writes its adapters (with the tokenizer and the
    base's config) to `<path>-adapter`, and, unless `merge` is false, the adapters merged into
    the weights to `path`, which plain transformers loads. `state_dict`: the full weights of a
    model whose parameters are sharded (None for a model that holds its own).
    """
    path = Path(path)
    if state_dict is not None:
        model = plain_copy(model, state_dict)
    elif is_sharded_model(model):  # fail at once: saving it here would wait for the others
        raise RuntimeError("this model's weights are sharded over processes (FSDP2): gather "
                           "them on every process first (engine.engines.full_state_dict) and "
                           "pass them as state_dict")
    if not has_adapters(model):
        return [save_pretrained_atomic(model, tokenizer, path, extra_config)]
    adapter = path.with_name(path.name + "-adapter")
    written = [write_atomic(adapter, lambda tmp: save_adapters(model, tokenizer, tmp,
                                                               extra_config or {}))]
    if merge:
        written.append(save_pretrained_atomic(merged_copy(model), tokenizer, path, extra_config))
    return written


def save_pretrained_atomic(model: PreTrainedModel, tokenizer, path: str | Path,
                           extra_config: dict | None = None) -> Path:
    """save_pretrained model and tokenizer (with `extra_config` keys set on the model's
    config) into `path`, atomically."""
    for key, value in (extra_config or {}).items():
        setattr(model.config, key, value)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    return write_atomic(Path(path), write)


def write_atomic(final: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` fills a temporary folder, which is then renamed to `final`."""
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def plain_copy(model: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """An unsharded model on the CPU of the same classes as `model` (a sharded one, whose
    classes FSDP2 replaced by subclasses), holding `state_dict`: built without weights
    (`init_empty_weights`: buffers are made as usual) and given the tensors as they are."""
    lora = getattr(model, "peft_config", None) if has_adapters(model) else None
    base = model.get_base_model() if lora else model
    with init_empty_weights():
        plain = _plain_class(base)(base.config)
        if lora:
            from peft import get_peft_model

            plain = get_peft_model(plain, deepcopy(lora[model.active_adapter]))
    plain.load_state_dict(state_dict, strict=True, assign=True)
    if hasattr(plain, "tie_weights"):
        plain.tie_weights()
    return plain.eval()


def is_sharded_model(model: torch.nn.Module) -> bool:
    """True when the model's parameters are shards of a distributed tensor (FSDP2)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without public DTensors has no FSDP2 either
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def _plain_class(module: torch.nn.Module) -> type:
    """The module's own class, before FSDP2 swapped in its `FSDP<Name>` subclass."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(module).__mro__ if not issubclass(c, FSDPModule))
