"""Model loading and reading a reward model's score at the right token."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, RobertaConfig

from rlhf.errors import UserError
from rlhf.models import (
    is_decoder_classifier,
    load_reward_model,
    load_tokenizer,
    position_ids_from_mask,
    sequence_scores,
)


def pad(rows: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row)
        mask[i, span] = True
    return ids, mask


@pytest.fixture(scope="module")
def decoder_reward():
    model, tokenizer = load_reward_model("builtin:tiny-gpt2", seed=0)
    return model.eval(), tokenizer


def test_decoder_pad_is_eos_and_score_head_is_per_token(decoder_reward) -> None:
    model, tokenizer = decoder_reward
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert is_decoder_classifier(model)


@pytest.mark.parametrize("side", ["left", "right"])
def test_decoder_score_read_at_last_real_token_even_when_it_is_eos(decoder_reward, side) -> None:
    """trl #3750/#2778: pad == EOS must not hide a response's final EOS."""
    model, tokenizer = decoder_reward
    eos = tokenizer.eos_token_id
    rows = [tokenizer("The rain fell softly")["input_ids"] + [eos],
            tokenizer("A long and winding road under grey skies")["input_ids"],
            tokenizer("Hi")["input_ids"] + [eos]]
    alone = torch.cat([sequence_scores(model, torch.tensor([r]), torch.ones(1, len(r)))
                       for r in rows])
    ids, mask = pad(rows, tokenizer.pad_token_id, side)
    with torch.no_grad():
        batched = sequence_scores(model, ids, mask)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_score_at_eos_differs_from_score_before_it(decoder_reward) -> None:
    model, tokenizer = decoder_reward
    ids = tokenizer("The rain fell softly")["input_ids"]
    with_eos = torch.tensor([ids + [tokenizer.eos_token_id]])
    without = torch.tensor([ids])
    a = sequence_scores(model, with_eos, torch.ones_like(with_eos))
    b = sequence_scores(model, without, torch.ones_like(without))
    assert not torch.allclose(a, b)


def test_encoder_score_is_padding_invariant() -> None:
    model, tokenizer = load_reward_model("builtin:tiny-roberta", seed=0)
    model.eval()
    assert not is_decoder_classifier(model)
    rows = tokenizer(["a quiet harbour", "the old lighthouse stood on the cliff"],
                     ["waves", "its light swept the dark water"])["input_ids"]
    alone = torch.cat([sequence_scores(model, torch.tensor([r]), torch.ones(1, len(r)))
                       for r in rows])
    ids, mask = pad(rows, tokenizer.pad_token_id, "right")
    torch.testing.assert_close(sequence_scores(model, ids, mask), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["builtin:tiny-roberta", "builtin:tiny-gpt2"])
def test_dropout_is_off_even_in_train_mode(name: str) -> None:
    model, tokenizer = load_reward_model(name, seed=0)
    model.train()
    ids = torch.tensor([tokenizer("the sea was calm and grey")["input_ids"]])
    first, second = (sequence_scores(model, ids, torch.ones_like(ids)) for _ in range(2))
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_same_seed_same_weights() -> None:
    a, _ = load_reward_model("builtin:tiny-roberta", seed=1)
    b, _ = load_reward_model("builtin:tiny-roberta", seed=1)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_saved_folder_reloads_with_fresh_head_deterministically(tmp_path: Path) -> None:
    model, tokenizer = load_reward_model("builtin:tiny-roberta", seed=0)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    again, tok2 = load_reward_model(str(tmp_path / "m"))
    assert again.config.num_labels == 1 and tok2.pad_token_id == tokenizer.pad_token_id
    torch.testing.assert_close(again.state_dict()["classifier.out_proj.weight"],
                               model.state_dict()["classifier.out_proj.weight"])


def test_classifier_with_two_labels_is_refused(tmp_path: Path) -> None:
    _, tokenizer = load_reward_model("builtin:tiny-roberta")
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "two")
    tokenizer.save_pretrained(tmp_path / "two")
    with pytest.raises(UserError, match="classifier with 2 outputs.*num_labels=1"):
        load_reward_model(str(tmp_path / "two"))


def test_missing_folder_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_reward_model(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="unknown built-in model"):
        load_reward_model("builtin:huge")


def test_gpt2_tokenizer_files_get_eos_as_pad(gpt2_tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(str(gpt2_tokenizer_dir))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"


def test_position_ids_count_real_tokens_only() -> None:
    mask = torch.tensor([[False, False, True, True], [True, True, True, True]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_value_model_from_a_gpt2_policy_has_no_dropout() -> None:
    """GPT-2 names its rates *_pdrop: a value model built from the policy's config once kept
    them at 0.1, so rollout values were noisy (and differed between processes)."""
    from rlhf.models import load_policy
    from rlhf.value_models import value_model_from_policy

    policy, _ = load_policy("builtin:tiny-gpt2")
    value = value_model_from_policy(policy, seed=0).train()
    assert all(m.p == 0.0 for m in value.modules() if isinstance(m, torch.nn.Dropout))
    assert value.config.resid_pdrop == value.config.attn_pdrop == value.config.embd_pdrop == 0.0
    ids = torch.tensor([[5, 6, 7, 8]])
    first = value(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    assert torch.equal(first, value(input_ids=ids, output_hidden_states=True).hidden_states[-1])


def test_gpt2_gelu_is_the_fused_kernel_with_the_same_outputs(tmp_path: Path) -> None:
    """GPT-2's Python tanh GELU is swapped for torch's one-kernel version on load (a speed-up,
    benchmarks/ppo_step.py): same function to float rounding, and the saved config unchanged."""
    from transformers import AutoModelForCausalLM
    from transformers.activations import GELUTanh, NewGELUActivation

    from rlhf.models import load_policy
    from rlhf.value_models import value_model_from_policy

    policy, tokenizer = load_policy("builtin:tiny-gpt2")
    policy.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    original = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").eval()
    assert any(isinstance(m, NewGELUActivation) for m in original.modules())
    loaded, _ = load_policy(str(tmp_path / "policy"))
    value = value_model_from_policy(loaded)
    for model in (loaded, value):
        assert not any(isinstance(m, NewGELUActivation) for m in model.modules())
        assert any(isinstance(m, GELUTanh) for m in model.modules())
    assert loaded.config.activation_function == "gelu_new"
    ids = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, original(input_ids=ids).logits,
                              atol=1e-5)
