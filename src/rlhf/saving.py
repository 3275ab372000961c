"""Writing a trained model's final folders atomically: a plain `save_pretrained` folder, and for
a LoRA model also its adapters (`<name>-adapter`, peft's format) beside the merged weights.

A crash never leaves a half-written folder under the final name: each is written under a
temporary name and renamed into place.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from transformers import PreTrainedModel

from rlhf.adapters import has_adapters, merged_copy, save_adapters


def save_trained(model, tokenizer, path: str | Path, extra_config: dict | None = None, *,
                 merge: bool = True) -> list[Path]:
    """The folders a user loads after training, written atomically; returns them.

    A plain model goes to `path`. A LoRA model writes its adapters (with the tokenizer and the
    base's config) to `<path>-adapter`, and, unless `merge` is false, the adapters merged into
    the weights to `path`, which plain transformers loads.
    """
    path = Path(path)
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
