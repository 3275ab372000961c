"""Loading models and tokenizers, and reading a reward model's score correctly.

Hub names, local save_pretrained folders, LoRA adapter folders and `builtin:` tiny models all go
through here. Every
model comes back in float32 with dropout off (DESIGN.md: dropout noise in the reward or the
log-probs biases RLHF; Ziegler et al. 2019 train with it off) and a pad token set.
"""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

from rlhf import builtin_models
from rlhf.adapters import (
    adapter_base,
    is_adapter_folder,
    merge_adapter_folder,
    quantization_config,
)
from rlhf.algo.masking import last_true_index
from rlhf.errors import UserError, first_line
from rlhf.seeding import weights_seeded

# Files a saved tokenizer has at least one of. From a folder with none of them, transformers
# builds a tokenizer that knows only its special tokens, and every text becomes unknown tokens.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _looks_local(name_or_path: str) -> bool:
    """Hub names are 'name' or 'owner/name'; anything else path-shaped is a local path."""
    return (name_or_path.startswith((".", "/", "~")) or "\\" in name_or_path
            or name_or_path.count("/") > 1)


def _check_exists(name_or_path: str, what: str) -> None:
    """A local-looking path that does not exist is the user's typo, not a hub lookup."""
    if _looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise UserError(f"{what} folder not found: {name_or_path}; check the path (relative "
                        f"paths are read from {os.getcwd()})")


def _check_tokenizer_files(name_or_path: str) -> None:
    folder = Path(name_or_path).expanduser()
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"'{name_or_path}' has no tokenizer files (none of "
                        f"{', '.join(TOKENIZER_FILES[:4])}, ...); save the tokenizer into the "
                        "folder with tokenizer.save_pretrained(folder), next to the model")


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False):
    """A tokenizer by hub name, local folder or built-in name, with a pad token set.

    GPT-2-style tokenizers have no pad token; we pad with EOS. Masks then come from attention
    masks and lengths, never from `input_ids == pad_id` (trl #3750, #2778).
    """
    if builtin_models.is_builtin(name_or_path):
        tokenizer = builtin_models.builtin_tokenizer(name_or_path)
    else:
        _check_exists(name_or_path, "tokenizer")
        _check_tokenizer_files(name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                name_or_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load a tokenizer from '{name_or_path}': "
                            f"{first_line(error)} (a local folder needs tokenizer files; a hub "
                            "name needs network access)") from None
    return with_pad_token(tokenizer, name_or_path)


