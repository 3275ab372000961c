"""Shapes read from configs on the meta device count exactly the parameters of the real models,
and LoRA's count equals peft's own on the same models."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GPT2Config,
    RobertaConfig,
)

from rlhf.builtin_models import build_builtin
from rlhf.errors import UserError
from rlhf.planning.lora import lora_shape
from rlhf.planning.shapes import is_reward_function, read_shape

CASES = [("builtin:tiny-gpt2", "causal_lm", AutoModelForCausalLM),
         ("builtin:tiny-gpt2", "classifier", AutoModelForSequenceClassification),
         ("builtin:tiny-roberta", "classifier", AutoModelForSequenceClassification)]


def _real(name: str, model_class):
    extra = {"num_labels": 1} if model_class is AutoModelForSequenceClassification else {}
    return build_builtin(name, model_class, seed=0, **extra)[0]


@pytest.mark.parametrize(("name", "head", "model_class"), CASES)
def test_parameter_count_equals_the_real_models(name, head, model_class) -> None:
    shape = read_shape(name, head, key="model.policy")
    real = _real(name, model_class)
    assert shape.params == sum(p.numel() for p in real.parameters())
    assert shape.layers == 2 and shape.hidden == 64 and shape.intermediate == 256


def test_a_saved_config_folder_is_read_without_weights(tmp_path) -> None:
    config = GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=300, n_positions=64)
    config.save_pretrained(tmp_path)  # config.json only: no weights needed
    shape = read_shape(str(tmp_path), "causal_lm", key="model.policy")
    torch.manual_seed(0)
    real = AutoModelForCausalLM.from_config(config)
    assert shape.params == sum(p.numel() for p in real.parameters())  # tied embeddings once
    assert (shape.family, shape.vocab, shape.output_head) == ("gpt2", 300, "lm_head")
    value = read_shape(str(tmp_path), "classifier", key="model.policy")
    assert value.params == shape.params + 32 and value.head_params == 32  # score: d -> 1


def test_encoder_family_and_classifier_head(tmp_path) -> None:
    RobertaConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64).save_pretrained(tmp_path)
    shape = read_shape(str(tmp_path), "classifier", key="model.reward")
    assert shape.family == "encoder"
    assert shape.head_params == (16 * 16 + 16) + (16 + 1)  # dense + out_proj
    assert all(not layer.name.startswith("classifier") for layer in shape.linears)


def test_unreadable_model_names_the_key(tmp_path) -> None:
    with pytest.raises(UserError, match="model.reward.*folder not found"):
        read_shape(str(tmp_path / "missing"), "classifier", key="model.reward")
    with pytest.raises(UserError, match="model.policy.*config.json"):
        read_shape(str(tmp_path), "causal_lm", key="model.policy")


def test_reward_functions_hold_no_model() -> None:
    assert is_reward_function("rlhf.reward.rules:vivid_word_fraction")
    assert not is_reward_function("builtin:tiny-roberta")
    assert not is_reward_function("/models/reward")


@pytest.mark.parametrize(("name", "head", "model_class", "targets"), [
    (*CASES[0], ["all-linear"]), (*CASES[0], ["c_attn"]), (*CASES[0], ["c_attn", "c_fc"]),
    (*CASES[1], ["all-linear"]), (*CASES[1], ["c_proj"]),
    (*CASES[2], ["all-linear"]), (*CASES[2], ["query", "value"]), (*CASES[2], ["dense"])])
def test_lora_count_equals_peft(name, head, model_class, targets) -> None:
    peft = pytest.importorskip("peft")
    classifier = head == "classifier"
    settings = peft.LoraConfig(
        r=8, lora_alpha=16, bias="none", fan_in_fan_out="gpt2" in name,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="SEQ_CLS" if classifier else "CAUSAL_LM")
    model = peft.get_peft_model(_real(name, model_class), settings)
    trainable, total = model.get_nb_trainable_parameters()
    shape = read_shape(name, head, key="model.policy")
    lora = lora_shape(shape, 8, targets)
    assert lora.trainable == trainable
    assert shape.params + lora.added == total  # the head's trainable copy is held too


def test_lora_targets_that_match_nothing_name_the_key() -> None:
    shape = read_shape("builtin:tiny-gpt2", "causal_lm", key="model.policy")
    with pytest.raises(UserError, match="lora.target_modules.*q_proj.*c_attn"):
        lora_shape(shape, 8, ["q_proj"])
