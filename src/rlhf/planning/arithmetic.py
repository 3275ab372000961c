"""The memory arithmetic: bytes of each component, as pure functions of shapes and counts.

Parameters, gradients and AdamW's state are exact counts. Activations count the tensors
autograd keeps for the backward pass, tensor by tensor; the counts were read with
`torch.autograd.graph.saved_tensors_hooks` on GPT-2 and RoBERTa layers (transformers 5.24,
SDPA attention, dropout off, torch's fused tanh GELU), and the whole plan is checked against
measured peak RSS in benchmarks/memory_plan.py (BENCHMARKS.md).

Notation: B rows (sequences), T tokens per row, d hidden width, I the MLP's inner width,
h attention heads, V the vocabulary, L layers, r the LoRA rank.
"""

from __future__ import annotations

from rlhf.planning.shapes import ModelShape

FLOAT32 = 4
"""Bytes of a float32: trained weights, gradients and AdamW's state are float32 in every stage
(mixed precision is autocast: float32 weights, half-precision matrix multiplies); frozen
models hold their linear layers in half precision (`frozen_weight_bytes`)."""

ACTIVATION_WIDTHS = {"gpt2": (10, 2), "encoder": (8, 2), "decoder": (10, 2)}
"""(floats x d, floats x I) one layer keeps per token for the backward pass.

GPT-2 block: the two layer-norm inputs (the residual stream, 2d) and outputs (c_attn's and
c_fc's inputs, 2d), the fused q|k|v projection (3d), SDPA's output and the merged heads that
c_proj reads (2d), then c_fc's output that GELU reads and GELU's output that the MLP's c_proj
reads (2 x I). Total 10d + 2I (18d at I = 4d).
BERT/RoBERTa layer: the same without the fused projection's extra copy: q, k, v (3d), the
attention output's dense input, the two residual sums the layer norms read, and the MLP's
two (2 x I): 8d + 2I. Any other decoder is counted as GPT-2 (an estimate), with 2 x I more
for a gated MLP (Llama: gate output, SiLU output, up output, their product).
Every layer also keeps its (B, 1, T, T) float attention mask (T floats per token), SDPA's
log-sum-exp (h floats) and the two layer norms' mean and inverse std (4 floats)."""

NORM_STATS = 4
"""Floats per token per layer: mean and inverse std of the layer's two layer norms."""

LOGIT_COPIES_TRAINING = 3
"""(B, R, V) float32 tensors alive at once around a trained log-softmax: forward, the logits,
the log-softmax output (kept for the backward) and the entropy's p log p temporary; backward,
the kept output, its gradient and the logits' gradient (`algo.logprobs`)."""

LOGIT_COPIES_NO_GRAD = 3
"""(B, R, V) tensors of a no-grad log-prob pass: the logits, logits / temperature and the
log-softmax (rollout and reference passes)."""

BACKWARD_WORKSPACE = 0.85
"""Resident memory a backward pass adds, as a fraction of the layers' saved activations.

The backward pass computes, layer by layer, the gradient of each saved activation: temporaries
as large as the activations themselves. glibc's allocator serves blocks under its mmap
threshold (at most 32 MiB: a layer's tensors at these sizes) from its heap and returns freed
heap memory to the system only from the top, so the process's resident memory grows by a
share of the activations during the backward pass and stays there; the parameter gradients
and AdamW's state are then allocated in those freed blocks. An update's peak is therefore
activations + max(gradients, this workspace), not their sum. 0.85 is fit where the gradients
are negligible: PPO with LoRA, whose peak RSS exceeded held memory + live activations by 1.00
(GPT-2-small) and 0.75 (GPT-2-medium) x the layers' activations; the other rows of
benchmarks/memory_plan.py check it (BENCHMARKS.md). On a GPU torch's caching allocator
reuses freed blocks, and the plan uses no workspace there."""

NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
"""QLoRA's 4-bit NF4 weights: half a byte each, one 8-bit absmax per block of 64 and, with
double quantisation, one float32 constant per 256 blocks (Dettmers et al. 2023)."""