def with_pad_token(tokenizer, name_or_path: str):
    """Pad with EOS when the tokenizer has no pad token (GPT-2 style)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"tokenizer '{name_or_path}' has neither a pad nor an EOS token; "
                            "save one with a pad_token set")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def turn_off_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0, in modules and in the config that attention reads."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    if getattr(model, "config", None) is not None:
        _zero_config_dropout(model.config)
    for module in model.modules():  # attention layers that keep the rate as a float
        for attribute in ("attention_dropout", "dropout_rate"):
            if isinstance(getattr(module, attribute, None), float):
                setattr(module, attribute, 0.0)


def use_fused_gelu(model: nn.Module) -> nn.Module:
    """Swap Python tanh-GELU modules (GPT-2's `gelu_new`) for torch's one-kernel tanh GELU.

    Same function, one pass instead of six elementwise passes (x^3, mul, add, tanh, ...) over
    the (B, T, 4 x width) MLP activations, forward and backward: about 20 % of a GPT-2-small
    PPO update on CPU (benchmarks/ppo_step.py). Outputs agree to ~1e-6. The config is untouched,
    so saved models are unchanged.
    """
    for module in model.modules():
        for name, child in module.named_children():
            if isinstance(child, (NewGELUActivation, FastGELUActivation)):
                setattr(module, name, GELUTanh())
    return model


def load_reward_model(
    name_or_path: str,
    *,
    tokenizer_name: str | None = None,
    disable_dropout: bool = True,
    trust_remote_code: bool = False,
    seed: int = 0,
    trained: bool = False,
    quantize: str = "none",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier with exactly one output, and its tokenizer.

    A base model (e.g. `distilroberta-base`, `gpt2`) gets a fresh one-output head to train; a
    trained classifier with another number of labels is refused rather than silently re-headed.
    `trained=True` (scoring, evaluation, PPO) refuses a model that is not a sequence classifier
    at all: a fresh random head would score noise without any error. A folder of LoRA adapters
    (`adapter_config.json`) loads its base and merges them. `quantize='4bit'` loads the base in
    4-bit for QLoRA (GPU only).
    """
    if is_adapter_folder(name_or_path):
        if trained:  # the base is a plain encoder or decoder; the folder holds the head
            _check_reward_head(_load_config(name_or_path, trust_remote_code), name_or_path)
        model, tokenizer = _merged_adapters(
            load_reward_model, name_or_path, tokenizer_name=tokenizer_name or name_or_path,
            disable_dropout=disable_dropout, trust_remote_code=trust_remote_code, seed=seed)
    elif builtin_models.is_builtin(name_or_path):
        _check_no_quantize(quantize, name_or_path)
        tokenizer = load_tokenizer(tokenizer_name, trust_remote_code=trust_remote_code) \
            if tokenizer_name else None
        model, tokenizer = builtin_models.build_builtin(
            name_or_path, AutoModelForSequenceClassification, seed, tokenizer, num_labels=1)
        tokenizer = with_pad_token(tokenizer, name_or_path)
    else:
        config = _load_config(name_or_path, trust_remote_code)  # first: it names a bad path
        _check_one_output(config, name_or_path)
        if trained:
            _check_reward_head(config, name_or_path)
        tokenizer = load_tokenizer(tokenizer_name or name_or_path,
                                   trust_remote_code=trust_remote_code)
        config.num_labels = 1
        if disable_dropout:
            _zero_config_dropout(config)
        with weights_seeded(seed):  # a fresh head is initialised the same way every time
            model = _from_pretrained(AutoModelForSequenceClassification, name_or_path,
                                     config=config, trust_remote_code=trust_remote_code,
                                     quantize=quantize)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if disable_dropout:
        turn_off_dropout(model)
    return use_fused_gelu(model), tokenizer


def load_policy(name_or_path: str, *, disable_dropout: bool = True,
                trust_remote_code: bool = False, seed: int = 0, quantize: str = "none"):
    """A causal LM and its tokenizer (left padding, pad token set) for PPO or generation; a
    LoRA adapter folder loads its base and merges them; `quantize='4bit'`: QLoRA's base."""
    if is_adapter_folder(name_or_path):
        model, tokenizer = _merged_adapters(load_policy, name_or_path,
                                            disable_dropout=disable_dropout,
                                            trust_remote_code=trust_remote_code, seed=seed)
    elif builtin_models.is_builtin(name_or_path):
        _check_no_quantize(quantize, name_or_path)
        model, tokenizer = builtin_models.build_builtin(name_or_path, AutoModelForCausalLM, seed)
        tokenizer = with_pad_token(tokenizer, name_or_path)
    else:
        config = _load_config(name_or_path, trust_remote_code)  # first: it names a bad path
        _check_causal_lm(config, name_or_path)
        tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        if disable_dropout:
            _zero_config_dropout(config)
        try:
            model = _from_pretrained(AutoModelForCausalLM, name_or_path, config=config,
                                     trust_remote_code=trust_remote_code, quantize=quantize)
        except ValueError as error:  # e.g. an encoder that has no causal-LM head
            raise UserError(f"'{name_or_path}' cannot be loaded as a causal language model: "
                            f"{first_line(error)}") from None
    tokenizer.padding_side = "left"  # generation continues prompts flush against the response
    model.config.pad_token_id = tokenizer.pad_token_id
    if disable_dropout:
        turn_off_dropout(model)
    return use_fused_gelu(model), tokenizer


def set_attention(model: nn.Module, implementation: str | None) -> nn.Module:
    """`model` computing attention with `implementation` (a transformers `attn_implementation`
    such as sdpa or eager; None keeps what it loaded with). Copies made afterwards (the
    reference, a value model from the policy's config) inherit it."""
    if implementation is None:
        return model
    try:
        model.set_attn_implementation(implementation)
    except (ValueError, ImportError) as error:
        raise UserError(f"model.attention={implementation} cannot be used with "
                        f"{type(model).__name__}: {first_line(error)}") from None
    return model


def _merged_adapters(loader, folder: str, **kwargs):
    """A model saved as LoRA adapters: its base loaded by `loader`, the adapters merged in,
    the folder's tokenizer and the `rlhf_*` keys of its config.json (how a reward model
    reads text, its score statistics)."""
    base, _ = loader(adapter_base(folder), **kwargs)
    model = merge_adapter_folder(base, folder)
    saved = _load_config(folder, kwargs.get("trust_remote_code", False))
    for key, value in vars(saved).items():
        if key.startswith("rlhf_"):
            setattr(model.config, key, value)
    return model, load_tokenizer(folder, trust_remote_code=kwargs.get("trust_remote_code", False))


def _check_no_quantize(quantize: str, name: str) -> None:
    if quantize != "none":
        raise UserError(f"lora.quantize={quantize} quantizes pretrained weights; '{name}' is a "
                        "built-in random-weight model: use lora.quantize=none")


def _from_pretrained(model_class, name_or_path: str, *, quantize: str = "none",
                     **kwargs) -> PreTrainedModel:
    """`model_class.from_pretrained` in float32 (or QLoRA's 4-bit); unreadable weights are the
    user's to fix.

    A ValueError (a config no class of `model_class` fits) is left to the caller, which knows
    what kind of model it wanted.
    """
    quantized = quantization_config(quantize)
    if quantized is not None:  # 4-bit weights live on the GPU (check_quantize said we have one)
        kwargs |= {"quantization_config": quantized,
                   "device_map": {"": torch.cuda.current_device()}}
    try:
        return model_class.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)
    except torch.OutOfMemoryError:
        raise  # a real resource problem, not a corrupt file
    except (OSError, RuntimeError, SafetensorError, pickle.UnpicklingError) as error:
        # Truncated or garbage safetensors, a failed download, tensors of the wrong shape.
        raise UserError(f"cannot load the weights of model '{name_or_path}' "
                        f"({first_line(error)}); the weights file may be incomplete or "
                        "corrupt: save or download the model again") from None


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """An eval-mode, gradient-free copy (the PPO reference policy)."""
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def _load_config(name_or_path: str, trust_remote_code: bool):
    _check_exists(name_or_path, "model")
    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load model '{name_or_path}': {first_line(error)} (a local "
                        "folder needs config.json; a hub name needs network access)") from None


