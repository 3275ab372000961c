"""LoRA through peft: the adapter-disabled reference, what trains and is checkpointed, the saved
adapter and merged folders, QLoRA's refusal on a CPU, and gradient checkpointing."""

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from rlhf.adapters import AdaptersOff, add_adapters, check_quantize, has_adapters
from rlhf.engine.checkpoint import load_weights, save_weights
from rlhf.engine.optim import adamw_with_schedule
from rlhf.errors import UserError
from rlhf.models import (
    frozen_copy,
    load_policy,
    load_reward_model,
    sequence_scores,
)
from rlhf.rl.forward import response_logprobs, response_values
from rlhf.saving import save_trained
from rlhf.trainable import ready_to_train
from rlhf.value_models import value_model_from_policy

LORA = SimpleNamespace(r=4, alpha=8.0, dropout=0.0, target_modules=["all-linear"],
                       quantize="none")


def batch(vocab: int, rows: int = 3, query: int = 5, response: int = 4):
    """Left-padded queries and right-padded responses of random tokens."""
    generator = torch.Generator().manual_seed(0)
    query_ids = torch.randint(vocab, (rows, query), generator=generator)
    response_ids = torch.randint(vocab, (rows, response), generator=generator)
    query_mask = torch.ones(rows, query, dtype=torch.bool)
    query_mask[0, :2] = False
    response_mask = torch.ones(rows, response, dtype=torch.bool)
    response_mask[1, 3:] = False
    return query_ids, query_mask, response_ids, response_mask


def logprobs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return response_logprobs(model, *inputs, temperature=0.7)


