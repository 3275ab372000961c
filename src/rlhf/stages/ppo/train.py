"""PPO fine-tuning of a policy against a reward, with a per-token KL penalty to a frozen
reference, a value model and GAE. An iteration reads like the algorithm (DESIGN.md):

    1. sample and score      collect (rl.rollout.collect_rollout)
    2. per-token KL          per_token_kl (k1 or k3)
    3. shape rewards         score at the last real token, -beta * KL on every token
    4. advantages            GAE over response tokens, whitened
    5. update                ppo_update: epochs x minibatches x micro-batches
    6. adapt beta, log, checkpoint
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rlhf.algo.types import Rollout
from rlhf.config import PPOConfig
from rlhf.engine.optim import SKIPPED, adamw_with_schedule, count_outcomes
from rlhf.engine.run import Run
from rlhf.models import unwrapped
from rlhf.rl.evaluation import load_evaluation
from rlhf.rl.iteration import (
    RLSession,
    end_iteration,
    progress_bar,
    run_to_the_end,
    throughput,
)
from rlhf.rl.rollout import Texts, collect_in_chunks, gather_rows
from rlhf.rl.setup import load_run_prompts, run_attention
from rlhf.stages.ppo.advantages import advantages_and_returns, per_token_kl
from rlhf.stages.ppo.metrics import iteration_metrics
from rlhf.stages.ppo.setup import (
    ScoreTransform,
    check_lengths,
    iteration_schedule,
    kl_controller,
    load_ppo_models,
    prepare_frozen_models,
    score_transform,
)
from rlhf.stages.ppo.update import (
    UpdateSettings,
    ppo_update,
    separate_forward,
    shared_forward,
)


def train_ppo(cfg: PPOConfig) -> dict[str, float]:
    """Run PPO as configured; returns the last iteration's metrics."""
    ppo = start_ppo(cfg)
    return run_to_the_end(ppo, iteration, **final_models(ppo))


def iteration(ppo: PPOSession) -> dict[str, float]:
    """One PPO iteration, the algorithm's steps in order; its metrics."""
    cfg, step, started = ppo.cfg, ppo.state.step, time.perf_counter()
    rollout, texts, timings = collect(ppo, step)                                         # 1.
    raw_scores = rollout.scores
    if not ppo.run.finite_or_skip(step, {"reward": raw_scores}):
        # no update from an iteration whose rewards are NaN/inf
        return end_iteration(ppo, count_outcomes(ppo.state, None, [SKIPPED]))
    rollout.scores = ppo.transform(raw_scores, rollout.ended_with_eos)
    kl = per_token_kl(rollout, cfg.ppo.kl_estimator)                                    # 2.
    advantages, returns, _, non_score = advantages_and_returns(                          # 3, 4.
        rollout, kl, ppo.kl_ctl.value, gamma=cfg.ppo.gamma, lam=cfg.ppo.lam,
        whiten_rewards=cfg.ppo.whiten_rewards, sum_over_processes=ppo.sum_over_processes)
    update_stats, outcomes = update(ppo, rollout, advantages, returns, timings)          # 5.
    metrics = iteration_metrics(ppo.run, rollout, raw_scores, kl, non_score, ppo.kl_ctl.value,
                                update_stats | timings | throughput(rollout, started))
    metrics["train/lr"] = ppo.scheduler.get_last_lr()[0]
    ppo.kl_ctl.update(metrics["objective/kl"], cfg.train.batch_size)                    # 6.
    metrics = count_outcomes(ppo.state, metrics, outcomes)
    ppo.state.extra |= {"kl_controller": ppo.kl_ctl.state_dict(),
                        "score_transform": vars(ppo.transform)}
    return end_iteration(ppo, metrics, texts, rollout)


@dataclass(kw_only=True)
class PPOSession(RLSession):
    """An RL session with PPO's value model (as accelerate prepared it, like the policy), the
    update settings, the KL controller and the score transform."""

    value: Any
    settings: UpdateSettings
    kl_ctl: Any
    transform: ScoreTransform | None = None
    """Restored from the checkpoint or measured once the run has started."""

    @property
    def shared(self) -> bool:
        """The value head sits on the policy's backbone (model.value=shared)."""
        return self.value is self.policy

    @property
    def checkpointed(self) -> dict[str, dict]:
        models = {"policy": self.policy} | ({} if self.shared else {"value": self.value})
        return {"models": models, "optimizers": {"ppo": self.optimizer},
                "schedulers": {"ppo": self.scheduler}}


def final_models(ppo: PPOSession) -> dict[str, Any]:
    """The folders a run ends with: policy and value, or with a shared backbone the policy's
    language model alone (its value head stays in the checkpoints)."""
    if ppo.shared:
        return {"policy": unwrapped(ppo.policy).lm}
    return {"policy": ppo.policy, "value": ppo.value}


