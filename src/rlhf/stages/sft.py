"""Supervised fine-tuning: teach a causal LM to answer prompts, with the loss on the response.

The first stage of the InstructGPT pipeline (SFT, reward model, PPO; Ouyang et al. 2022). The
loop is `rlhf.engine.supervised`'s: data in `rlhf.data.sft`, the loss in `rlhf.algo.sft`,
accelerate, checkpoints and metrics in `rlhf.engine`. The saved `OUT/model` is a plain
`save_pretrained` causal LM with its tokenizer, usable as `model.policy` of a PPO config.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from rlhf.algo.sft import sft_loss
from rlhf.config import SFTConfig
from rlhf.data.sft import TokenizedSFT, collate_sft, load_sft, loss_tokens, tokenize_sft
from rlhf.engine.optim import (
    SKIPPED,
    optimizer_step,
)
from rlhf.engine.run import Run
from rlhf.engine.sequences import next_token_logprobs
from rlhf.engine.supervised import SupervisedTask, start_training, train_supervised
from rlhf.models import (
    check_fits_positions,
    load_policy,
)
from rlhf.saving import save_trained
from rlhf.trainable import ready_to_train


@dataclass
class SFTDataSplits:
    """Tokenized train and test examples and what preparing them dropped or cut."""

    train: TokenizedSFT
    test: TokenizedSFT
    counts: dict[str, int]


def prepare_sft_data(cfg: SFTConfig, tokenizer) -> SFTDataSplits:
    """Load, normalise, split and tokenise the (prompt, response) examples."""
    data = cfg.data
    train, test = load_sft(
        data.path, name=data.name, split=data.split, test_split=data.test_split,
        test_fraction=data.test_fraction, seed=cfg.run.seed, columns=dict(data.columns),
        max_samples=data.max_samples, tokenizer=tokenizer)
    train_tok = tokenize_sft(train, tokenizer, max_length=data.max_length)
    test_tok = tokenize_sft(test, tokenizer, max_length=data.max_length)
    counts = {f"train_{k}": v for k, v in train.counts.items()}
    counts |= {f"test_{k}": v for k, v in test.counts.items()}
    for name, tok in (("train", train_tok), ("test", test_tok)):
        counts |= {f"{name}_prompt_truncated": tok.prompt_truncated,
                   f"{name}_response_truncated": tok.response_truncated}
    return SFTDataSplits(train=train_tok, test=test_tok, counts=counts)


def sft_update(model, optimizer, scheduler, accelerator, data: TokenizedSFT, batch: list[int],
               *, micro_batch_size: int, pad_id: int, max_grad_norm: float,
               is_finite) -> tuple[dict[str, float] | None, str]:
    """One optimizer step on one global batch, split over processes and micro-batches:
    (metrics, outcome of `run.optimizer_step`).

    Each micro-batch's token-mean loss is weighted by its share of the global batch's response
    tokens (times the process count, which DDP's gradient average divides out), so the
    gradient is that of the whole batch's token mean, however the batch is split. The metrics
    are None when `is_finite` (Run.finite_or_skip) skips a batch with a NaN/inf loss or
    gradient.
    """
    per_process = len(batch) // accelerator.num_processes
    local = batch[accelerator.process_index * per_process:][:per_process]
    micro_batches = [local[i:i + micro_batch_size] for i in range(0, len(local), micro_batch_size)]
    global_tokens = max(loss_tokens(data, batch), 1)
    totals = torch.zeros(2, device=accelerator.device)  # (nll sum, tokens) of this process
    for index, indices in enumerate(micro_batches):
        sync = index == len(micro_batches) - 1  # all-reduce gradients once, after the last
        with nullcontext() if sync else accelerator.no_sync(model):
            with accelerator.autocast():
                inputs = collate_sft(data, indices, pad_id)
                logprobs, mask = next_token_logprobs(model, inputs, accelerator.device)
            loss, stats = sft_loss(logprobs, mask)
            share = stats.tokens * accelerator.num_processes / global_tokens
            accelerator.backward(loss * share)
        totals += torch.stack([stats.nll_sum, stats.tokens])
    outcome, grad_norm = optimizer_step(accelerator, optimizer, scheduler, model.parameters(),
                                        max_grad_norm=max_grad_norm, loss=totals[0],
                                        is_finite=is_finite)
    if outcome == SKIPPED:
        return None, outcome
    return _loss_metrics(accelerator.reduce(totals, reduction="sum"), "train/") | {
        "train/grad_norm": grad_norm, "train/lr": scheduler.get_last_lr()[0]}, outcome


def _loss_metrics(totals: torch.Tensor, prefix: str) -> dict[str, float]:
    """loss (nats per response token), perplexity = exp(loss) and the token count."""
    nll_sum, tokens = totals.tolist()
    loss = nll_sum / max(tokens, 1.0)
    return {f"{prefix}loss": loss, f"{prefix}perplexity": math.exp(min(loss, 700.0)),
            f"{prefix}tokens": tokens}



@torch.no_grad()
def evaluate_sft(model, data: TokenizedSFT, *, batch_size: int, pad_id: int,
                 accelerator) -> dict[str, float]:
    """eval/loss (token mean over every response token of `data`), eval/perplexity, eval/tokens.

    Each process takes every num_processes-th example; sums are reduced, so the result does
    not depend on the process count. Examples are batched by length to cut padding.
    """
    was_training = model.training
    model.eval()
    mine = list(range(accelerator.process_index, len(data), accelerator.num_processes))
    mine.sort(key=lambda i: len(data.input_ids[i]))
    totals = torch.zeros(2, device=accelerator.device)  # (nll sum, tokens)
    for start in range(0, len(mine), batch_size):
        with accelerator.autocast():
            logprobs, mask = next_token_logprobs(
                model, collate_sft(data, mine[start:start + batch_size], pad_id),
                accelerator.device)
        _, stats = sft_loss(logprobs, mask)
        totals += torch.stack([stats.nll_sum, stats.tokens])
    model.train(was_training)
    return _loss_metrics(accelerator.reduce(totals, reduction="sum"), "eval/")


def train_sft(cfg: SFTConfig) -> dict[str, float]:
    """Fine-tune a causal LM as configured; returns the final held-out metrics."""
    run = Run(cfg.run, cfg, stage="sft")
    micro_batch_size, _ = cfg.train.micro_batches_per_step(run.accelerator.num_processes)
    model, tokenizer = load_policy(
        cfg.model.name_or_path, disable_dropout=cfg.model.disable_dropout,
        trust_remote_code=cfg.model.trust_remote_code, seed=cfg.run.seed,
        quantize=cfg.lora.quantize)
    check_fits_positions(model, cfg.data.max_length, "data.max_length", cfg.model.name_or_path)
    model = ready_to_train(model, lora=cfg.lora, base_name=cfg.model.name_or_path,
                           gradient_checkpointing=cfg.train.gradient_checkpointing)
    data = prepare_sft_data(cfg, tokenizer)
    _announce(run, data)
    training = start_training(run, model, cfg.train, n_examples=len(data.train))
    pad_id = tokenizer.pad_token_id
    task = SupervisedTask(
        name="sft", n_examples=len(data.train),
        lengths=[len(ids) for ids in data.train.input_ids] if cfg.data.group_by_length else None,
        update=lambda batch, is_finite: sft_update(
            training.model, training.optimizer, training.scheduler, run.accelerator,
            data.train, batch, micro_batch_size=micro_batch_size, pad_id=pad_id,
            max_grad_norm=cfg.train.max_grad_norm, is_finite=is_finite),
        evaluate=lambda: evaluate_sft(training.model, data.test,
                                      batch_size=cfg.train.eval_batch_size, pad_id=pad_id,
                                      accelerator=run.accelerator),
        progress=lambda metrics: {"loss": f"{metrics['train/loss']:.3f}"},
        evaluate_at_start=True)  # the starting model's held-out loss: what SFT improves on
    final = train_supervised(run, training, task, batch_size=cfg.train.batch_size,
                             seed=cfg.run.seed)
    _finish(run, training.model, tokenizer, final, merge=cfg.lora.merge)
    return final


def _announce(run: Run, data: SFTDataSplits) -> None:
    if run.is_main:
        counts = ", ".join(f"{k}={v}" for k, v in data.counts.items())
        print(f"[rlhf] SFT data: {len(data.train)} train / {len(data.test)} test examples "
              f"({counts})", flush=True)


def _finish(run: Run, model, tokenizer, final: dict[str, float], *, merge: bool) -> None:
    """Save OUT/model (left-padding tokenizer, as generation and PPO expect; with LoRA also
    OUT/model-adapter)."""
    if run.is_main:
        print(f"[rlhf] held-out loss {final['eval/loss']:.4f} (perplexity "
              f"{final['eval/perplexity']:.2f}) over {int(final['eval/tokens'])} response "
              "tokens", flush=True)
        # transformers 5 saves init_kwargs, not the attribute: set both so a plain
        # AutoTokenizer.from_pretrained(OUT/model) pads on the left too.
        tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
        written = save_trained(run.accelerator.unwrap_model(model), tokenizer,
                               run.output_dir / "model", merge=merge)
        print(f"[rlhf] policy saved to {', '.join(map(str, written))}", flush=True)
    run.accelerator.wait_for_everyone()
    run.finish()

