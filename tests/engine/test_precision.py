"""Mixed precision: every model of a run computes at the precision of the trained ones.

A policy prepared by accelerate runs under bf16 autocast; a reference or reward model left
outside it ran in float32, so KL(policy || reference) at the first iteration, where the two
are the same model, was not 0. Checked on CPU with bf16 autocast (the same code path as a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhf.config import PPOConfig, RunConfig, load_config
from rlhf.engine.run import Run
from rlhf.models import frozen_copy, load_policy, load_reward_model
from rlhf.reward.scorers import RewardModelScorer

ROOT = Path(__file__).resolve().parents[2]


def bf16_run(tmp_path: Path) -> Run:
    return Run(RunConfig(output_dir=str(tmp_path / "run"), mixed_precision="bf16"), None,
               stage="test")


def test_frozen_model_computes_exactly_as_the_prepared_trained_one(tmp_path: Path) -> None:
    run = bf16_run(tmp_path)
    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    reference = run.prepare_frozen(frozen_copy(policy))
    policy = run.accelerator.prepare(policy)
    ids = torch.randint(0, len(tokenizer), (3, 12))
    with torch.no_grad():
        want = policy(input_ids=ids).logits
        got = reference(input_ids=ids).logits
        float32 = load_policy("builtin:tiny-gpt2", seed=0)[0](input_ids=ids).logits  # as before
    assert torch.equal(got, want)  # bit for bit: the KL at iteration 1 is exactly 0
    assert not torch.equal(float32, want)  # the test can fail: bf16 differs from float32
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())


def test_reward_model_scores_under_the_runs_autocast(tmp_path: Path) -> None:
    run = bf16_run(tmp_path)
    model, tokenizer = load_reward_model("builtin:tiny-gpt2", seed=3)  # a decoder: score head
    scorer = RewardModelScorer(model, tokenizer, template="concat")
    prompts, responses = ["The harbour was quiet."] * 2, ["Gulls wheeled.", "Boats."]
    float32 = scorer(prompts, responses)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = scorer(prompts, responses)
    scorer.model = run.prepare_frozen(scorer.model)
    with run.accelerator.autocast():  # how PPO's rollout calls it
        got = scorer(prompts, responses)
    assert torch.equal(got, want) and not torch.equal(got, float32)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "no"])
def test_ppo_iteration_one_has_zero_kl_at_any_precision(precision: str, tmp_path: Path) -> None:
    from rlhf.stages.ppo.train import train_ppo

    out = tmp_path / precision
    cfg = load_config(PPOConfig, ROOT / "configs" / "ppo" / "tiny.yaml", [
        f"run.output_dir={out}", "run.progress=false", f"run.mixed_precision={precision}",
        "ppo.total_episodes=64", "ppo.normalization_samples=16"])
    train_ppo(cfg)
    first, second = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert first["objective/kl"] == 0.0  # policy == reference: exactly, not approximately
    assert second["objective/kl"] != 0.0  # and KL is measured: the policy moved


def test_fp16_without_a_gpu_is_a_clear_error_not_silent_float32(tmp_path: Path) -> None:
    from rlhf.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("fp16 is real on this machine")
    with pytest.raises(UserError, match="run.mixed_precision=fp16 needs a GPU"):
        Run(RunConfig(output_dir=str(tmp_path / "run"), mixed_precision="fp16"), None,
            stage="test")


# -- frozen models hold their matrix-multiply weights in bf16 (issue 18) ----------------------


def parameter_casts(model: torch.nn.Module, call) -> int:
    """How many times `call()` casts one of `model`'s parameters to another dtype."""
    from torch.utils._python_dispatch import TorchDispatchMode

    storages = {p.data_ptr() for p in model.parameters()}

    class CountCasts(TorchDispatchMode):
        casts = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._to_copy.default and args[0].data_ptr() in storages:
                CountCasts.casts += 1
            return func(*args, **(kwargs or {}))

    with CountCasts():
        call()
    return CountCasts.casts


