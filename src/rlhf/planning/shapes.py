"""A model's shape read without its weights: the config, and the model built on the meta device.

Building the model on torch's meta device allocates no memory and takes well under a second
even at billions of parameters, yet gives the exact parameter count the real model will have
(tied input and output embeddings counted once, as `model.parameters()` does) and every
linear layer's name and size, which LoRA's parameter count needs (`planning.lora`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification
from transformers.pytorch_utils import Conv1D

from rlhf import builtin_models
from rlhf.errors import UserError, first_line

HEADS = {"causal_lm": AutoModelForCausalLM, "classifier": AutoModelForSequenceClassification}
"""How a stage builds a model: a causal LM (policy, SFT) or a one-output sequence classifier
(reward model, PPO's value model)."""

CLASSIFIER_HEADS = ("score", "classifier")
"""Attribute names of a sequence classifier's head (decoders: `score`; encoders: `classifier`),
as peft knows them: with LoRA it trains them in full and puts no adapters inside them."""

FUNCTION_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""A reward given as 'package.module:function' (the rule `reward.scorers` applies): no model."""


@dataclass(frozen=True)
class Linear:
    """One linear (or GPT-2 Conv1D) layer: its module name and sizes."""

    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True)
class ModelShape:
    """What the memory arithmetic needs to know about a model."""

    name: str
    """The model as configured (hub name, folder or builtin: name)."""
    family: str
    """'gpt2' or 'encoder' (BERT/RoBERTa-style) have measured activation counts
    (`planning.arithmetic`); 'decoder' is any other decoder, estimated with GPT-2's count."""
    params: int
    """Parameters, tied weights counted once (`sum(p.numel() for p in model.parameters())`)."""
    layers: int
    hidden: int
    heads: int
    kv_hidden: int
    """Width of the keys (and of the values) one layer caches per token: kv heads x head size."""
    intermediate: int
    vocab: int
    gated_mlp: bool
    """A gated MLP (Llama's gate/up/down projections) keeps three (B, T, I) tensors, not two."""
    linears: tuple[Linear, ...]
    """Every linear layer outside the output and classifier heads (LoRA's candidates)."""
    output_head: str | None
    """The causal LM's output projection (`lm_head`); LoRA's all-linear leaves it out."""
    head_params: int
    """Parameters of the classifier head (0 for a causal LM), trained in full under LoRA."""

    @property
    def linear_params(self) -> int:
        """Weights of the linear layers (what a 4-bit base quantizes)."""
        return sum(layer.in_features * layer.out_features for layer in self.linears)


def is_reward_function(spec: str) -> bool:
    """True for a reward given as 'module:function' (it holds no model memory)."""
    return not builtin_models.is_builtin(spec) and bool(FUNCTION_SPEC.match(spec))


def model_config(name_or_path: str, key: str, trust_remote_code: bool = False):
    """The transformers config of a hub name, folder or builtin: name; a bad one names `key`."""
    if builtin_models.is_builtin(name_or_path):
        tokenizer = builtin_models.builtin_tokenizer(name_or_path)
        return builtin_models.builtin_config(name_or_path, tokenizer)
    if name_or_path.startswith((".", "/", "~")) and not Path(name_or_path).expanduser().exists():
        raise UserError(f"config key '{key}': folder not found: {name_or_path}")
    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise UserError(f"config key '{key}': cannot read the model config of "
                        f"'{name_or_path}' ({first_line(error, 200)}); a folder needs "
                        "config.json, a hub name needs the network or the local cache") from None


def read_shape(name_or_path: str, head: str, *, key: str,
               trust_remote_code: bool = False) -> ModelShape:
    """The shape of `name_or_path` built as `head` ('causal_lm' or 'classifier' with one
    output), from its config alone: no weights are read or allocated."""
    config = model_config(name_or_path, key, trust_remote_code)
    if head == "classifier":
        config.num_labels = 1
    try:
        with torch.device("meta"):
            model = HEADS[head].from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as error:  # e.g. an encoder asked for as a causal LM
        raise UserError(f"config key '{key}': '{name_or_path}' cannot be built as a "
                        f"{head.replace('_', ' ')} ({first_line(error, 200)})") from None
    return shape_of(model, name_or_path)


def shape_of(model: nn.Module, name: str) -> ModelShape:
    """The shape of a built model (on the meta device or a real one)."""
    config = model.config
    hidden = config.hidden_size
    heads = config.num_attention_heads
    head_size = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head_name = next((n for n in CLASSIFIER_HEADS
                      if isinstance(getattr(model, n, None), nn.Module)), None)
    names = {id(module): name for name, module in model.named_modules()}
    linears = tuple(_linears(model, exclude={names.get(id(output)), head_name}))
    head = getattr(model, head_name) if head_name and output is None else None
    return ModelShape(
        name=name, family=_family(config, head_name, output), params=_count(model),
        layers=config.num_hidden_layers, hidden=hidden, heads=heads,
        kv_hidden=kv_heads * head_size,
        intermediate=getattr(config, "intermediate_size", None)
        or getattr(config, "n_inner", None) or 4 * hidden,
        vocab=output.weight.shape[0] if output is not None else config.vocab_size,
        gated_mlp=any(layer.name.endswith(("gate_proj", "gate_up_proj")) for layer in linears),
        linears=linears, output_head=names.get(id(output)) if output is not None else None,
        head_params=_count(head) if head is not None else 0)


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _family(config, head_name: str | None, output) -> str:
    if config.model_type == "gpt2":
        return "gpt2"
    if output is None and head_name == "classifier":
        return "encoder"
    return "decoder"


def _linears(model: nn.Module, exclude: set) -> list[Linear]:
    """Linear and Conv1D layers, outside the excluded heads (and anything inside them)."""
    found = []
    for name, module in model.named_modules():
        if any(name == head or name.startswith(f"{head}.") for head in exclude if head):
            continue
        if isinstance(module, nn.Linear):
            found.append(Linear(name, module.in_features, module.out_features))
        elif isinstance(module, Conv1D):  # weight (in, out): GPT-2 stores it transposed
            found.append(Linear(name, module.weight.shape[0], module.nf))
    return found
