"""Supervised fine-tuning: teach a causal LM to answer prompts, with the loss on the response.

The first stage of the InstructGPT pipeline (SFT, reward model, PPO; Ouyang et al. 2022). The
loop is thin and mirrors `train_reward`: data in `rlhf.data.sft`, the loss in `rlhf.algo.sft`,
accelerate, checkpoints and metrics in `rlhf.run`. The saved `OUT/model` is a plain
`save_pretrained` causal LM with its tokenizer, usable as `model.policy` of a PPO config.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhf.algo.logprobs import token_logprobs
from rlhf.algo.sft import sft_loss
from rlhf.config import SFTConfig
from rlhf.data.batching import epoch_batches
from rlhf.data.sft import TokenizedSFT, collate_sft, load_sft, loss_tokens, tokenize_sft
from rlhf.models import (
    check_fits_positions,
    load_policy,
    position_ids_from_mask,
    save_pretrained_atomic,
)
from rlhf.run import (
    SKIPPED,
    Run,
    adamw_with_schedule,
    count_outcomes,
    optimizer_step,
    total_optimizer_steps,
)


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


def next_token_logprobs(model, inputs: dict[str, torch.Tensor],
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T - 1) log p(token_t | tokens_<t) and the matching (B, T - 1) response mask.

    The logits at position t - 1 predict token t. Position ids come from the attention mask
    (right padding, so they are 0..n-1 on real tokens either way; explicit for any layout).
    """
    input_ids = inputs["input_ids"].to(device)  # (B, T)
    attention_mask = inputs["attention_mask"].to(device)  # (B, T)
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(),
                   position_ids=position_ids_from_mask(attention_mask)).logits  # (B, T, V)
    logprobs = token_logprobs(logits[:, :-1], input_ids[:, 1:])  # (B, T - 1)
    return logprobs, inputs["response_mask"][:, 1:].to(device)


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
        trust_remote_code=cfg.model.trust_remote_code, seed=cfg.run.seed)
    check_fits_positions(model, cfg.data.max_length, "data.max_length", cfg.model.name_or_path)
    data = prepare_sft_data(cfg, tokenizer)
    _announce(run, data)
    total_steps = total_optimizer_steps(
        len(data.train), batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps)
    optimizer, scheduler = adamw_with_schedule(
        model.parameters(), learning_rate=cfg.train.learning_rate,
        weight_decay=cfg.train.weight_decay, scheduler=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio, total_steps=total_steps)
    model, optimizer = run.accelerator.prepare(model, optimizer)
    checkpointed = {"models": {"model": model}, "optimizers": {"model": optimizer},
                    "schedulers": {"model": scheduler}}
    state = run.start(**checkpointed)
    model.train()
    lengths = [len(ids) for ids in data.train.input_ids]
    evaluate = _evaluator(cfg, run, model, data.test, tokenizer.pad_token_id)
    if state.step == 0:
        evaluate(0)  # the starting model's held-out loss: what SFT improves on
    bar = tqdm(total=total_steps, initial=state.step, desc="sft", dynamic_ncols=True,
               disable=not (run.is_main and cfg.run.progress))
    while state.step < total_steps:
        batches = epoch_batches(
            len(data.train), cfg.train.batch_size, seed=cfg.run.seed, epoch=state.epoch,
            lengths=lengths if cfg.data.group_by_length else None)
        for batch in batches[state.batch_in_epoch:]:
            metrics, outcome = sft_update(
                model, optimizer, scheduler, run.accelerator, data.train, batch,
                micro_batch_size=micro_batch_size, pad_id=tokenizer.pad_token_id,
                max_grad_norm=cfg.train.max_grad_norm,
                is_finite=lambda quantities: run.finite_or_skip(state.step, quantities))
            metrics = count_outcomes(state, metrics, [outcome])
            state.step += 1
            state.batch_in_epoch += 1
            metrics["train/epoch"] = state.epoch + state.batch_in_epoch / len(batches)
            bar.update(1)
            if "train/loss" in metrics:
                bar.set_postfix(loss=f"{metrics['train/loss']:.3f}")
            if state.step % cfg.run.log_every == 0:
                run.log(state.step, metrics)
            end_of_epoch = state.batch_in_epoch == len(batches)
            if end_of_epoch or (cfg.run.eval_every and state.step % cfg.run.eval_every == 0):
                evaluate(state.step)
            if end_of_epoch:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            run.end_of_step(state, checkpointed, last=state.step == total_steps)
            if state.step == total_steps:
                break
    bar.close()
    final = evaluate(state.step)
    _finish(run, model, tokenizer, final)
    return final


def _announce(run: Run, data: SFTDataSplits) -> None:
    if run.is_main:
        counts = ", ".join(f"{k}={v}" for k, v in data.counts.items())
        print(f"[rlhf] SFT data: {len(data.train)} train / {len(data.test)} test examples "
              f"({counts})", flush=True)


def _evaluator(cfg: SFTConfig, run: Run, model, test: TokenizedSFT, pad_id: int):
    """A closure that evaluates on the test split and logs it, at most once per step."""
    last: dict[int, dict[str, float]] = {}

    def evaluate(step: int) -> dict[str, float]:
        if step not in last:
            last.clear()
            last[step] = evaluate_sft(model, test, batch_size=cfg.train.eval_batch_size,
                                      pad_id=pad_id, accelerator=run.accelerator)
            run.log(step, last[step])
        return last[step]

    return evaluate


def _finish(run: Run, model, tokenizer, final: dict[str, float]) -> None:
    """Save OUT/model (left-padding tokenizer, as generation and PPO expect)."""
    if run.is_main:
        print(f"[rlhf] held-out loss {final['eval/loss']:.4f} (perplexity "
              f"{final['eval/perplexity']:.2f}) over {int(final['eval/tokens'])} response "
              "tokens", flush=True)
        # transformers 5 saves init_kwargs, not the attribute: set both so a plain
        # AutoTokenizer.from_pretrained(OUT/model) pads on the left too.
        tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
        save_pretrained_atomic(run.accelerator.unwrap_model(model), tokenizer,
                               run.output_dir / "model")
        print(f"[rlhf] policy saved to {run.output_dir / 'model'}", flush=True)
    run.accelerator.wait_for_everyone()
    run.finish()

