"""Reward-model training: fit a scalar score to human preferences (Bradley-Terry).

The loop is thin: data, model and math live in `rlhf.data`, `rlhf.models` and `rlhf.algo`;
accelerate, checkpoints and metrics in `rlhf.run`.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhf.config import RewardConfig
from rlhf.data.batching import collate_preferences, epoch_batches
from rlhf.data.preferences import TokenizedPreferences, load_preferences, tokenize_preferences
from rlhf.evaluate import RewardEvaluation, best_first, evaluate_reward, reward_objective
from rlhf.models import (
    APPEND_EOS_KEY,
    SCORE_MEAN_KEY,
    SCORE_STD_KEY,
    SEPARATOR_KEY,
    TEMPLATE_KEY,
    check_fits_positions,
    load_reward_model,
    save_pretrained_atomic,
    sequence_scores,
    trl_appends_eos,
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
class RewardData:
    """Tokenized train and test examples and what preparing them dropped or cut."""

    train: TokenizedPreferences
    test: TokenizedPreferences
    counts: dict[str, int]


def prepare_reward_data(cfg: RewardConfig, tokenizer) -> RewardData:
    """Load, normalise, split and tokenise the preference data the way scoring will read it."""
    data = cfg.data
    train, test = load_preferences(
        data.path, name=data.name, split=data.split, test_split=data.test_split,
        test_fraction=data.test_fraction, seed=cfg.run.seed, columns=dict(data.columns),
        max_samples=data.max_samples, tokenizer=tokenizer)
    # Decoder reward models are trained the way TRL's RewardTrainer trains them (EOS after the
    # response, read at the EOS), unless the EOS is the pad token, where TRL's model read the
    # last response token (`trl_appends_eos`): so a model saved here scores the same in
    # `transformers`/TRL fed prompt + response + EOS, and reads the same token as TRL-trained
    # hub models. Encoders end pairs with their own EOS (RoBERTa) or have none (BERT): no
    # change. _save_final_model records the choice (APPEND_EOS_KEY).
    encode = {"template": data.template, "separator": data.separator,
              "max_length": data.max_length,
              "append_eos": trl_appends_eos(tokenizer.eos_token_id, tokenizer.pad_token_id)}
    train_tok = tokenize_preferences(train, tokenizer, **encode)
    test_tok = tokenize_preferences(test, tokenizer, **encode)
    counts = {f"train_{k}": v for k, v in train.counts.items()}
    counts |= {f"test_{k}": v for k, v in test.counts.items()}
    counts |= {"train_truncated": train_tok.truncated, "test_truncated": test_tok.truncated}
    return RewardData(train=train_tok, test=test_tok, counts=counts)


def reward_update(model, optimizer, scheduler, accelerator, data: TokenizedPreferences,
                  batch: list[int], *, micro_batch_size: int, pad_id: int, center_coef: float,
                  max_grad_norm: float, is_finite) -> tuple[dict[str, float] | None, str]:
    """One optimizer step on one global batch, split over processes and micro-batches:
    (metrics, outcome of `run.optimizer_step`).

    Each micro-batch's mean loss is weighted by its share of the process's examples, so the
    gradient equals that of one big batch (gradient-accumulation invariance). The metrics
    are None when `is_finite` (Run.finite_or_skip) skips a batch with a NaN/inf loss or
    gradient.
    """
    per_process = len(batch) // accelerator.num_processes
    local = batch[accelerator.process_index * per_process:][:per_process]
    micro_batches = [local[i:i + micro_batch_size] for i in range(0, len(local), micro_batch_size)]
    all_rewards, all_margins, losses = [], [], []
    for index, indices in enumerate(micro_batches):
        inputs = collate_preferences(data, indices, pad_id)
        best = inputs["best"].to(accelerator.device)
        margin = None if inputs["margin"] is None else inputs["margin"].to(accelerator.device)
        sync = index == len(micro_batches) - 1  # all-reduce gradients once, after the last
        extra = {name: values.to(accelerator.device)  # token_type_ids of BERT-style pairs
                 for name, values in inputs["extra_inputs"].items()}
        with nullcontext() if sync else accelerator.no_sync(model):
            with accelerator.autocast():
                scores = sequence_scores(model, inputs["input_ids"].to(accelerator.device),
                                         inputs["attention_mask"].to(accelerator.device),
                                         **extra)
            rewards = scores.float().view(inputs["n_responses"], -1).T  # (b, N)
            loss, _ = reward_objective(rewards, best, margin, data.listwise, center_coef)
            accelerator.backward(loss * len(indices) / len(local))
        losses.append(loss.detach())
        all_rewards.append(best_first(rewards.detach(), best))
        all_margins.append(margin)
    outcome, grad_norm = optimizer_step(accelerator, optimizer, scheduler, model.parameters(),
                                        max_grad_norm=max_grad_norm, loss=torch.stack(losses),
                                        is_finite=is_finite)
    if outcome == SKIPPED:
        return None, outcome
    rewards = accelerator.gather(torch.cat(all_rewards))  # (batch, N), best response first
    margins = None if all_margins[0] is None else accelerator.gather(torch.cat(all_margins))
    zeros = torch.zeros(len(rewards), dtype=torch.long, device=rewards.device)
    _, stats = reward_objective(rewards, zeros, margins, data.listwise, center_coef)
    return stats.as_dict("train/") | {"train/grad_norm": grad_norm,
                                      "train/lr": scheduler.get_last_lr()[0]}, outcome



def train_reward(cfg: RewardConfig) -> dict[str, float]:
    """Train a reward model as configured; returns the final held-out metrics."""
    run = Run(cfg.run, cfg, stage="reward")
    micro_batch_size, _ = cfg.train.micro_batches_per_step(run.accelerator.num_processes)
    model, tokenizer = load_reward_model(
        cfg.model.name_or_path, tokenizer_name=cfg.model.tokenizer,
        disable_dropout=cfg.model.disable_dropout,
        trust_remote_code=cfg.model.trust_remote_code, seed=cfg.run.seed)
    check_fits_positions(model, cfg.data.max_length, "data.max_length", cfg.model.name_or_path)
    data = prepare_reward_data(cfg, tokenizer)
    _announce(run, data)
    total_steps = total_optimizer_steps(
        len(data.train.best), batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
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
    lengths = [max(len(ids) for ids in example) for example in data.train.input_ids]
    evaluate = _evaluator(cfg, run, model, data, tokenizer.pad_token_id)
    bar = tqdm(total=total_steps, initial=state.step, desc="reward", dynamic_ncols=True,
               disable=not (run.is_main and cfg.run.progress))
    while state.step < total_steps:
        batches = epoch_batches(
            len(data.train.best), cfg.train.batch_size, seed=cfg.run.seed, epoch=state.epoch,
            lengths=lengths if cfg.data.group_by_length else None)
        for batch in batches[state.batch_in_epoch:]:
            metrics, outcome = reward_update(
                model, optimizer, scheduler, run.accelerator, data.train, batch,
                micro_batch_size=micro_batch_size, pad_id=tokenizer.pad_token_id,
                center_coef=cfg.train.center_coef, max_grad_norm=cfg.train.max_grad_norm,
                is_finite=lambda quantities: run.finite_or_skip(state.step, quantities))
            metrics = count_outcomes(state, metrics, [outcome])
            state.step += 1
            state.batch_in_epoch += 1
            metrics["train/epoch"] = state.epoch + state.batch_in_epoch / len(batches)
            bar.update(1)
            if "train/loss" in metrics:
                bar.set_postfix(loss=f"{metrics['train/loss']:.3f}",
                                acc=f"{metrics['train/accuracy']:.2f}")
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
    final = _report_final(run, evaluate(state.step))
    _save_final_model(cfg, run, model, tokenizer, data)
    run.finish()
    return final



def _announce(run: Run, data: RewardData) -> None:
    if run.is_main:
        counts = ", ".join(f"{k}={v}" for k, v in data.counts.items())
        print(f"[rlhf] preference data: {len(data.train.best)} train / {len(data.test.best)} "
              f"test examples ({counts})", flush=True)


def _evaluator(cfg: RewardConfig, run: Run, model, data: RewardData, pad_id: int):
    """A closure that evaluates on the test split and logs it, at most once per step."""
    last: dict[int, RewardEvaluation] = {}

    def evaluate(step: int) -> RewardEvaluation:
        if step not in last:
            last.clear()
            last[step] = evaluate_reward(
                model, data.test, batch_size=cfg.train.eval_batch_size, pad_id=pad_id,
                accelerator=run.accelerator, center_coef=cfg.train.center_coef)
            run.log(step, last[step].metrics("eval/"))
        return last[step]

    return evaluate


def _report_final(run: Run, result: RewardEvaluation) -> dict[str, float]:
    """Print the held-out result and keep the scores for the report's histograms."""
    metrics = result.metrics("eval/")
    if run.is_main:
        scores = {"chosen": result.rewards[:, 0].tolist(),
                  "rejected": result.rewards[:, 1:].flatten().tolist()}
        (run.output_dir / "eval_scores.json").write_text(json.dumps(scores), encoding="utf-8")
        print(f"[rlhf] held-out accuracy {metrics['eval/accuracy']:.4f}, loss "
              f"{metrics['eval/loss']:.4f}, mean margin {metrics['eval/margin_mean']:.4f} "
              f"on {len(result.rewards)} examples", flush=True)
    return metrics


def _save_final_model(cfg: RewardConfig, run: Run, model, tokenizer, data: RewardData) -> None:
    """save_pretrained the model with how it reads text and its training-set score statistics.

    PPO normalises scores with this mean and std so that the KL coefficient means the same
    thing for any reward model (Ziegler et al. 2019 normalise to mean 0, std 1).
    """
    rewards = evaluate_reward(model, data.train, batch_size=cfg.train.eval_batch_size,
                              pad_id=tokenizer.pad_token_id, accelerator=run.accelerator).rewards
    extra = {TEMPLATE_KEY: cfg.data.template, SEPARATOR_KEY: cfg.data.separator,
             APPEND_EOS_KEY: trl_appends_eos(tokenizer.eos_token_id, tokenizer.pad_token_id),
             SCORE_MEAN_KEY: float(rewards.mean()), SCORE_STD_KEY: float(rewards.std())}
    if run.is_main:
        save_pretrained_atomic(run.accelerator.unwrap_model(model), tokenizer,
                               run.output_dir / "model", extra)
        print(f"[rlhf] reward model saved to {run.output_dir / 'model'}", flush=True)
    run.accelerator.wait_for_everyone()
