"""Which distributed engine accelerate runs a stage on, what rlhf supports on each, and what
a sharded engine needs from us: frozen models whole on every process, the trained model's
weights gathered for a rollout and for saving, and float32 parameters under autocast.

The engines are accelerate's own, chosen by the launcher (`accelerate launch --config_file
configs/accelerate/NAME.yaml`, or torchrun with accelerate's environment variables):

    single   one process
    ddp      several processes, each with a full replica (torchrun, ddp_2proc_cpu.yaml)
    fsdp2    accelerate's FSDP2 (`fsdp_version: 2`): the trained model's parameters, gradients
             and optimizer state sharded over processes (fsdp.yaml)

FSDP1 and DeepSpeed, and what FSDP2 cannot run, are refused at start
(`check_requested_engine`, `check_engine`: each message says why and what to use instead).
Frozen models (PPO's reference, a reward model) are never sharded: they stay whole on every
process, in eval mode, as `Run.prepare_frozen` leaves them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain

import torch
from accelerate.utils import DistributedType, broadcast

from rlhf.errors import UserError

SINGLE, DDP, FSDP1, FSDP2, DEEPSPEED = "single", "ddp", "fsdp1", "fsdp2", "deepspeed"
CPU_CONFIG = "configs/accelerate/ddp_2proc_cpu.yaml"
FSDP_CONFIG = "configs/accelerate/fsdp.yaml"
FSDP2_STAGES = frozenset({"ppo", "critic_free"})
"""Stages that save their final models from weights every process gathered
(`rl.iteration.save_models`), as FSDP2 needs. SFT and reward still save from the main process
alone, which would wait forever on a sharded model."""


def engine_of(accelerator) -> str:
    """The engine accelerate actually set up: single, ddp, fsdp1, fsdp2 or deepspeed."""
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return DEEPSPEED
    if kind == DistributedType.FSDP:
        return FSDP2 if accelerator.is_fsdp2 else FSDP1
    return DDP if accelerator.num_processes > 1 else SINGLE


def requested_engine(environ: Mapping[str, str] = os.environ) -> str | None:
    """The engine the launcher asked for through accelerate's environment variables
    (`accelerate launch` sets them from the config file): 'fsdp', 'deepspeed' or None."""
    if environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return DEEPSPEED
    if environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    return None


def is_sharded(accelerator) -> bool:
    """True when the trained model's parameters are split over processes (FSDP2)."""
    return engine_of(accelerator) == FSDP2


def trained_networks(stage: str, config) -> int:
    """How many networks a stage trains: two for PPO with model.value=separate (policy and
    value model), else one (SFT, reward, critic-free, PPO with a shared value head)."""
    model = getattr(config, "model", None)
    return 2 if stage == "ppo" and getattr(model, "value", None) == "separate" else 1


def check_requested_engine(environ: Mapping[str, str] = os.environ) -> None:
    """Refuse DeepSpeed before the Accelerator is made (accelerate would first fail to import
    it where it is not installed, with a traceback instead of the reason)."""
    if requested_engine(environ) == DEEPSPEED:
        raise UserError(
            "DeepSpeed is not supported: rlhf's updates accumulate micro-batches under "
            "accelerator.no_sync and step through engine.optim.optimizer_step (clip, NaN "
            "guard, skip), while DeepSpeed ZeRO-2/3 forbid no_sync and take the optimizer step "
            f"inside accelerator.backward. Shard with FSDP instead ({FSDP_CONFIG}), or "
            f"replicate with DDP ({CPU_CONFIG})")


def check_engine(accelerator, *, stage: str, config,
                 environ: Mapping[str, str] = os.environ) -> None:
    """Refuse, before any model loads, an engine rlhf cannot run correctly: `stage` is the
    run's stage name and `config` its configuration."""
    engine, asked = engine_of(accelerator), requested_engine(environ)
    if engine == DEEPSPEED:
        check_requested_engine({"ACCELERATE_USE_DEEPSPEED": "true"})
    if asked == "fsdp" and engine not in (FSDP1, FSDP2):
        raise UserError(
            "FSDP was asked for (ACCELERATE_USE_FSDP=true) but accelerate set up "
            f"{engine.upper()}: accelerate runs FSDP only on GPUs (or other accelerators) and "
            f"falls back to DDP without telling on a CPU. Launch with {CPU_CONFIG} here, or "
            "unset ACCELERATE_USE_FSDP")
    if engine == FSDP1:
        raise UserError(
            "FSDP1 (fsdp_version: 1) is not supported: rlhf builds the optimizer before "
            "accelerator.prepare, and accelerate re-points an existing optimizer at the sharded "
            f"parameters only for FSDP2; set fsdp_version: 2 (as {FSDP_CONFIG} does)")
    if engine == FSDP2:
        _check_fsdp2(accelerator, stage, config)