def _check_reward_head(config, name_or_path: str) -> None:
    architectures = config.architectures or []
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise UserError(f"'{name_or_path}' is not a reward model: it is a "
                        f"{', '.join(architectures)}, without a trained sequence-classification "
                        "head to score with; give the model folder saved by `rlhf train-reward` "
                        "(RUN/model) or another one-output sequence classifier")


def _check_causal_lm(config, name_or_path: str) -> None:
    """A classifier's folder would load as a causal LM with a random (or tied) LM head."""
    architectures = config.architectures or []
    if architectures and all(a.endswith("Classification") for a in architectures):
        raise UserError(f"'{name_or_path}' is a {', '.join(architectures)}, not a causal "
                        "language model; a policy must be a causal LM, e.g. the model folder "
                        "saved by `rlhf train-sft` (RUN/model) or a hub model such as gpt2")


def _check_one_output(config, name_or_path: str) -> None:
    architectures = config.architectures or []
    is_classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    if is_classifier and config.num_labels != 1:
        raise UserError(f"model '{name_or_path}' is a classifier with {config.num_labels} "
                        "outputs; a reward model needs exactly one (num_labels=1)")


def _zero_config_dropout(config) -> None:
    """Zero every dropout rate a config holds: `*dropout*` keys and GPT-2's `*_pdrop`."""
    for key, value in vars(config).items():
        if ("dropout" in key or key.endswith("pdrop")) and isinstance(value, float):
            setattr(config, key, 0.0)


