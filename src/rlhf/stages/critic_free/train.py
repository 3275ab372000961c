"""Critic-free RL: k responses per prompt, an advantage estimator that uses the group (or the
batch) as its baseline, and a clipped policy loss; no value model. An iteration reads like the
algorithm:

    1. sample and score      k responses per prompt (rl.rollout.collect_in_chunks)
    2. global batch          every process holds every row (rl.rollout.gather_rows)
    3. group signal          zero-signal groups counted, dropped with dynamic sampling
    4. advantages            estimator on the scores, KL reward, returns-to-go
    5. update                epochs x minibatches x micro-batches, aggregated loss
    6. log, checkpoint
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

from rlhf.algo.advantages import update_moving_baseline
from rlhf.algo.aggregation import sequence_mean, token_mean, token_sum
from rlhf.algo.losses import sequence_log_ratio, token_log_ratio
from rlhf.algo.rewards import ScoreTransform
from rlhf.algo.types import Rollout
from rlhf.config import CriticFreeConfig
from rlhf.engine.optim import SKIPPED, adamw_with_schedule, count_outcomes
from rlhf.engine.run import Run
from rlhf.rl.evaluation import load_evaluation
from rlhf.rl.iteration import (
    RLSession,
    end_iteration,
    progress_bar,
    run_to_the_end,
    throughput,
)
from rlhf.rl.minibatches import stats_over_processes
from rlhf.rl.rollout import Texts, collect_in_chunks, gather_rows
from rlhf.rl.schedule import IterationSchedule
from rlhf.rl.setup import (
    check_lengths,
    load_policy_models,
    load_run_prompts,
    make_trainable,
    prepare_frozen_models,
    run_attention,
)
from rlhf.stages.critic_free.advantages import (
    advantage_stats,
    group_signal,
    sequence_advantages,
    token_advantages,
)
from rlhf.stages.critic_free.metrics import batch_metrics
from rlhf.stages.critic_free.update import LOSS_PENALTIES, UpdateSettings, policy_update

AGGREGATIONS = {"sequence_mean": sequence_mean, "token_mean": token_mean, "token_sum": token_sum}


def train_critic_free(cfg: CriticFreeConfig) -> dict[str, float]:
    """Run the configured critic-free method; returns the last iteration's metrics."""
    session = start_critic_free(cfg)
    return run_to_the_end(session, iteration, policy=session.policy)


def iteration(session: CriticFreeSession) -> dict[str, float]:
    """One iteration, the algorithm's steps in order; its metrics."""
    cfg, step, started = session.cfg, session.state.step, time.perf_counter()
    local, texts, timings = collect(session, step)                                       # 1.
    raw_scores = local.scores
    local.scores = session.transform(raw_scores, local.ended_with_eos)
    rollout, raw_scores = gather(session, local, raw_scores)                             # 2.
    if not session.run.finite_or_skip(step, {"reward": raw_scores}):
        # no update from an iteration whose rewards are NaN/inf
        return end_iteration(session, count_outcomes(session.state, None, [SKIPPED]))
    signal = group_signal(rollout.scores, cfg.generate.num_samples,                       # 3.
                          cfg.algo.dynamic_sampling)
    train_mask = rollout.response_mask & signal.kept[:, None]
    advantages, kl_reward = estimate(session, rollout, train_mask)                       # 4.
    update_stats, outcomes = update(session, rollout, advantages, train_mask, timings)   # 5.
    metrics = batch_metrics(rollout, raw_scores, signal, kl_reward, cfg.algo.kl_coef)    # 6.
    metrics |= advantage_stats(advantages, train_mask) | moving_baseline(session, rollout)
    metrics |= stats_over_processes(session.run, update_stats)
    metrics |= timings | throughput(local, started)
    metrics["train/lr"] = session.scheduler.get_last_lr()[0]
    metrics = count_outcomes(session.state, metrics, outcomes)
    return end_iteration(session, metrics, texts, local)


@dataclass(kw_only=True)
class CriticFreeSession(RLSession):
    """An RL session with the update's settings and the score transform; no value model."""

    settings: UpdateSettings
    transform: ScoreTransform

    @property
    def checkpointed(self) -> dict[str, dict]:
        return {"models": {"policy": self.policy}, "optimizers": {"policy": self.optimizer},
                "schedulers": {"policy": self.scheduler}}


def start_critic_free(cfg: CriticFreeConfig) -> CriticFreeSession:
    """The policy (and a reference unless the KL is off), the scorer, prompts, the optimizer
    and its schedule, the run started (resumed from its newest checkpoint when asked)."""
    run = Run(cfg.run, cfg, stage="critic_free")
    _, per_minibatch, micro = cfg.batch_split(run.accelerator.num_processes)
    models = load_policy_models(cfg.model, cfg.generate, seed=cfg.run.seed,
                                batch_size=cfg.train.batch_size * cfg.generate.num_samples,
                                device=run.device, quantize=cfg.lora.quantize,
                                attention=run_attention(run, cfg.model))
    make_trainable(models, lora=cfg.lora, gradient_checkpointing=cfg.train.gradient_checkpointing,
                   with_reference=cfg.algo.kl_penalty != "none", base_name=cfg.model.policy)
    check_lengths(cfg.data, cfg.generate, cfg.model.policy, models.policy)
    prompt_ids, score_prompts = load_run_prompts(cfg.data, models.tokenizer, cfg.run.seed)
    schedule = IterationSchedule(
        len(prompt_ids), batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
        total_prompts=cfg.algo.total_prompts, seed=cfg.run.seed,
        min_new_tokens=cfg.generate.min_new_tokens, max_new_tokens=cfg.generate.max_new_tokens)
    optimizer, scheduler = adamw_with_schedule(
        list(models.policy.parameters()), learning_rate=cfg.train.learning_rate,
        weight_decay=cfg.train.weight_decay, scheduler=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio,
        total_steps=schedule.iterations * cfg.algo.update_epochs * cfg.algo.num_minibatches)
    policy, optimizer = run.prepare_trained(models.policy, optimizer)
    prepare_frozen_models(run, models)
    session = CriticFreeSession(
        cfg=cfg, run=run, models=models, policy=policy, optimizer=optimizer,
        scheduler=scheduler, schedule=schedule, prompt_ids=prompt_ids,
        score_prompts=score_prompts, evaluation=load_evaluation(cfg, models, run),
        settings=update_settings(cfg, per_minibatch, micro), transform=ScoreTransform(missing_eos_penalty=cfg.algo.missing_eos_penalty,
                                 clip=cfg.algo.score_clip))
    session.state = run.start(**session.checkpointed)
    session.bar = progress_bar(session, cfg.algo.advantage)
    return session