def _check_fsdp2(accelerator, stage: str, config) -> None:
    """What rlhf needs from an FSDP2 run: a stage that gathers before saving, checkpoints
    that load without pickle, one trained network, and forward passes through its root."""
    from torch.distributed.fsdp import StateDictType

    if stage not in FSDP2_STAGES:
        raise UserError(
            f"train-{stage.replace('_', '-')} does not run under FSDP yet: it saves its final "
            "model from the main process alone, and a sharded model must be gathered by every "
            f"process first. Train it with DDP ({CPU_CONFIG}, or torchrun)")
    if accelerator.state.fsdp_plugin.state_dict_type != StateDictType.FULL_STATE_DICT:
        raise UserError(
            "fsdp_state_dict_type must be FULL_STATE_DICT: a sharded checkpoint "
            "(torch.distributed.checkpoint) reads its metadata with pickle, and rlhf resumes "
            "only from files that load without unpickling (safetensors, weights_only)")
    if trained_networks(stage, config) > 1:
        raise UserError(
            "PPO with model.value=separate trains two networks, and accelerate's FSDP2 shards "
            "one model per prepare call: set model.value=shared (one backbone with a value "
            f"head), or train with DDP ({CPU_CONFIG}, or torchrun)")
    if stage == "ppo" and getattr(getattr(config, "lora", None), "r", 0):
        raise UserError(
            "PPO with model.value=shared and LoRA does not run under FSDP: its reference is "
            "the LM inside the sharded policy-with-value-head with the adapters off, and FSDP2 "
            "runs a sharded model only through its outermost module. Set lora.r=0 (the "
            "reference is then a frozen copy), or train with DDP")


def keep_float32_parameters(accelerator) -> None:
    """Under FSDP2 with mixed precision, keep the trained model's parameters in float32 and
    compute under autocast, as one process and DDP do, instead of the bf16/fp16 parameters
    accelerate would give FSDP. Frozen models run under the same autocast (`Run.prepare_frozen`);
    with FSDP casting only the policy, the first KL to its equal reference was 5e-4 instead of
    0 (critic-free tiny, bf16). The price: all-gathers and gradient reductions in float32,
    twice the traffic of bf16 ones."""
    if engine_of(accelerator) == FSDP2 and accelerator.mixed_precision != "no":
        from torch.distributed.fsdp import MixedPrecisionPolicy

        accelerator.state.fsdp_plugin.mixed_precision_policy = MixedPrecisionPolicy()


@contextmanager
def whole_while_sampling(accelerator, models: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Under FSDP2, the trained models' weights kept whole, once gathered, for the block (a
    rollout), so that only its first forward pass needs collectives. Each process samples
    until its own rows stop (stop token, length limit): with an all-gather in every forward,
    a process that stopped first left the others waiting forever. This holds whichever model
    samples (the policy, or a LoRA reference that is the policy with its adapters off). The
    first forward (the prompts') is one every process makes. Costs one whole copy of the
    models per process during the rollout, and saves an all-gather per layer per sampled token
    (TRL gathers ZeRO-3 weights for generation the same way). Elsewhere a no-op."""
    from torch.distributed.fsdp import FSDPModule

    roots = [m for m in models if isinstance(m, FSDPModule)] if is_sharded(accelerator) else []
    if not roots:
        yield
        return
    units = [u for root in roots for u in root.modules() if isinstance(u, FSDPModule)]
    for root in roots:
        root.set_reshard_after_forward(False)  # every unit keeps what it gathers
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()  # local: frees the gathered weights
        # back to sharding after forward as configured; a root never does (torch's and
        # accelerate's choice: its weights are needed again at once by the backward pass)
        configured = bool(accelerator.state.fsdp_plugin.reshard_after_forward)
        for unit in units:
            unit.set_reshard_after_forward(configured and unit not in roots, recurse=False)


# -- frozen models --------------------------------------------------------------------------


def materialise_from_main(model: torch.nn.Module, accelerator) -> torch.nn.Module:
    """A frozen model whole on every process, with the main process's weights.

    With `fsdp_cpu_ram_efficient_loading`, transformers 4.x reads the weights on the main
    process only and leaves the other processes' models on the meta device; accelerate fills
    in the models it shards, but not one that stays whole. Here the other processes allocate
    it on their device and receive every parameter and buffer from the main process. A no-op
    unless some process holds meta tensors (transformers 5.24 reads the weights everywhere).
    """
    has_meta = any(t.is_meta for t in _tensors(model))
    flag = torch.tensor([float(has_meta)], device=accelerator.device)
    if accelerator.num_processes == 1 or not accelerator.reduce(flag, reduction="sum").item():
        return model
    model = model.to_empty(device=accelerator.device) if has_meta else model.to(accelerator.device)
    with torch.no_grad():  # the same names in the same order on every process
        for tensor in _tensors(model):
            tensor.copy_(broadcast(tensor.detach().clone(), from_process=0))
    if has_meta and hasattr(model, "tie_weights"):
        model.tie_weights()  # to_empty gave each tied use its own tensor
    return model


def _tensors(model: torch.nn.Module):
    """Every parameter and buffer, tied ones once per use (so that a model whose ties
    `to_empty` undid lists the same names as one whose ties hold)."""
    return [t for _, t in chain(model.named_parameters(remove_duplicate=False),
                                model.named_buffers(remove_duplicate=False))]


# -- saving ---------------------------------------------------------------------------------


def full_state_dict(accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """Under a sharded engine, the model's full weights on the main process (an empty dict
    on the others); None where each process holds them whole anyway. Every process must
    call it: gathering is collective."""
    if not is_sharded(accelerator):
        return None
    return accelerator.get_state_dict(model)