def is_decoder_classifier(model: nn.Module) -> bool:
    """True for causal-LM classifiers (GPT-2, Llama, ...) whose `score` head reads every token.

    Encoders (BERT, RoBERTa, DeBERTa) read the first token `<s>`/[CLS] through `classifier`.
    """
    score = getattr(model, "score", None)
    score = getattr(score, "original_module", score)  # peft keeps a trained head in a wrapper
    return isinstance(score, nn.Linear)


def position_limit(model: nn.Module) -> int | None:
    """How many tokens the model can read, from its position table; None when it has none.

    RoBERTa-family tables reserve their first padding_idx + 1 rows (positions start after the
    pad index), so roberta-base's 514 rows hold 512 tokens.
    """
    model = unwrapped(model)
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)  # GPT-2's n_positions too
    if not isinstance(limit, int) or limit <= 0:
        return None
    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    padding_idx = getattr(getattr(embeddings, "position_embeddings", None), "padding_idx", None)
    return limit - (padding_idx + 1) if isinstance(padding_idx, int) else limit


def check_fits_positions(model: nn.Module, length: int, key: str, name: str) -> None:
    """A UserError naming `key` when `length` tokens exceed the positions of `model` (`name`),
    so a run stops at load instead of with an IndexError in the middle of training."""
    limit = position_limit(model)
    if limit is not None and length > limit:
        raise UserError(f"{key} = {length} is longer than the {limit} positions model '{name}' "
                        f"can read; lower it to at most {limit}")


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so a left-padded row scores as it would alone."""
    positions = attention_mask.long().cumsum(-1) - 1  # (B, T)
    return positions.clamp(min=0)


def token_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 position_ids: torch.Tensor | None = None,
                 **model_inputs: torch.Tensor) -> torch.Tensor:
    """(N, T) scalar head of a decoder classifier applied at every position.

    We run the model's own forward (so DDP wrappers see it) and apply its `score` head to the
    final hidden states ourselves: the built-in pooling finds the last token from
    `input_ids != pad_id`, which is wrong when pad id == EOS id (trl #3750, #2778, #937).
    `model_inputs` are other (N, T) inputs its tokenizer returned (token_type_ids).
    """
    if position_ids is None:
        position_ids = position_ids_from_mask(attention_mask)
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   output_hidden_states=True, **model_inputs)
    head = unwrapped(model).score
    return head(output.hidden_states[-1]).squeeze(-1).float()  # (N, T)


def unwrapped(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


def sequence_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    **model_inputs: torch.Tensor) -> torch.Tensor:
    """One scalar per row: (N, T) ids -> (N,) float scores.

    Encoders read their first token (`<s>`/[CLS]) through their own head. A decoder's score is
    read at the last real token found from the attention mask, whatever the padding side and
    even when the response ends in EOS == pad. `model_inputs` are the other (N, T) inputs the
    tokenizer returned, e.g. BERT's `token_type_ids`: a sentence-pair model trained with
    segment ids reads a pair without them as one segment, off its training distribution.
    """
    attention_mask = attention_mask.bool()
    if not is_decoder_classifier(unwrapped(model)):
        return model(input_ids=input_ids, attention_mask=attention_mask,
                     **model_inputs).logits[:, 0].float()
    scores = token_scores(model, input_ids, attention_mask, **model_inputs)  # (N, T)
    last = last_true_index(attention_mask)  # (N,)
    return scores[torch.arange(len(scores), device=scores.device), last]