def update_settings(cfg: CriticFreeConfig, per_minibatch: int, micro: int) -> UpdateSettings:
    """The configured functions and numbers of the update."""
    aggregate = AGGREGATIONS[cfg.algo.loss_aggregation]
    if cfg.algo.loss_aggregation == "token_sum":
        aggregate = functools.partial(
            aggregate, divisor=cfg.algo.token_sum_divisor or cfg.generate.max_new_tokens)
    return UpdateSettings(
        epochs=cfg.algo.update_epochs, per_minibatch=per_minibatch, micro_batch_size=micro,
        clip_low=cfg.algo.clip_low, clip_high=cfg.algo.clip_high,
        log_ratio=sequence_log_ratio if cfg.algo.ratio == "sequence" else token_log_ratio,
        aggregate=aggregate,
        kl_loss=LOSS_PENALTIES[cfg.algo.kl_estimator] if cfg.algo.kl_penalty == "loss" else None,
        kl_coef=cfg.algo.kl_coef, temperature=cfg.generate.temperature,
        max_grad_norm=cfg.train.max_grad_norm, seed=cfg.run.seed)


def estimate(session: CriticFreeSession, rollout: Rollout,
             train_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step 4: (B, R) token advantages from the configured estimator, and the KL reward."""
    algo = session.cfg.algo
    advantages = sequence_advantages(rollout.scores, algo.advantage,
                                     session.cfg.generate.num_samples,
                                     session.state.extra.get("baseline"))
    return token_advantages(
        rollout, advantages, train_mask, estimator=algo.advantage, kl_coef=algo.kl_coef,
        kl_penalty=algo.kl_estimator if algo.kl_penalty == "reward" else None)


def moving_baseline(session: CriticFreeSession, rollout: Rollout) -> dict[str, float]:
    """REINFORCE's baseline moves towards this batch's mean score after the batch has used
    it (a batch is never its own baseline); kept in the checkpoint. Nothing for the others."""
    if session.cfg.algo.advantage != "reinforce":
        return {}
    session.state.extra["baseline"] = update_moving_baseline(
        session.state.extra.get("baseline"), float(rollout.scores.mean()),
        session.cfg.algo.baseline_decay)
    return {"baseline/value": session.state.extra["baseline"]}


def collect(session: CriticFreeSession, step: int) -> tuple[Rollout, Texts, dict[str, float]]:
    """Step 1 for this process's prompts: k rows per prompt, prompt-major, each seeded by
    (seed, iteration, prompt, sample); the k responses to a prompt share its length limit."""
    k, schedule = session.cfg.generate.num_samples, session.schedule
    indices = schedule.local_prompts(step, session.run.accelerator)
    rows = [index for index in indices for _ in range(k)]
    lengths = [limit for limit in schedule.response_lengths(step, indices) for _ in range(k)]
    timings: dict[str, float] = {}
    rollout, texts = collect_in_chunks(
        session.run, session.models, session.policy, None,
        [session.prompt_ids[i] for i in rows], [session.score_prompts[i] for i in rows],
        lengths, schedule.group_row_seeds(step, indices, k),
        chunk=session.cfg.train.rollout_batch_size,
        temperature=session.cfg.generate.temperature, timings=timings)
    return rollout, texts, timings


def gather(session: CriticFreeSession, local: Rollout,
           raw_scores: torch.Tensor) -> tuple[Rollout, torch.Tensor]:
    """Step 2: the global batch on every process, in process order (a prompt's group stays
    on one process, so groups stay whole), and its raw scores."""
    accelerator = session.run.accelerator
    (rollout,) = gather_rows(accelerator, local, pad_id=session.models.tokenizer.pad_token_id)
    if accelerator.num_processes > 1:
        raw_scores = accelerator.gather(raw_scores)
    return rollout, raw_scores


def update(session: CriticFreeSession, rollout: Rollout, advantages: torch.Tensor,
           train_mask: torch.Tensor,
           timings: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Step 5 on the global batch."""
    session.policy.train()
    started = time.perf_counter()
    stats, outcomes = policy_update(
        session.policy, session.optimizer, session.scheduler, session.run.accelerator, rollout,
        advantages, train_mask, session.settings,
        lambda quantities: session.run.finite_or_skip(session.state.step, quantities),
        iteration=session.state.step)
    timings["time/update"] = time.perf_counter() - started
    return stats, outcomes