def dtype_bytes(precision: str) -> int:
    """Bytes of an activation under `precision` ('fp32', 'bf16' or 'fp16')."""
    return FLOAT32 if precision == "fp32" else 2


def weight_bytes(params: int) -> int:
    """float32 weights."""
    return FLOAT32 * params


def frozen_weight_bytes(shape: ModelShape, precision: str) -> int:
    """Weights of a model that only runs (a reference, a reward model). Under half precision
    its linear layers are stored in 2 bytes per weight and its LM head gets a 2-byte copy
    beside the float32 embedding table it is tied to (`precision`); biases and an
    untied head's float32 copy are counted at float32, a small over-estimate. float32:
    `weight_bytes`."""
    if precision == "fp32":
        return weight_bytes(shape.params)
    head = shape.vocab * shape.hidden if shape.output_head else 0
    return FLOAT32 * shape.params - 2 * shape.linear_params + 2 * head


def quantized_weight_bytes(shape: ModelShape) -> int:
    """A 4-bit base: its linear layers in NF4, everything else (embeddings, norms, the output
    head) float32, as peft's prepare_model_for_kbit_training leaves them."""
    linear = shape.linear_params
    return round(NF4_BYTES_PER_WEIGHT * linear) + FLOAT32 * (shape.params - linear)


def gradient_bytes(trainable: int) -> int:
    """One float32 gradient per trainable parameter."""
    return FLOAT32 * trainable


def adamw_bytes(trainable: int) -> int:
    """AdamW's two float32 moments (exp_avg, exp_avg_sq) per trainable parameter."""
    return 2 * FLOAT32 * trainable


def layer_floats_per_token(shape: ModelShape, seq_len: int) -> tuple[int, int]:
    """(half-precision-able floats, always-float32 floats) one layer keeps per token.

    Under autocast the matrix multiplies' inputs and outputs are half precision; the
    residual stream, the layer-norm statistics and SDPA's log-sum-exp stay float32.
    """
    per_d, per_i = ACTIVATION_WIDTHS[shape.family]
    per_i += 2 if shape.gated_mlp else 0
    residual = 2 * shape.hidden
    matmul_side = per_d * shape.hidden - residual + per_i * shape.intermediate + seq_len
    return matmul_side, residual + shape.heads + NORM_STATS


def layer_activation_bytes(shape: ModelShape, rows: int, seq_len: int, precision: str, *,
                           lora_rank: int = 0, adapters_per_layer: float = 0.0) -> int:
    """Bytes one layer keeps for its backward pass over B x T tokens. Each LoRA adapter adds
    the (tokens, r) output of its A matrix, which B's gradient reads."""
    half, full = layer_floats_per_token(shape, seq_len)
    half += adapters_per_layer * lora_rank
    per_token = dtype_bytes(precision) * half + FLOAT32 * full
    return round(rows * seq_len * per_token)


def training_logit_bytes(shape: ModelShape, rows: int, positions: int) -> int:
    """The float32 (B, R, V) tensors around a trained log-softmax (0 for a classifier)."""
    return LOGIT_COPIES_TRAINING * FLOAT32 * rows * positions * shape.vocab if positions else 0


def autocast_weight_copies(shape: ModelShape, precision: str, *,
                           frozen_base: bool = False) -> int:
    """Half-precision copies of the linear weights that autocast makes and the backward pass
    keeps (one per weight a gradient flows through; none at float32, and none for a LoRA
    model's `frozen_base`, stored in half precision already: `frozen_weight_bytes`)."""
    if precision == "fp32" or frozen_base:
        return 0
    head = shape.vocab * shape.hidden if shape.output_head else 0
    return 2 * (shape.linear_params + head)


