"""Reward-model training: fit a scalar score to human preferences (Bradley-Terry).

The loop is `rlhf.engine.supervised`'s: data, model and math live in `rlhf.data`, `rlhf.models`
and `rlhf.algo`; accelerate, checkpoints and metrics in `rlhf.engine`. The held-out evaluation
(accuracy, margins, the scores behind the report's histograms) is here too, and serves
`rlhf eval-reward`.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from accelerate import Accelerator

from rlhf.algo.losses import listwise_reward_loss, pairwise_reward_loss
from rlhf.algo.types import RewardLossStats
from rlhf.config import RewardConfig
from rlhf.data.batching import collate_preferences
from rlhf.data.preferences import load_preferences
from rlhf.data.reward_text import TokenizedPreferences, tokenize_preferences
from rlhf.engine.optim import (
    SKIPPED,
    optimizer_step,
)
from rlhf.engine.run import Run
from rlhf.engine.supervised import SupervisedTask, start_training, train_supervised
from rlhf.models import (
    check_fits_positions,
    load_reward_model,
    sequence_scores,
)
from rlhf.reward.reading import (
    APPEND_EOS_KEY,
    SCORE_MEAN_KEY,
    SCORE_STD_KEY,
    SEPARATOR_KEY,
    TEMPLATE_KEY,
    trl_appends_eos,
)
from rlhf.saving import save_trained
from rlhf.trainable import ready_to_train


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
        trust_remote_code=cfg.model.trust_remote_code, seed=cfg.run.seed,
        quantize=cfg.lora.quantize)
    check_fits_positions(model, cfg.data.max_length, "data.max_length", cfg.model.name_or_path)
    model = ready_to_train(model, lora=cfg.lora, classifier=True,
                           gradient_checkpointing=cfg.train.gradient_checkpointing,
                           base_name=cfg.model.name_or_path)
    data = prepare_reward_data(cfg, tokenizer)
    _announce(run, data)
    training = start_training(run, model, cfg.train, n_examples=len(data.train.best))
    pad_id = tokenizer.pad_token_id
    held_out = HeldOut(lambda: evaluate_reward(
        training.model, data.test, batch_size=cfg.train.eval_batch_size, pad_id=pad_id,
        accelerator=run.accelerator, center_coef=cfg.train.center_coef))
    lengths = [max(len(ids) for ids in example) for example in data.train.input_ids]
    task = SupervisedTask(
        name="reward", n_examples=len(data.train.best),
        lengths=lengths if cfg.data.group_by_length else None,
        update=lambda batch, is_finite: reward_update(
            training.model, training.optimizer, training.scheduler, run.accelerator,
            data.train, batch, micro_batch_size=micro_batch_size, pad_id=pad_id,
            center_coef=cfg.train.center_coef, max_grad_norm=cfg.train.max_grad_norm,
            is_finite=is_finite),
        evaluate=held_out,
        progress=lambda m: {"loss": f"{m['train/loss']:.3f}", "acc": f"{m['train/accuracy']:.2f}"})
    final = train_supervised(run, training, task, batch_size=cfg.train.batch_size,
                             seed=cfg.run.seed)
    _report_final(run, held_out.latest)
    _save_final_model(cfg, run, training.model, tokenizer, data)
    run.finish()
    return final


class HeldOut:
    """The held-out evaluation of the reward model (its metrics are what the loop logs); the
    latest result's scores go to eval_scores.json for the report's histograms."""

    def __init__(self, evaluate):
        self._evaluate = evaluate
        self.latest: RewardEvaluation | None = None

    def __call__(self) -> dict[str, float]:
        self.latest = self._evaluate()
        return self.latest.metrics("eval/")


def _announce(run: Run, data: RewardData) -> None:
    if run.is_main:
        counts = ", ".join(f"{k}={v}" for k, v in data.counts.items())
        print(f"[rlhf] preference data: {len(data.train.best)} train / {len(data.test.best)} "
              f"test examples ({counts})", flush=True)


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
        written = save_trained(run.accelerator.unwrap_model(model), tokenizer,
                               run.output_dir / "model", extra, merge=cfg.lora.merge)
        print(f"[rlhf] reward model saved to {', '.join(map(str, written))}", flush=True)
    run.accelerator.wait_for_everyone()


# -- held-out evaluation ----------------------------------------------------------------------


def reward_objective(rewards: torch.Tensor, best: torch.Tensor, margin: torch.Tensor | None,
                     listwise: bool, center_coef: float) -> tuple[torch.Tensor, RewardLossStats]:
    """Pick the loss for the data's layout: (B, N) rewards, best index per row.

    Pairs use the Bradley-Terry loss with an optional margin; best-of-N lists (OpenAI's
    lm-human-preferences layout) use the N-way softmax loss of Ziegler et al. 2019.
    """
    if listwise:
        return listwise_reward_loss(rewards, best, center_coef=center_coef)
    return pairwise_reward_loss(rewards[:, 0], rewards[:, 1], margin, center_coef=center_coef)


@dataclass
class RewardEvaluation:
    """Scores of every held-out example and the loss statistics over them."""

    rewards: torch.Tensor
    """(E, N) scores, column `best` holds the preferred response's score."""
    stats: RewardLossStats
    """Loss, accuracy, margin and score statistics over all examples."""

    def metrics(self, prefix: str) -> dict[str, float]:
        return self.stats.as_dict(prefix) | {f"{prefix}examples": float(len(self.rewards))}


