"""The memory plan of a workload: each model's weights, gradients, optimizer state and
activations, the passes that come and go (generation, rollout forwards, evaluation, the
update), and the peak.

Peak = process baseline + every model's weights + AdamW's state (both held for the whole run)
+ the largest of the passes, which run one after another:

- update: one micro-batch's activations of every trained model, and the larger of their
  gradients (alive from a minibatch's first backward pass to its optimizer step, which sets
  them to None) and the backward passes' workspace (`arithmetic.BACKWARD_WORKSPACE`);
- generation: the KV cache of a rollout batch (RL);
- rollout forwards: the largest no-grad pass of the policy, reference, value or reward model
  over a rollout batch (RL);
- evaluation: the evaluation batch's no-grad forward (SFT, reward model, DPO);
- reference log-probs (DPO): the reference's table made once before training (a separate
  reference's weights live only then), or its forward in every step;
- saving: with LoRA, the merged copy of a trained model made to write the final merged
  folder (`adapters.merged_copy`), one model at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.planning import arithmetic as bytes_of
from rlhf.planning.lora import adapters_per_layer, lora_shape
from rlhf.planning.shapes import ModelShape, read_shape
from rlhf.planning.workload import Workload

BASELINE_RSS = 400 * 2**20
"""Resident memory of a run with (almost) no model: Python, torch, transformers, accelerate,
the tokenizers and the stage's code. Measured as the peak RSS of `rlhf train-ppo --config
configs/ppo/tiny.yaml` (two 2-layer, 64-wide models: under 10 MB of tensors): 409 MiB on the
project's 2-core Intel Xeon build machine, torch 2.13.0+cpu, transformers 5.24."""

CUDA_CONTEXT = 500 * 2**20
"""GPU memory the CUDA context and kernels take before any tensor (a typical figure for
recent GPUs and torch; not measured on the project's machines)."""

REWARD_MAX_LENGTH = 512
"""The reward model's default token limit (`reward.reading`: the model's own, at most 512)."""


@dataclass(frozen=True)
class Shapes:
    """The shapes of a workload's models (None where there is no such model)."""

    trained: ModelShape
    value: ModelShape | None = None
    reward: ModelShape | None = None
    reference: ModelShape | None = None
    """DPO's model.reference (None: the policy's own shape)."""


@dataclass(frozen=True)
class ModelMemory:
    """One model's part of the plan, in bytes (parameters in counts)."""

    role: str
    name: str
    params: int
    """Parameters held in memory (LoRA adapters and the head's trainable copy included)."""
    trainable: int
    weights: int
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    """One micro-batch's forward + backward (trained models)."""
    workspace: int = 0
    """Resident memory its backward pass adds beyond live tensors (`BACKWARD_WORKSPACE`)."""
    forward: int = 0
    """Its largest no-grad pass (rollout, reference, scoring, evaluation)."""
    note: str = ""


@dataclass(frozen=True)
class Phase:
    name: str
    bytes: int
    """Memory on top of the baseline, weights and optimizer state while it runs."""
    what: str
    parts: tuple[tuple[str, int], ...] = ()
    """The components the bytes are made of, for the report."""


@dataclass(frozen=True)
class MemoryPlan:
    workload: Workload
    models: tuple[ModelMemory, ...]
    phases: tuple[Phase, ...]
    baseline: int

    @property
    def held(self) -> int:
        """Held for the whole run: baseline, weights, optimizer state."""
        return self.baseline + sum(m.weights + m.optimizer for m in self.models)

    @property
    def peak_phase(self) -> Phase:
        return max(self.phases, key=lambda phase: phase.bytes)

    @property
    def peak(self) -> int:
        return self.held + self.peak_phase.bytes


def read_shapes(workload: Workload) -> Shapes:
    """The models' shapes from their configs (no weights): the trained model, PPO's value
    model (the policy's backbone as a classifier, or the reward model it starts from) and an
    RL stage's reward model."""
    remote = workload.trust_remote_code
    if workload.stage == "reward":
        return Shapes(read_shape(workload.trained, "classifier", key="model.name_or_path",
                                 trust_remote_code=remote))
    key = "model.policy" if workload.is_rl else "model.name_or_path"
    trained = read_shape(workload.trained, "causal_lm", key=key, trust_remote_code=remote)
    if workload.reference_model is not None:
        return Shapes(trained, reference=read_shape(
            workload.reference_model, "causal_lm", key="model.reference",
            trust_remote_code=remote))
    if not workload.is_rl:
        return Shapes(trained)
    reward = None if workload.reward is None else read_shape(
        workload.reward, "classifier", key="model.reward", trust_remote_code=remote)
    value = None
    if workload.stage == "ppo":
        value = reward if _value_from_reward(workload.value_init, trained, reward) else \
            read_shape(workload.trained, "classifier", key="model.policy",
                       trust_remote_code=remote)
    return Shapes(trained, value, reward)


def _value_from_reward(value_init: str, policy: ModelShape, reward: ModelShape | None) -> bool:
    """PPO's rule (stages/ppo/setup.py): the reward model seeds the value model when asked, or
    on 'auto' when it is a decoder over the policy's vocabulary (judged here by its size)."""
    if reward is None or value_init == "policy":
        return False
    return value_init == "reward" or (reward.family != "encoder" and reward.vocab == policy.vocab)


def memory_plan(workload: Workload, shapes: Shapes) -> MemoryPlan:
    """The plan of `workload` with its models' `shapes` (pure arithmetic)."""
    models = [_trained_model(workload, shapes.trained)]
    phases = []
    if workload.is_rl:
        models += _rl_models(workload, shapes)
        policy = shapes.trained
        phases.append(Phase("generation", bytes_of.generation_bytes(
            policy, workload.rollout_rows, workload.prompt_tokens, workload.new_tokens,
            workload.precision), f"KV cache of {workload.rollout_rows} x "
            f"{workload.seq_len} tokens"))
        phases.append(Phase("rollout forwards", max(m.forward for m in models),
                            f"no-grad passes over {workload.rollout_rows} sequences"))
    else:
        phases.append(Phase("evaluation", models[0].forward,
                            f"no-grad pass over {workload.eval_rows} sequences"))
    if workload.reference != "none":
        reference, phase = _dpo_reference(workload, shapes.reference or shapes.trained)
        models.append(reference)
        phases.append(phase)
    if workload.lora_r and workload.lora_merge:
        largest = max(bytes_of.weight_bytes(m.params) for m in models if m.trainable)
        phases.append(Phase("saving", largest, "a merged copy of a LoRA model, in float32"))
    gradients = sum(m.gradients for m in models)
    gradients += gradients if workload.processes > 1 else 0  # DDP's flat gradient buckets
    workspace = sum(m.workspace for m in models)
    # Checkpointing recomputes the layers during the backward pass, between the gradients'
    # allocations: the workspace comes on top of the gradients instead of holding them.
    rest = gradients + workspace if workload.checkpointing else max(gradients, workspace)
    activations = sum(m.activations for m in models)
    rule = "+ gradients + workspace" if workload.checkpointing else \
        "+ max(gradients, workspace)"
    phases.insert(0, Phase(
        "update", activations + rest, f"activations of {workload.micro_rows} x "
        f"{workload.seq_len} tokens {rule}", (("activations", activations),
                                               ("gradients", gradients),
                                               ("backward workspace", workspace))))
    baseline = BASELINE_RSS if workload.device == "cpu" else CUDA_CONTEXT
    return MemoryPlan(workload, tuple(models), tuple(phases), baseline)


def _trained(workload: Workload, shape: ModelShape, role: str, *, adapters: bool,
             logit_positions: int, forward: int, note: str = "") -> ModelMemory:
    """A trained model: in full, or frozen (4-bit with QLoRA; under bf16/fp16 its linear
    weights in half precision, `Run.prepare_trained`) with LoRA adapters."""
    quantized = workload.quantize == "4bit"
    frozen_base = adapters and not quantized and workload.precision != "fp32"
    if adapters:
        lora = lora_shape(shape, workload.lora_r, workload.lora_targets)
        base = bytes_of.quantized_weight_bytes(shape) if quantized \
            else bytes_of.frozen_weight_bytes(shape, workload.precision)
        params, trainable = shape.params + lora.added, lora.trainable
        weights = base + bytes_of.weight_bytes(lora.added)
        per_layer = adapters_per_layer(lora, shape.layers)
    else:
        params = trainable = shape.params
        weights, per_layer = bytes_of.weight_bytes(shape.params), 0.0
    sizes = (shape, workload.micro_rows, workload.seq_len)
    options = {"checkpointing": workload.checkpointing, "adapters_per_layer": per_layer,
               "lora_rank": workload.lora_r if adapters else 0, "frozen_base": frozen_base}
    activations = bytes_of.trained_forward_bytes(*sizes, logit_positions, workload.precision,
                                                 **options)
    # With checkpointing the backward pass recomputes every layer's tensors once: the same
    # workspace as without it. It is glibc's (CPU); on a GPU, torch's caching allocator reuses
    # freed blocks, and the update is counted as activations + gradients (no workspace).
    workspace = bytes_of.backward_workspace_bytes(bytes_of.layer_stack_bytes(
        *sizes, workload.precision, **(options | {"checkpointing": False}))) \
        if workload.device == "cpu" else 0
    return ModelMemory(role, shape.name, params, trainable, weights,
                       bytes_of.gradient_bytes(trainable), bytes_of.adamw_bytes(trainable),
                       activations, workspace, forward, note)


def _trained_model(workload: Workload, shape: ModelShape) -> ModelMemory:
    """The policy (RL, SFT) or the reward model (reward stage)."""
    role = {"sft": "model", "reward": "reward model"}.get(workload.stage, "policy")
    if workload.is_rl:
        forward = bytes_of.no_grad_forward_bytes(shape, workload.rollout_rows, workload.seq_len,
                                                 workload.logit_positions, workload.precision)
    else:  # evaluation: the logits and their log-softmax (SFT); one score per row (reward)
        forward = bytes_of.no_grad_forward_bytes(shape, workload.eval_rows, workload.seq_len,
                                                 workload.logit_positions, workload.precision,
                                                 logit_copies=2)
    model = _trained(workload, shape, role, adapters=workload.lora_r > 0,
                     logit_positions=workload.logit_positions, forward=forward)
    if not workload.shared_value:
        return model
    head = shape.hidden + 1  # the scalar value head on the policy's last hidden state
    # The rollout's value pass runs the whole LM (`models.token_scores`): logits at every
    # position, and every hidden state.
    values = bytes_of.no_grad_forward_bytes(shape, workload.rollout_rows, workload.seq_len,
                                            workload.seq_len, workload.precision,
                                            logit_copies=1, keeps_hidden_states=True)
    return ModelMemory(
        model.role + " + value head", model.name, model.params + head, model.trainable + head,
        model.weights + bytes_of.weight_bytes(head),
        model.gradients + bytes_of.gradient_bytes(head),
        model.optimizer + bytes_of.adamw_bytes(head), model.activations, model.workspace,
        max(model.forward, values), "one backbone for policy and value")


def _rl_models(workload: Workload, shapes: Shapes) -> list[ModelMemory]:
    """The reference, PPO's value model and the reward model of an RL workload."""
    policy, rows = shapes.trained, workload.rollout_rows
    models = []
    if workload.kl_reference:
        forward = bytes_of.no_grad_forward_bytes(policy, rows, workload.seq_len,
                                                 workload.logit_positions, workload.precision)
        if workload.lora_r:
            models.append(ModelMemory("reference", policy.name, 0, 0, 0, forward=forward,
                                      note="the policy with its adapters off: no copy"))
        else:
            models.append(ModelMemory(
                "reference", policy.name, policy.params, 0,
                bytes_of.frozen_weight_bytes(policy, workload.precision), forward=forward))
    if shapes.value is not None and not workload.shared_value:
        forward = bytes_of.no_grad_forward_bytes(shapes.value, rows, workload.seq_len, 0,
                                                 workload.precision, keeps_hidden_states=True)
        models.append(_trained(workload, shapes.value, "value",
                               adapters=workload.lora_r > 0 and workload.lora_value,
                               logit_positions=0, forward=forward))
    if shapes.reward is not None:
        models.append(_reward_model(workload, shapes.reward))
    return models


def _dpo_reference(workload: Workload, shape: ModelShape) -> tuple[ModelMemory, Phase]:
    """DPO's reference and the pass that reads it: a forward over the evaluation batch for the
    precomputed table (`stages.dpo.reference.compute_table`), during which a separate
    reference's weights are held (they are freed before training), or a forward over every
    micro-batch with the weights held all run. With LoRA it is the policy, adapters off."""
    precompute = workload.reference == "precompute"
    rows = workload.eval_rows if precompute else workload.micro_rows
    forward = bytes_of.no_grad_forward_bytes(shape, rows, workload.seq_len,
                                             workload.logit_positions, workload.precision,
                                             logit_copies=2)
    weights = 0 if workload.lora_r else bytes_of.frozen_weight_bytes(shape, workload.precision)
    if precompute:
        note = "log-probs computed once before training" + \
            ("" if workload.lora_r else ", then freed")
        return (ModelMemory("reference", shape.name, 0, 0, 0, forward=forward, note=note),
                Phase("reference log-probs", weights + forward,
                      f"no-grad pass over {rows} sequences, once"))
    note = "the policy with its adapters off: no copy" if workload.lora_r else ""
    return (ModelMemory("reference", shape.name, 0 if workload.lora_r else shape.params, 0,
                        weights, forward=forward, note=note),
            Phase("reference forwards", forward, f"no-grad pass over {rows} sequences"))


def _reward_model(workload: Workload, shape: ModelShape) -> ModelMemory:
    """The frozen reward model of an RL run: it reads prompt + response re-tokenized with its
    own tokenizer (about as many tokens, plus its special tokens), cut to its limit."""
    limit = workload.reward_max_length or REWARD_MAX_LENGTH
    tokens = min(workload.seq_len + 4, limit)
    rows = min(workload.reward_rows or workload.rollout_rows, workload.rollout_rows)
    forward = bytes_of.no_grad_forward_bytes(shape, rows, tokens, 0, workload.precision)
    return ModelMemory("reward", shape.name, shape.params, 0,
                       bytes_of.frozen_weight_bytes(shape, workload.precision),
                       forward=forward, note=f"reads <= {tokens} tokens")
