"""The plan's arithmetic on hand-computed cases: a 2-layer GPT-2-like model of known sizes
(d = 8, I = 32, h = 2, V = 10) whose every byte is counted here by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rlhf.planning import arithmetic as a
from rlhf.planning.advice import advise
from rlhf.planning.plan import BASELINE_RSS, Shapes, memory_plan
from rlhf.planning.shapes import Linear, ModelShape
from rlhf.planning.workload import Workload

# Two layers of c_attn (8 -> 24), c_proj (8 -> 8), c_fc (8 -> 32), mlp c_proj (32 -> 8).
LINEARS = tuple(Linear(f"h.{i}.{name}", n_in, n_out) for i in range(2)
                for name, n_in, n_out in (("attn.c_attn", 8, 24), ("attn.c_proj", 8, 8),
                                          ("mlp.c_fc", 8, 32), ("mlp.c_proj", 32, 8)))
TINY = ModelShape(name="tiny", family="gpt2", params=1000, layers=2, hidden=8, heads=2,
                  kv_hidden=8, intermediate=32, vocab=10, gated_mlp=False, linears=LINEARS,
                  output_head="lm_head", head_params=0)
VALUE = replace(TINY, params=990, output_head=None, head_params=8)


def test_parameters_gradients_and_adamw_state() -> None:
    assert a.weight_bytes(1000) == 4000
    assert a.gradient_bytes(250) == 1000
    assert a.adamw_bytes(250) == 2000  # two float32 moments


def test_one_layer_keeps_18d_plus_mask_heads_and_norm_stats_per_token() -> None:
    # 10 d + 2 I = 80 + 64 floats, the (T = 5) mask row, 2 heads' log-sum-exp, 4 norm stats
    per_token = 80 + 64 + 5 + 2 + 4
    assert a.layer_activation_bytes(TINY, 3, 5, "fp32") == 3 * 5 * per_token * 4


def test_half_precision_keeps_the_residual_stream_in_float32() -> None:
    half = 80 - 16 + 64 + 5  # matmul side: everything but the two residual inputs, + mask
    full = 16 + 2 + 4  # residual inputs, log-sum-exp, norm statistics
    assert a.layer_activation_bytes(TINY, 3, 5, "bf16") == 3 * 5 * (2 * half + 4 * full)


def test_lora_adds_each_adapters_rank_wide_output() -> None:
    plain = a.layer_activation_bytes(TINY, 3, 5, "fp32")
    assert a.layer_activation_bytes(TINY, 3, 5, "fp32", lora_rank=4,
                                    adapters_per_layer=4) == plain + 3 * 5 * 16 * 4


def test_trained_forward_with_and_without_checkpointing() -> None:
    layer = 3 * 5 * 155 * 4  # 9300
    residual = 3 * 5 * 8 * 4  # 480: a layer's input, or the final norm's
    head_input = 3 * 2 * 8 * 4  # 192: hidden states at the 2 logit positions
    logits = 3 * 3 * 2 * 10 * 4  # 720: three (B, R, V) float32 tensors
    assert a.trained_forward_bytes(TINY, 3, 5, 2, "fp32") == \
        2 * layer + residual + head_input + logits
    assert a.trained_forward_bytes(TINY, 3, 5, 2, "fp32", checkpointing=True) == \
        2 * residual + layer + residual + head_input + logits


def test_autocast_keeps_half_precision_weight_copies() -> None:
    linear = 2 * (8 * 24 + 8 * 8 + 8 * 32 + 32 * 8)  # 1536 weights
    assert TINY.linear_params == linear
    assert a.autocast_weight_copies(TINY, "bf16") == 2 * (linear + 10 * 8)
    assert a.autocast_weight_copies(TINY, "fp32") == 0


def test_kv_cache_and_generation() -> None:
    assert a.kv_cache_bytes(TINY, 3, 7, "fp32") == 2 * 2 * 3 * 7 * 8 * 4  # K and V per layer
    cache = 2 * 2 * 3 * (4 + 3) * 8 * 4
    prompt_pass = 4 * 3 * 4 * (6 * 8 + 2 * 32 + 4) + 3 * 4 * 3 * 1 * 10
    sampler = 4 * 4 * 3 * 10
    assert a.generation_bytes(TINY, 3, 4, 3, "fp32") == cache + cache // 2 + prompt_pass + sampler


def test_no_grad_forward() -> None:
    layer = 4 * 3 * 5 * (6 * 8 + 2 * 32 + 5)
    assert a.no_grad_forward_bytes(TINY, 3, 5, 2, "fp32") == layer + 3 * 4 * 3 * 2 * 10
    hidden = 3 * 4 * 3 * 5 * 8  # L + 1 hidden states
    assert a.no_grad_forward_bytes(TINY, 3, 5, 0, "fp32", keeps_hidden_states=True) == \
        layer + hidden


def test_4bit_base() -> None:
    shape = replace(TINY, params=2000)
    assert a.quantized_weight_bytes(shape) == round(1536 * 0.5 + 1536 / 64 + 1536 * 4 / 16384) \
        + 4 * (2000 - 1536)


PPO = Workload(stage="ppo", processes=1, device="cpu", precision="fp32", trained="tiny",
               reward=None, micro_rows=3, micro_divides=6, seq_len=5, logit_positions=2,
               rollout_rows=6, reward_rows=6, prompt_tokens=3, new_tokens=2)


def test_backward_workspace_is_a_share_of_the_layers_activations() -> None:
    assert a.layer_stack_bytes(TINY, 3, 5, "fp32") == 2 * 9300
    assert a.layer_stack_bytes(TINY, 3, 5, "fp32", checkpointing=True) == 2 * 480 + 9300
    assert a.backward_workspace_bytes(18600) == round(a.BACKWARD_WORKSPACE * 18600)


def test_ppo_peak_is_held_memory_plus_the_update() -> None:
    plan = memory_plan(PPO, Shapes(TINY, VALUE, None))
    assert [m.role for m in plan.models] == ["policy", "reference", "value"]
    weights = 4 * (1000 + 1000 + 990)
    adamw = 8 * (1000 + 990)
    policy = 2 * 9300 + 480 + 192 + 720
    value = 2 * 9300 + 480  # no logits
    workspace = 2 * round(a.BACKWARD_WORKSPACE * 2 * 9300)
    gradients = 4 * (1000 + 990)
    assert plan.held == BASELINE_RSS + weights + adamw
    assert plan.peak_phase.name == "update"
    assert plan.peak == plan.held + policy + value + max(gradients, workspace)


def test_checkpointing_keeps_layer_inputs_and_adds_the_workspace_to_the_gradients() -> None:
    plan = memory_plan(replace(PPO, checkpointing=True), Shapes(TINY, VALUE, None))
    policy = (2 * 480 + 9300) + 480 + 192 + 720
    value = (2 * 480 + 9300) + 480
    workspace = 2 * round(a.BACKWARD_WORKSPACE * 2 * 9300)  # every layer recomputed once
    assert plan.phases[0].bytes == policy + value + 4 * (1000 + 990) + workspace


def test_lora_drops_the_reference_copy_and_trains_adapters_only() -> None:
    plan = memory_plan(replace(PPO, lora_r=2), Shapes(TINY, VALUE, None))
    policy, reference, value = plan.models
    adapters = 2 * 2 * ((8 + 24) + (8 + 8) + (8 + 32) + (32 + 8))  # r (in + out), 2 layers
    assert (policy.trainable, policy.params) == (adapters, 1000 + adapters)
    assert reference.weights == 0
    assert value.trainable == adapters + 8  # its head trains in full (and is held twice)
    assert value.weights == 4 * (990 + adapters + 8)
    saving = {phase.name: phase.bytes for phase in plan.phases}["saving"]
    assert saving == max(policy.weights, value.weights)  # the merged copy written at the end
    half = memory_plan(replace(PPO, lora_r=2, precision="bf16"), Shapes(TINY, VALUE, None))
    policy16, _, value16 = half.models  # the frozen base in half precision (Run.prepare_trained)
    assert policy16.weights == a.frozen_weight_bytes(TINY, "bf16") + 4 * adapters
    assert value16.weights == a.frozen_weight_bytes(VALUE, "bf16") + 4 * (adapters + 8)
    assert {p.name: p.bytes for p in half.phases}["saving"] == saving  # merged in float32
    unmerged = memory_plan(replace(PPO, lora_r=2, lora_merge=False), Shapes(TINY, VALUE, None))
    assert "saving" not in {phase.name for phase in unmerged.phases}


def test_shared_value_head_drops_the_value_model() -> None:
    plan = memory_plan(replace(PPO, shared_value=True), Shapes(TINY, VALUE, None))
    assert [m.role for m in plan.models] == ["policy + value head", "reference"]
    assert plan.models[0].trainable == 1000 + 9


def test_several_processes_add_ddp_buckets() -> None:
    one = memory_plan(PPO, Shapes(TINY, VALUE, None))
    two = memory_plan(replace(PPO, processes=2), Shapes(TINY, VALUE, None))
    activations = sum(m.activations for m in one.models)
    assert two.phases[0].bytes == activations + max(2 * 4 * (1000 + 990),
                                                    sum(m.workspace for m in one.models))


def test_advice_names_options_that_fit() -> None:
    shapes = Shapes(TINY, VALUE, None)
    peak = memory_plan(PPO, shapes).peak
    advice = advise(PPO, shapes, peak - 1)
    assert not advice.fits
    fitting = [o for o in advice.options if o.peak <= peak - 1]
    assert fitting, advice.options
    keys = {item.split("=")[0] for o in advice.options for item in o.overrides}
    # Rank-16 adapters on this 8-wide model hold more than the model, and the rollout is not
    # the peak: neither lowers it, so neither is offered.
    assert keys == {"train.gradient_checkpointing", "model.value", "train.micro_batch_size"}
    assert all(o.peak == memory_plan(o.workload, shapes).peak for o in advice.options)
    assert advise(PPO, shapes, peak).fits


@pytest.mark.parametrize("budget", [1, BASELINE_RSS])
def test_advice_says_when_nothing_fits(budget: int) -> None:
    advice = advise(PPO, Shapes(TINY, VALUE, None), budget)
    assert advice.combined is not None and advice.combined.peak > budget


def test_on_a_gpu_the_update_is_activations_plus_gradients() -> None:
    plan = memory_plan(replace(PPO, device="cuda"), Shapes(TINY, VALUE, None))
    policy = 2 * 9300 + 480 + 192 + 720
    value = 2 * 9300 + 480
    assert plan.phases[0].bytes == policy + value + 4 * (1000 + 990)
    assert plan.baseline != BASELINE_RSS  # the CUDA context, not a CPU process's RSS


DPO = Workload(stage="dpo", processes=1, device="cpu", precision="fp32", trained="tiny",
               reward=None, micro_rows=6, micro_divides=6, seq_len=5, logit_positions=5,
               eval_rows=4, reference="precompute")


def test_dpo_reference_table_is_one_pass_before_training() -> None:
    plan = memory_plan(DPO, Shapes(TINY))
    assert [m.role for m in plan.models] == ["policy", "reference"]
    assert plan.held == BASELINE_RSS + 4 * 1000 + 8 * 1000  # the reference is freed
    # 4 rows x 5 tokens: one layer's 6d + 2I + T floats, then logits and their log-softmax
    forward = 4 * 4 * 5 * (48 + 64 + 5) + 2 * 4 * 4 * 5 * 10
    phases = {phase.name: phase.bytes for phase in plan.phases}
    assert phases["reference log-probs"] == 4 * 1000 + forward
    with_lora = {phase.name: phase.bytes for phase in
                 memory_plan(replace(DPO, lora_r=2), Shapes(TINY)).phases}
    assert with_lora["reference log-probs"] == forward  # the policy, adapters off


def test_dpo_reference_on_the_fly_is_held_and_run_per_micro_batch() -> None:
    plan = memory_plan(replace(DPO, reference="on_the_fly"), Shapes(TINY))
    assert plan.held == BASELINE_RSS + 2 * 4 * 1000 + 8 * 1000
    forward = 4 * 6 * 5 * (48 + 64 + 5) + 2 * 4 * 6 * 5 * 10
    assert {phase.name: phase.bytes for phase in plan.phases}["reference forwards"] == forward
    free = memory_plan(replace(DPO, reference="none"), Shapes(TINY))
    assert [m.role for m in free.models] == ["policy"]


def test_frozen_models_hold_linear_weights_in_half_precision() -> None:
    assert a.frozen_weight_bytes(TINY, "fp32") == 4000
    # 4 x 1000 - 2 x 1536 linear weights + a 2-byte copy of the 10 x 8 LM head
    assert a.frozen_weight_bytes(TINY, "bf16") == 4000 - 2 * 1536 + 2 * 80
    assert a.frozen_weight_bytes(VALUE, "fp16") == 4 * 990 - 2 * 1536  # no LM head


def test_frozen_weight_bytes_match_a_model_stored_for_bf16() -> None:
    from rlhf.models import load_policy
    from rlhf.planning.shapes import shape_of
    from rlhf.precision import store_matmul_weights_in

    model = load_policy("builtin:tiny-gpt2", seed=0)[0]
    shape = shape_of(model, "builtin:tiny-gpt2")
    store_matmul_weights_in(model.requires_grad_(False), "bf16")
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    biases = sum(layer.out_features for layer in shape.linears)  # counted at 4 bytes, not 2
    assert a.frozen_weight_bytes(shape, "bf16") == held + 2 * biases