def test_matmul_weights_are_stored_in_bf16_and_the_tied_embedding_stays_float32() -> None:
    from rlhf.precision import store_matmul_weights_in

    model = load_policy("builtin:tiny-gpt2", seed=0)[0]
    assert store_matmul_weights_in(model, "no") is model
    assert store_matmul_weights_in(model, "bf16") is model  # it trains: nothing is cast
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    store_matmul_weights_in(model.requires_grad_(False), "bf16")
    block = model.transformer.h[0]
    assert block.attn.c_attn.weight.dtype == block.mlp.c_proj.bias.dtype == torch.bfloat16
    assert model.lm_head.weight.dtype == torch.bfloat16  # its own copy, untied ...
    assert model.transformer.wte.weight.dtype == torch.float32  # ... from the lookup table
    assert block.ln_1.weight.dtype == model.transformer.wpe.weight.dtype == torch.float32
    assert torch.equal(model.lm_head.weight.float(),
                       model.transformer.wte.weight.to(torch.bfloat16).float())


def test_a_prepared_frozen_model_casts_no_weight_per_call(tmp_path: Path) -> None:
    run = bf16_run(tmp_path)
    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    ids = torch.randint(0, len(tokenizer), (2, 9))
    autocast_only = frozen_copy(policy)  # float32 weights under the run's autocast: as before
    with torch.no_grad(), run.accelerator.autocast():
        before = parameter_casts(autocast_only, lambda: autocast_only(input_ids=ids))
    reference = run.prepare_frozen(frozen_copy(policy))
    with torch.no_grad():
        after = parameter_casts(reference, lambda: reference(input_ids=ids))
    assert before >= 9 and after == 0  # every linear weight and bias, then none


def test_sampling_casts_each_trained_weight_once_per_rollout_not_per_token(
        tmp_path: Path) -> None:
    """The trained policy samples under the rollout's one autocast block; autocast caches the
    casts of weights that require grad for the block, so a 12-token rollout casts each
    weight once, not 13 times (the prompt's forward and one per token)."""
    from rlhf.rl.generation import sample_responses

    run = bf16_run(tmp_path)
    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    policy = run.accelerator.prepare(policy)
    query = torch.randint(0, len(tokenizer), (2, 5))

    def sample() -> None:
        sample_responses(policy, query, torch.ones_like(query, dtype=torch.bool),
                         max_new_tokens=12, temperature=1.0, stop_token_ids=[-1], pad_id=0)

    matmul_weights = sum(1 for p in policy.parameters() if p.dim() == 2) - 1  # not wpe
    with torch.no_grad(), run.accelerator.autocast():
        casts = parameter_casts(policy, sample)
    assert matmul_weights <= casts <= 2 * matmul_weights  # weights and biases, once each