@torch.no_grad()
def score_examples(model: torch.nn.Module, data: TokenizedPreferences, *, batch_size: int,
                   pad_id: int, accelerator: Accelerator) -> torch.Tensor:
    """(E, N) scores for every example, best response first, computed on all processes.

    Examples are dealt out round-robin over processes (padded by repeating the last one) and
    gathered back into their original order.
    """
    n, world, rank = len(data.best), accelerator.num_processes, accelerator.process_index
    per_process = -(-n // world)
    padded = list(range(n)) + [n - 1] * (per_process * world - n)
    mine = padded[rank::world]
    rows = []
    for start in range(0, len(mine), batch_size):
        indices = mine[start:start + batch_size]
        batch = collate_preferences(data, indices, pad_id)
        extra = {name: values.to(accelerator.device)
                 for name, values in batch["extra_inputs"].items()}
        with accelerator.autocast():
            scores = sequence_scores(model, batch["input_ids"].to(accelerator.device),
                                     batch["attention_mask"].to(accelerator.device), **extra)
        rows.append(best_first(scores.float().view(batch["n_responses"], -1).T,
                                batch["best"].to(accelerator.device)))
    local = torch.cat(rows)  # (per_process, N)
    gathered = accelerator.gather(local)  # (world * per_process, N), process-major
    order = gathered.view(world, per_process, -1).transpose(0, 1).reshape(world * per_process, -1)
    return order[:n].cpu()


def best_first(rewards: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Reorder each row so the preferred response's score is in column 0."""
    n = rewards.shape[1]
    columns = torch.arange(n, device=rewards.device).expand_as(rewards)  # (B, N)
    others = columns[columns != best[:, None]].view(len(rewards), n - 1)
    order = torch.cat([best[:, None], others], dim=1)
    return rewards.gather(1, order)


def evaluate_reward(model: torch.nn.Module, data: TokenizedPreferences, *, batch_size: int,
                    pad_id: int, accelerator: Accelerator,
                    center_coef: float = 0.0) -> RewardEvaluation:
    """Accuracy, loss and margins of `model` on tokenized preference data."""
    was_training = model.training
    model.eval()
    rewards = score_examples(model, data, batch_size=batch_size, pad_id=pad_id,
                             accelerator=accelerator)
    model.train(was_training)
    best = torch.zeros(len(rewards), dtype=torch.long)
    margin = torch.tensor(data.margins, dtype=rewards.dtype) if data.margins else None
    _, stats = reward_objective(rewards, best, margin, data.listwise, center_coef)
    return RewardEvaluation(rewards=rewards, stats=stats)