def start_ppo(cfg: PPOConfig) -> PPOSession:
    """Models, prompts, the optimizer and its schedule, the run started (resumed from its
    newest checkpoint when asked), the KL controller and the score transform."""
    run = Run(cfg.run, cfg, stage="ppo")
    _, per_minibatch, micro = cfg.batch_split(run.accelerator.num_processes)
    models = load_ppo_models(cfg, run.device, run_attention(run, cfg.model))
    check_lengths(cfg, models)
    prompt_ids, score_prompts = load_run_prompts(cfg.data, models.tokenizer, cfg.run.seed)
    schedule = iteration_schedule(len(prompt_ids), cfg)
    optimizer, scheduler = adamw_with_schedule(
        list(models.policy.parameters()) + list(models.value.parameters()),
        learning_rate=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
        scheduler=cfg.train.scheduler, warmup_ratio=cfg.train.warmup_ratio,
        total_steps=schedule.iterations * cfg.ppo.ppo_epochs * cfg.ppo.num_minibatches)
    if models.value is models.policy:  # one network: prepared once
        policy, optimizer = run.prepare_trained(models.policy, optimizer)
        value = policy
    else:
        policy, value, optimizer = run.prepare_trained(models.policy, models.value, optimizer)
    prepare_frozen_models(run, models)
    ppo = PPOSession(
        cfg=cfg, run=run, models=models, policy=policy, value=value, optimizer=optimizer,
        scheduler=scheduler, schedule=schedule, prompt_ids=prompt_ids,
        score_prompts=score_prompts, evaluation=load_evaluation(cfg, models, run),
        kl_ctl=kl_controller(cfg), settings=UpdateSettings(
            ppo_epochs=cfg.ppo.ppo_epochs, per_minibatch=per_minibatch, micro_batch_size=micro,
            clip_range=cfg.ppo.clip_range, value_clip_range=cfg.ppo.value_clip_range,
            vf_coef=cfg.ppo.vf_coef, temperature=cfg.generate.temperature,
            max_grad_norm=cfg.train.max_grad_norm, target_approx_kl=cfg.ppo.target_approx_kl,
            ratio_threshold=cfg.ppo.ratio_threshold, seed=cfg.run.seed,
            forward=shared_forward if cfg.model.value == "shared" else separate_forward))
    ppo.state = run.start(**ppo.checkpointed)
    _restore_or_measure(ppo)
    ppo.bar = progress_bar(ppo, "ppo")
    return ppo


def _restore_or_measure(ppo: PPOSession) -> None:
    """The KL controller and score transform from the checkpoint, or measured anew."""
    if "kl_controller" in ppo.state.extra:
        ppo.kl_ctl.load_state_dict(ppo.state.extra["kl_controller"])
        ppo.transform = ScoreTransform(**ppo.state.extra["score_transform"])
    else:
        ppo.transform = _initial_transform(ppo)


def collect(ppo: PPOSession, step: int) -> tuple[Rollout, Texts, dict[str, float]]:
    """Step 1 for this process's prompts of the iteration: (rollout, texts, seconds per phase)."""
    indices = ppo.schedule.local_prompts(step, ppo.run.accelerator)
    timings: dict[str, float] = {}
    rollout, texts = _collect(ppo, ppo.policy, ppo.value, indices,
                              ppo.schedule.response_lengths(step, indices),
                              ppo.schedule.row_seeds(step, indices), timings)
    return rollout, texts, timings


def _collect(ppo: PPOSession, policy, value, indices: list[int], lengths: list[int],
             row_seeds: list[int], timings: dict) -> tuple[Rollout, Texts]:
    """Step 1 for the prompts `indices`, in chunks of train.rollout_batch_size rows."""
    return collect_in_chunks(
        ppo.run, ppo.models, policy, value, [ppo.prompt_ids[i] for i in indices],
        [ppo.score_prompts[i] for i in indices], lengths, row_seeds,
        chunk=ppo.cfg.train.rollout_batch_size, temperature=ppo.cfg.generate.temperature,
        timings=timings)


def _initial_transform(ppo: PPOSession) -> ScoreTransform:
    """Score normalisation fixed before training. For 'reference': gain and bias that give
    the initial policy (= the reference) scores of mean 0 and std 1, measured on samples
    drawn as training draws them (the first iterations' prompts, each response's length
    limit drawn as training draws it, the same temperature): with a length-sensitive reward,
    samples all of max_new_tokens put normalised training scores 2 to 4 std from 0."""
    reference_scores = None
    if ppo.cfg.ppo.score_normalization == "reference":
        indices = ppo.schedule.first_prompts(ppo.cfg.ppo.normalization_samples)
        rollout, _ = _collect(ppo, ppo.models.reference, None, indices,
                              ppo.schedule.response_lengths(-1, indices),
                              ppo.schedule.row_seeds(-1, indices), {})
        reference_scores = rollout.scores.cpu()
    return score_transform(ppo.cfg, ppo.models.reward_stats, reference_scores)


def update(ppo: PPOSession, rollout: Rollout, advantages, returns,
           timings: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Step 5 on the global batch (every process's rows; `rl.rollout.gather_rows`)."""
    ppo.policy.train()
    started = time.perf_counter()
    stats, outcomes = ppo_update(
        ppo.policy, ppo.value, ppo.optimizer, ppo.scheduler, ppo.run.accelerator,
        *gather_rows(ppo.run.accelerator, rollout, advantages, returns,
                     pad_id=ppo.models.tokenizer.pad_token_id),
        ppo.settings, lambda quantities: ppo.run.finite_or_skip(ppo.state.step, quantities),
        iteration=ppo.state.step)
    timings["time/update"] = time.perf_counter() - started
    return stats, outcomes