def layer_stack_bytes(shape: ModelShape, rows: int, seq_len: int, precision: str, *,
                      checkpointing: bool = False, lora_rank: int = 0,
                      adapters_per_layer: float = 0.0, frozen_base: bool = False) -> int:
    """What the transformer layers keep for the backward pass over B x T tokens.

    Without checkpointing every layer keeps its tensors until the backward pass reaches it.
    With (non-reentrant) gradient checkpointing a layer keeps only its float32 input, and the
    backward pass recomputes one layer's tensors at a time (Chen et al. 2016).
    """
    layer = layer_activation_bytes(shape, rows, seq_len, precision, lora_rank=lora_rank,
                                   adapters_per_layer=adapters_per_layer)
    if checkpointing:
        return shape.layers * FLOAT32 * rows * seq_len * shape.hidden + layer
    return shape.layers * layer + autocast_weight_copies(shape, precision,
                                                         frozen_base=frozen_base)


def trained_forward_bytes(shape: ModelShape, rows: int, seq_len: int, logit_positions: int,
                          precision: str, *, checkpointing: bool = False, lora_rank: int = 0,
                          adapters_per_layer: float = 0.0, frozen_base: bool = False) -> int:
    """Activation memory of one forward + backward over a micro-batch of B x T tokens: the
    layers' (`layer_stack_bytes`), the final norm's input, the hidden states the output head
    reads, and the logits' tensors."""
    layers = layer_stack_bytes(shape, rows, seq_len, precision, checkpointing=checkpointing,
                               lora_rank=lora_rank, adapters_per_layer=adapters_per_layer,
                               frozen_base=frozen_base)
    residual = FLOAT32 * rows * seq_len * shape.hidden
    head_input = FLOAT32 * rows * logit_positions * shape.hidden
    return (layers + residual + head_input
            + training_logit_bytes(shape, rows, logit_positions))


def backward_workspace_bytes(layer_stack: int) -> int:
    """Resident memory the backward pass adds beyond the live tensors (see BACKWARD_WORKSPACE)."""
    return round(BACKWARD_WORKSPACE * layer_stack)


def no_grad_forward_bytes(shape: ModelShape, rows: int, seq_len: int, logit_positions: int,
                          precision: str, *, logit_copies: int = LOGIT_COPIES_NO_GRAD,
                          keeps_hidden_states: bool = False) -> int:
    """Peak working memory of a forward pass without gradients (rollout, reference, reward,
    evaluation): one layer's temporaries at a time (the residual, the q|k|v and attention
    output, the MLP's two (B, T, I) tensors, the mask), then the logits' copies. The value
    model asks for every layer's hidden states (`models.token_scores`): L + 1 (B, T, d)."""
    per_token = 6 * shape.hidden + 2 * shape.intermediate + seq_len
    layer = dtype_bytes(precision) * rows * seq_len * per_token
    logits = logit_copies * FLOAT32 * rows * logit_positions * shape.vocab
    hidden = (shape.layers + 1) * FLOAT32 * rows * seq_len * shape.hidden \
        if keeps_hidden_states else 0
    return layer + logits + hidden


def kv_cache_bytes(shape: ModelShape, rows: int, tokens: int, precision: str) -> int:
    """Keys and values of every layer for B rows of `tokens` tokens."""
    return 2 * shape.layers * rows * tokens * shape.kv_hidden * dtype_bytes(precision)


def generation_bytes(shape: ModelShape, rows: int, prompt_tokens: int, new_tokens: int,
                     precision: str) -> int:
    """Sampling B responses (`rl.generation`): the KV cache at full length, plus the copy of
    one layer's keys and values made each time the cache grows by a token, the prompt pass's
    working set (logits at the last position only) and the Gumbel-max sampler's (B, V)
    float32 temporaries (logits / T, the uniform noise and its two logarithms)."""
    tokens = prompt_tokens + new_tokens
    cache = kv_cache_bytes(shape, rows, tokens, precision)
    growing = cache // max(shape.layers, 1)
    prompt_pass = no_grad_forward_bytes(shape, rows, prompt_tokens, 1, precision)
    sampler = 4 * FLOAT32 * rows * shape.vocab
    return cache + growing + prompt_pass + sampler
