"""LoRA adapters through peft: adding them, the base model with them switched off, QLoRA's 4-bit
base, and saving them (as adapters, and merged into a plain transformers folder).

With LoRA (Hu et al. 2021) only low-rank updates B A of the chosen layers train; the base
weights stay frozen. An RL run's reference policy is therefore the policy itself with its
adapters switched off (`AdaptersOff`): no second copy of the weights in memory, and it can never
drift. peft is imported only when adapters are used.
"""

from __future__ import annotations

import copy
import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from rlhf.errors import UserError
from rlhf.precision import matmul_weights_in_float32

ADAPTER_CONFIG = "adapter_config.json"
"""The file peft writes into an adapter folder (and looks for when loading one)."""


def adapter_args(lora) -> dict:
    """The adapter shape of a `lora` config section as `add_adapters` keywords."""
    return {"r": lora.r, "alpha": lora.alpha, "dropout": lora.dropout,
            "target_modules": list(lora.target_modules)}


def add_adapters(model: nn.Module, *, r: int, alpha: float, dropout: float,
                 target_modules: list[str], classifier: bool = False,
                 base_name: str | None = None) -> nn.Module:
    """`model` as a peft model whose only trainable parameters are LoRA adapters (and, for a
    sequence classifier, its freshly trained scalar head, which peft keeps in full).

    At creation every B is zero, so the model computes exactly what the base computes: an RL
    run's policy equals its reference (KL exactly 0) until the first optimizer step.
    `base_name` (the hub name or folder the base came from) is recorded in the adapter config
    so that the saved adapters name their base; a local folder is recorded as an absolute path.
    """
    peft = _peft()
    targets = target_modules[0] if list(target_modules) == ["all-linear"] else target_modules
    settings = peft.LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none",
        task_type="SEQ_CLS" if classifier else "CAUSAL_LM",
        fan_in_fan_out=_has_conv1d(model))  # GPT-2's Conv1D stores weights transposed
    try:
        with _quiet_peft():
            adapted = peft.get_peft_model(model, settings)
    except ValueError as error:  # e.g. a target module that is not in the model
        raise UserError(f"lora.target_modules {list(target_modules)}: {error}") from None
    if base_name is not None:
        local = Path(base_name).expanduser()
        recorded = str(local.resolve()) if local.exists() else base_name
        adapted.peft_config["default"].base_model_name_or_path = recorded
    return adapted


def _has_conv1d(model: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) for module in model.modules())


def has_adapters(model: nn.Module) -> bool:
    """True for a peft model (also inside a DDP wrapper)."""
    return hasattr(getattr(model, "module", model), "disable_adapter")


class AdaptersOff(nn.Module):
    """The base model of a LoRA policy: calling it runs the policy with its adapters switched
    off. This is the RL reference (DESIGN.md: with LoRA the reference is the base model with
    adapters disabled, never a drifting copy).

    The policy is deliberately not registered as a submodule, so that putting this module in
    eval mode or freezing it (as every frozen model is) leaves the policy's training mode and
    its trainable adapters untouched, and its parameters are not counted twice.
    """

    def __init__(self, policy: nn.Module):
        super().__init__()
        self._policy = [getattr(policy, "module", policy)]  # a list keeps it unregistered

    @property
    def config(self):
        return self._policy[0].config

    def forward(self, **inputs):
        policy = self._policy[0]
        with policy.disable_adapter():
            return policy(**inputs)


def check_quantize(quantize: str) -> None:
    """QLoRA's 4-bit base needs a CUDA GPU and bitsandbytes; say so before loading anything."""
    if quantize == "none":
        return
    if not torch.cuda.is_available():
        raise UserError("lora.quantize=4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit "
                        "kernels do not run on this machine's CPU; use lora.quantize=none "
                        "(plain LoRA) here")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("lora.quantize=4bit (QLoRA) needs the bitsandbytes package: "
                        "pip install 'rlhf[qlora]' (or bitsandbytes)") from None


def quantization_config(quantize: str):
    """transformers' BitsAndBytesConfig for QLoRA (NF4 weights, double quantisation, bf16
    compute; Dettmers et al. 2023), or None for a full-precision base."""
    if quantize == "none":
        return None
    check_quantize(quantize)
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def prepare_quantized(model: nn.Module) -> nn.Module:
    """peft's preparation of a 4-bit base for training adapters (layer norms in fp32, input
    gradients on); gradient checkpointing is left to `train.gradient_checkpointing`."""
    return _peft().prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


# -- saving and loading -------------------------------------------------------------------------


def save_adapters(model: nn.Module, tokenizer, folder: Path, extra_config: dict) -> None:
    """The adapters in peft's format, with the tokenizer and the base's config.json (which
    carries `extra_config`, e.g. how a reward model reads text), into `folder` (written
    whole by the caller's atomic rename)."""
    # Embedding layers are saved only when they carry adapters (peft's 'auto' would look
    # for the base's config to see whether the vocabulary was resized; we never resize it).
    model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model.get_base_model()).__name__]
    for key, value in extra_config.items():
        setattr(config, key, value)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain transformers model with the adapters added into its weights (W + alpha/r B A);
    the trained model is left as it is."""
    return matmul_weights_in_float32(copy.deepcopy(model)).merge_and_unload()


def is_adapter_folder(name_or_path: str) -> bool:
    return (Path(name_or_path).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_base(folder: str) -> str:
    """The base model an adapter folder was trained on (its adapter_config.json)."""
    path = Path(folder).expanduser() / ADAPTER_CONFIG
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}; save the adapters again") from None
    if not base:
        raise UserError(f"{path} names no base_model_name_or_path; set it to the base model's "
                        "hub name or folder")
    if base.startswith("builtin:"):
        raise UserError(f"adapter folder {folder} was trained on {base}, a built-in model with "
                        "random weights that only its own run can rebuild; load the merged "
                        "folder the run wrote beside it instead (the same name without "
                        "'-adapter')")
    return base


def merge_adapter_folder(base: nn.Module, folder: str) -> nn.Module:
    """`base` with the adapters of `folder` loaded and merged: a plain transformers model."""
    peft = _peft()
    try:
        with _quiet_peft():
            adapted = peft.PeftModel.from_pretrained(base, folder)
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise UserError(f"cannot load the adapters in {folder} onto their base model: "
                        f"{str(error).splitlines()[0]}") from None
    return adapted.merge_and_unload()


@contextmanager
def _quiet_peft():
    """peft asks transformers 5.2x a question it has deprecated, warning on every model."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing",
                                category=FutureWarning)
        yield


def _peft():
    try:
        import peft
    except ImportError:
        raise UserError("LoRA needs the peft package: pip install peft") from None
    return peft
