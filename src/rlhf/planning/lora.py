"""LoRA's parameter count, by peft's rules, from a model's shape (no peft model is built).

A LoRA adapter on a linear layer of `in` inputs and `out` outputs adds A (r x in) and
B (out x r): r * (in + out) trainable parameters (Hu et al. 2021). Which layers get one follows
peft (0.21): a name in `target_modules` matches a module whose name is that name or ends in
'.' + that name; 'all-linear' takes every linear and Conv1D layer except the causal LM's output
projection. A sequence classifier's head (`score`, `classifier`) is never adapted: peft trains
it in full as a 'module to save', a trainable copy beside the frozen original
(tests/planning/test_lora_count.py checks these counts against peft's own).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.errors import UserError
from rlhf.planning.shapes import Linear, ModelShape

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraShape:
    """What LoRA puts on one model: its adapted layers and its trainable parameters."""

    adapted: tuple[Linear, ...]
    adapter_params: int
    """r * (in + out) summed over the adapted layers."""
    head_params: int
    """The classifier head trained in full (0 for a causal LM); it is also held twice."""

    @property
    def trainable(self) -> int:
        return self.adapter_params + self.head_params

    @property
    def added(self) -> int:
        """Parameters LoRA adds to the model in memory: adapters and the head's copy."""
        return self.adapter_params + self.head_params


def targeted(shape: ModelShape, target_modules: list[str] | tuple[str, ...]) -> list[Linear]:
    """The linear layers that get adapters (peft's name matching; see the module docstring)."""
    targets = list(target_modules)
    if targets == [ALL_LINEAR]:
        return list(shape.linears)
    return [layer for layer in shape.linears
            if any(layer.name == t or layer.name.endswith("." + t) for t in targets)]


def lora_shape(shape: ModelShape, r: int,
               target_modules: list[str] | tuple[str, ...]) -> LoraShape:
    """Adapters of rank `r` on `shape`; a target list that matches no layer is the user's
    mistake, named by its key as peft would refuse it at load."""
    adapted = targeted(shape, target_modules)
    if not adapted:
        raise UserError(f"config key 'lora.target_modules': {list(target_modules)} matches no "
                        f"linear layer of '{shape.name}' (e.g. {_examples(shape)}); use "
                        "[all-linear] or names from the model")
    return LoraShape(adapted=tuple(adapted),
                     adapter_params=sum(r * (layer.in_features + layer.out_features)
                                        for layer in adapted),
                     head_params=shape.head_params)


def _examples(shape: ModelShape) -> str:
    """A few distinct layer names of the model, without their layer numbers."""
    names = []
    for layer in shape.linears:
        short = layer.name.rsplit(".", 1)[-1]
        if short not in names:
            names.append(short)
    return ", ".join(names[:6])


def adapters_per_layer(lora: LoraShape, layers: int) -> float:
    """Adapted linear layers per transformer layer (each keeps one (tokens, r) activation)."""
    return len(lora.adapted) / max(layers, 1)
