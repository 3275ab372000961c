"""What of a loaded model trains: every weight, or LoRA adapters on a frozen (maybe 4-bit) base;
and whether its activations are recomputed in the backward pass (gradient checkpointing)."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from rlhf.adapters import adapter_args, add_adapters, prepare_quantized


def _checkpoint_activations(model: PreTrainedModel) -> None:
    """Non-reentrant checkpointing of every layer (the method's name since transformers 5.2x)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def ready_to_train(model: PreTrainedModel, *, lora, gradient_checkpointing: bool,
                   classifier: bool = False, base_name: str | None = None) -> nn.Module:
    """A loaded model as a stage trains it: with LoRA adapters when `lora.r` > 0 (base frozen)
    and with gradient checkpointing when asked: transformers' non-reentrant kind, which also
    gives gradients to adapters in a layer whose input needs none (a frozen embedding); it acts
    only in training mode, so generation (in eval mode) keeps its KV cache."""
    if gradient_checkpointing:
        _checkpoint_activations(model)
    if lora is None or not lora.r:
        return model
    if lora.quantize != "none":
        model = prepare_quantized(model)
    return add_adapters(model, **adapter_args(lora), classifier=classifier, base_name=base_name)