def test_cpu_bf16_units_are_read_from_the_cpu_flags() -> None:
    from rlhf.precision import cpu_has_fast_bf16

    assert cpu_has_fast_bf16("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    assert cpu_has_fast_bf16("flags\t: avx2 avx512_bf16\n")
    assert not cpu_has_fast_bf16("flags\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_fast_bf16("model name\t: Apple M2\n")


def test_auto_attention_is_eager_only_on_a_cpu_under_bf16() -> None:
    from rlhf.precision import attention_for

    assert attention_for("auto", "cpu", "bf16") == "eager"
    assert attention_for("auto", "cpu", "no") is None  # transformers' default: SDPA
    assert attention_for("auto", "cuda", "bf16") is None
    assert attention_for("sdpa", "cpu", "bf16") == "sdpa"  # an explicit choice is kept


def test_the_policys_attention_carries_over_to_its_reference_and_value_model() -> None:
    from rlhf.errors import UserError
    from rlhf.models import set_attention
    from rlhf.value_models import value_model_from_policy

    policy = set_attention(load_policy("builtin:tiny-gpt2", seed=0)[0], "eager")
    for model in (policy, frozen_copy(policy), value_model_from_policy(policy)):
        assert model.config._attn_implementation == "eager"
    with pytest.raises(UserError, match="model.attention=no_such_kernel"):
        set_attention(policy, "no_such_kernel")


@pytest.mark.slow
def test_bf16_update_reads_the_rollouts_log_probs_exactly_at_iteration_one(
        tmp_path: Path) -> None:
    """The rollout's log-probs come from the trained policy under the same autocast as the
    update's forward, so before the first optimizer step the ratio is exactly 1: approx-KL
    and clip fraction 0 (one epoch, one minibatch, no micro-batching)."""
    from rlhf.stages.ppo.train import train_ppo

    out = tmp_path / "run"
    train_ppo(load_config(PPOConfig, ROOT / "configs" / "ppo" / "tiny.yaml", [
        f"run.output_dir={out}", "run.progress=false", "run.mixed_precision=bf16",
        "ppo.total_episodes=32", "ppo.ppo_epochs=1", "ppo.num_minibatches=1",
        "ppo.normalization_samples=16"]))
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["policy/approx_kl"] == 0.0 and first["policy/clipfrac"] == 0.0
    assert first["policy/ratio_mean"] == 1.0 and first["objective/kl"] == 0.0


def test_a_lora_models_frozen_base_is_stored_in_bf16_and_merges_in_float32(
        tmp_path: Path) -> None:
    """autocast caches casts only for weights that train, so a LoRA policy's frozen base was
    cast again at every sampled token; `Run.prepare_trained` stores it in bf16 once."""
    from rlhf.adapters import merged_copy
    from rlhf.config import LoraConfig
    from rlhf.rl.generation import sample_responses
    from rlhf.trainable import ready_to_train

    run = bf16_run(tmp_path)
    policy, tokenizer = load_policy("builtin:tiny-gpt2", seed=0)
    lora = ready_to_train(policy, lora=LoraConfig(r=4), base_name="builtin:tiny-gpt2",
                          gradient_checkpointing=False)
    query = torch.randint(0, len(tokenizer), (2, 5))
    with torch.no_grad(), run.accelerator.autocast():
        want = lora(input_ids=query).logits
    lora = run.prepare_trained(lora)
    base = lora.base_model.model.transformer.h[0].attn.c_attn
    assert base.base_layer.weight.dtype == torch.bfloat16
    assert base.lora_A["default"].weight.dtype == torch.float32  # trains: float32 master
    assert base.lora_A["default"].weight.requires_grad

    def sample() -> None:
        sample_responses(lora, query, torch.ones_like(query, dtype=torch.bool),
                         max_new_tokens=12, temperature=1.0, stop_token_ids=[-1], pad_id=0)

    with torch.no_grad(), run.accelerator.autocast():
        got = lora(input_ids=query).logits
        casts = parameter_casts(lora, sample)
    assert torch.equal(got, want)  # the same numbers as autocast's own casts
    trained = sum(1 for p in lora.parameters() if p.requires_grad)
    assert casts <= trained  # each trained weight once at most, never a frozen one per token
    merged = merged_copy(run.accelerator.unwrap_model(lora))
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    assert merged.lm_head.weight is merged.transformer.wte.weight  # tied again


def test_bf16_on_a_cpu_without_bf16_units_says_it_will_not_be_faster(
        tmp_path: Path, monkeypatch, capsys) -> None:
    import rlhf.engine.run

    monkeypatch.setattr(rlhf.engine.run, "cpu_has_fast_bf16", lambda: False)
    bf16_run(tmp_path)
    assert "not expected to be faster" in capsys.readouterr().out
    monkeypatch.setattr(rlhf.engine.run, "cpu_has_fast_bf16", lambda: True)
    bf16_run(tmp_path)
    assert "not expected" not in capsys.readouterr().out
