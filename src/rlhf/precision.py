"""Half-precision weights for models that only run, and whether this CPU multiplies bf16 fast.

Under autocast a matrix multiply casts its float32 weight to bf16 (or fp16) at every call.
A trained model's weights are cast once per autocast block (autocast caches casts of leaf
tensors that require grad), but a frozen model's weights (PPO's reference, a reward model, a
DPO reference) are cast again at every call: a whole model's worth of copying per forward.
Storing those weights in the autocast dtype once skips that work and halves their memory,
and changes no number: autocast would have rounded the same float32 values the same way
(`Tensor.to`, round to nearest even) before the same kernel. Everything autocast leaves in
float32 (embeddings, norms, the residual stream) stays float32, so a frozen model computes
bit for bit what the trained model computes under autocast, and KL(policy || reference) at
the first iteration stays exactly 0.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""accelerate's `mixed_precision` names and the dtype their autocast multiplies in."""

FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of the x86 units that multiply bf16 matrices natively (AMX tiles,
AVX512-BF16 dot products); oneDNN uses them for bf16 matmuls. Without either, bf16 on a CPU
is emulated through float32 and is not expected to be faster."""


def _autocast_multiplies(module: nn.Module) -> bool:
    """True for the layers whose forward is one matrix multiply that autocast runs in half
    precision with all its tensor arguments cast: `nn.Linear` (F.linear) and transformers'
    GPT-2-style `Conv1D` (torch.addmm). Subclasses (bitsandbytes' 4-bit layers, peft's LoRA
    layers) compute otherwise and are left alone."""
    if type(module) is nn.Linear:
        return True
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith(
        "transformers.")


def _matmul_tensors(model: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """(module, 'weight' or 'bias', tensor) of every autocast matrix multiply in `model`,
    listed before any is replaced."""
    return [(module, name, getattr(module, name)) for module in model.modules()
            if _autocast_multiplies(module) for name in ("weight", "bias")
            if getattr(module, name, None) is not None]


def store_matmul_weights_in(model: nn.Module, precision: str) -> nn.Module:
    """`model` with the frozen float32 weights and biases of its autocast matrix multiplies
    stored in `precision`'s dtype ('bf16' or 'fp16'; 'no' changes nothing): all of a frozen
    model's, a LoRA model's frozen base (and its tied LM head), never a tensor that trains.
    Only for a model that always runs under that autocast.

    A weight shared with an embedding (GPT-2's tied LM head) is not cast in place: the LM head
    gets its own half-precision copy and the embedding keeps the float32 table, whose lookups
    autocast never casts.
    """
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return model
    for module, name, tensor in _matmul_tensors(model):
        if tensor.dtype == torch.float32 and not tensor.requires_grad:
            # A new Parameter, not an in-place cast: a tied embedding keeps its float32 table.
            setattr(module, name, nn.Parameter(tensor.detach().to(dtype), requires_grad=False))
    return model


def matmul_weights_in_float32(model: nn.Module) -> nn.Module:
    """Undo `store_matmul_weights_in` on `model` (a copy about to be merged and saved): its
    half-precision linear weights back in float32, the rounded values autocast trained
    against, and a tied LM head tied again to its float32 embedding table."""
    for module, name, tensor in _matmul_tensors(model):
        if tensor.dtype in AUTOCAST_DTYPES.values():
            setattr(module, name, nn.Parameter(tensor.detach().float(),
                                               requires_grad=tensor.requires_grad))
    for inner in model.modules():  # the transformers model inside any wrapper
        if getattr(getattr(inner, "config", None), "tie_word_embeddings", False) and hasattr(
                inner, "get_output_embeddings") and inner.get_output_embeddings() is not None:
            inner.get_output_embeddings().weight = inner.get_input_embeddings().weight
            break
    return model


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """True when this x86 CPU has AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo; False
    where it cannot be read, e.g. on macOS or Windows)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return any(flag in flags for flag in FAST_BF16_FLAGS)
    return False


def attention_for(setting: str, device_type: str, precision: str) -> str | None:
    """The attention implementation `model.attention` asks for on this device and precision;
    None leaves transformers' own choice (SDPA).

    'auto' picks eager attention on a CPU under bf16: there torch's SDPA kernel has no fast
    bf16 backward, and a GPT-2-small PPO epoch ran 1.3x faster with eager attention (3.3 s
    against 4.3 s, AMX Xeon, batch 8 x 96 tokens; BENCHMARKS.md). In float32 the two were
    within 5 %, and on a GPU SDPA's fused kernels win, so 'auto' keeps SDPA there.
    """
    if setting != "auto":
        return setting
    return "eager" if device_type == "cpu" and precision == "bf16" else None