def perturb_adapters(model) -> None:
    """Move every adapter off its zero start, as training would."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)


@pytest.fixture
def policy():
    model, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    return model, tokenizer


def test_fresh_adapters_compute_exactly_the_base_function(policy) -> None:
    model, tokenizer = policy
    base = frozen_copy(model)
    inputs = batch(len(tokenizer))
    adapted = ready_to_train(model, lora=LORA, gradient_checkpointing=False)
    assert has_adapters(adapted)
    assert torch.equal(logprobs(adapted, inputs), logprobs(base, inputs))  # KL exactly 0


def test_adapter_disabled_reference_equals_a_separate_frozen_copy(policy) -> None:
    model, tokenizer = policy
    copy_before_training = frozen_copy(model)
    adapted = ready_to_train(model, lora=LORA, gradient_checkpointing=False)
    perturb_adapters(adapted)
    reference = AdaptersOff(adapted).eval().requires_grad_(False)  # as prepare_frozen does
    inputs = batch(len(tokenizer))
    assert torch.equal(logprobs(reference, inputs), logprobs(copy_before_training, inputs))
    assert not torch.allclose(logprobs(adapted, inputs), logprobs(reference, inputs))
    # Freezing the reference left the policy's adapters trainable and nothing was registered.
    assert any(p.requires_grad for p in adapted.parameters())
    assert list(reference.parameters()) == []
    with torch.no_grad():  # the adapters are switched back on after the reference's pass
        assert not torch.allclose(logprobs(adapted, inputs), logprobs(reference, inputs))


def test_only_adapters_train_and_only_they_get_optimizer_state(policy) -> None:
    model, _ = policy
    total = sum(p.numel() for p in model.parameters())
    adapted = ready_to_train(model, lora=LORA, gradient_checkpointing=False)
    trained = [name for name, p in adapted.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in name for name in trained)
    optimizer, _ = adamw_with_schedule(adapted.parameters(), learning_rate=1e-3,
                                       weight_decay=0.0, scheduler="constant",
                                       warmup_ratio=0.0, total_steps=1)
    in_optimizer = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert in_optimizer == sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert in_optimizer < total / 10


def test_a_value_model_with_adapters_trains_its_head_in_full(policy) -> None:
    model, tokenizer = policy
    value = ready_to_train(value_model_from_policy(model), lora=LORA, classifier=True,
                           gradient_checkpointing=False)
    trained = [name for name, p in value.named_parameters() if p.requires_grad]
    assert any("score" in name and "lora_" not in name for name in trained)
    values = response_values(value, *batch(len(tokenizer)))  # the head reads every position
    assert values.shape == (3, 4) and values.requires_grad


def test_checkpoint_holds_only_the_trained_weights_and_restores_them(policy, tmp_path) -> None:
    model, tokenizer = policy
    plain = copy.deepcopy(model)
    adapted = ready_to_train(model, lora=LORA, gradient_checkpointing=False)
    perturb_adapters(adapted)
    save_weights(adapted, tmp_path / "policy.safetensors")
    restored = ready_to_train(copy.deepcopy(plain), lora=LORA, gradient_checkpointing=False)
    load_weights(restored, tmp_path / "policy.safetensors")
    inputs = batch(len(tokenizer))
    assert torch.equal(logprobs(restored, inputs), logprobs(adapted, inputs))
    assert (tmp_path / "policy.safetensors").stat().st_size < 200_000  # no base weights
    other_rank = ready_to_train(plain, lora=SimpleNamespace(**vars(LORA) | {
        "target_modules": ["c_attn"]}), gradient_checkpointing=False)
    with pytest.raises(ValueError, match="trainable ones"):
        load_weights(other_rank, tmp_path / "policy.safetensors")


def test_saved_adapters_and_merged_folder_load_to_the_trained_policy(policy, tmp_path) -> None:
    model, tokenizer = policy
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    base, tokenizer = load_policy(str(tmp_path / "base"))
    adapted = ready_to_train(base, lora=LORA, gradient_checkpointing=False,
                             base_name=str(tmp_path / "base"))
    perturb_adapters(adapted)
    written = save_trained(adapted, tokenizer, tmp_path / "run" / "policy")
    assert [p.name for p in written] == ["policy-adapter", "policy"]
    inputs = batch(len(tokenizer))
    expected = logprobs(adapted, inputs)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "policy")  # plain HF
    from_adapters, _ = load_policy(str(tmp_path / "run" / "policy-adapter"))  # rlhf merges
    for loaded in (merged, from_adapters):
        torch.testing.assert_close(logprobs(loaded.eval(), inputs), expected, atol=1e-5,
                                   rtol=1e-5)
    assert not has_adapters(from_adapters)


def test_reward_adapters_keep_the_head_and_how_the_model_reads_text(tmp_path) -> None:
    model, tokenizer = load_reward_model("builtin:tiny-gpt2", seed=0)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    base, tokenizer = load_reward_model(str(tmp_path / "base"))
    adapted = ready_to_train(base, lora=LORA, classifier=True, gradient_checkpointing=False,
                             base_name=str(tmp_path / "base"))
    perturb_adapters(adapted)
    with torch.no_grad():
        adapted.score.modules_to_save["default"].weight.normal_()  # the head trained too
    save_trained(adapted, tokenizer, tmp_path / "rm", {"rlhf_template": "concat"}, merge=False)
    assert not (tmp_path / "rm").exists()  # merge=false: adapters only
    loaded, _ = load_reward_model(str(tmp_path / "rm-adapter"), trained=True)
    ids = torch.randint(len(tokenizer), (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(sequence_scores(loaded.eval(), ids, mask),
                                   sequence_scores(adapted.eval(), ids, mask))
    assert loaded.config.rlhf_template == "concat"
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "base")  # base untouched


def test_adapters_on_a_builtin_model_point_to_the_merged_folder(policy, tmp_path) -> None:
    model, tokenizer = policy
    adapted = ready_to_train(model, lora=LORA, gradient_checkpointing=False,
                             base_name="builtin:tiny-gpt2")
    save_trained(adapted, tokenizer, tmp_path / "policy")
    with pytest.raises(UserError, match="load the merged folder"):
        load_policy(str(tmp_path / "policy-adapter"))


def test_a_target_module_the_model_lacks_is_named(policy) -> None:
    model, _ = policy
    with pytest.raises(UserError, match="lora.target_modules"):
        add_adapters(model, r=4, alpha=8, dropout=0.0, target_modules=["q_proj"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA is refused only without a GPU")
def test_4bit_base_is_refused_on_a_cpu_with_what_to_do() -> None:
    with pytest.raises(UserError, match="needs a CUDA GPU.*lora.quantize=none"):
        check_quantize("4bit")
    check_quantize("none")


def counting(store: list):
    def pack(tensor):
        store.append(tensor.numel())
        return tensor
    return pack


@pytest.mark.parametrize("with_lora", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(policy, with_lora) -> None:
    model, tokenizer = policy
    inputs = batch(len(tokenizer))
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same adapters on both sides
        trained = ready_to_train(copy.deepcopy(model), lora=LORA if with_lora else None,
                                 gradient_checkpointing=checkpointing).train()
        perturb_adapters(trained)
        kept = []  # elements of the tensors the forward pass keeps for the backward pass
        with torch.autograd.graph.saved_tensors_hooks(counting(kept), lambda t: t):
            loss = -(response_logprobs(trained, *inputs, temperature=0.7) * inputs[3]).sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trained.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads, sum(kept)))
    (loss_a, grads_a, kept_a), (loss_b, grads_b, kept_b) = results
    assert kept_b < 0.6 * kept_a  # checkpointing really keeps less
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5)
