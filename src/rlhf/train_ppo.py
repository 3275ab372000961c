"""PPO fine-tuning of a policy against a reward, with a per-token KL penalty to a frozen
reference, a value model and GAE. The loop reads like the algorithm (DESIGN.md):

    1. sample and score      collect_rollout
    2. per-token KL          kl_k1 / kl_k3
    3. shape rewards         score at the last real token, -beta * KL on every token
    4. advantages            GAE over response tokens, whitened
    5. update                ppo_update: epochs x minibatches x micro-batches
    6. adapt beta, log, checkpoint
"""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from rlhf.algo.advantages import gae
from rlhf.algo.kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k3
from rlhf.algo.losses import clipped_value_loss, ppo_policy_loss
from rlhf.algo.masking import masked_mean, masked_whiten
from rlhf.algo.rewards import (
    apply_missing_eos_penalty,
    clip_scores,
    gain_bias_for_unit_normal,
    normalize_scores,
    shape_rewards,
)
from rlhf.algo.types import Rollout
from rlhf.config import PPOConfig
from rlhf.data.prompts import left_pad, load_prompts, prompt_batches
from rlhf.errors import UserError
from rlhf.generation import row_seed
from rlhf.models import (
    check_fits_positions,
    frozen_copy,
    is_decoder_classifier,
    load_policy,
    save_pretrained_atomic,
    value_model_from_policy,
    value_model_from_reward,
)
from rlhf.rollout import (
    Texts,
    collect_rollout,
    concat_rollouts,
    gather_rows,
    response_logprobs,
    response_values,
)
from rlhf.run import (
    SKIPPED,
    Run,
    adamw_with_schedule,
    count_outcomes,
    optimizer_step,
)
from rlhf.scoring import RewardModelScorer, is_function_spec, load_function_scorer

KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


# -- set-up -----------------------------------------------------------------------------------


@dataclass
class PPOModels:
    """Policy, frozen reference, value model, reward scorer and the policy's tokenizer."""

    policy: torch.nn.Module
    reference: torch.nn.Module
    value: torch.nn.Module
    scorer: object
    tokenizer: object
    stop_ids: list[int]
    reward_stats: dict


def load_ppo_models(cfg: PPOConfig, device: torch.device) -> PPOModels:
    """Load the four models; the value model starts from the reward model or the policy."""
    m = cfg.model
    policy, tokenizer = load_policy(m.policy, disable_dropout=m.disable_dropout,
                                    trust_remote_code=m.trust_remote_code, seed=cfg.run.seed)
    scorer, reward_stats = build_scorer(cfg, device)
    value = _value_model(cfg, policy, tokenizer, scorer)
    return PPOModels(policy=policy, reference=frozen_copy(policy), value=value,
                     scorer=scorer, tokenizer=tokenizer,
                     stop_ids=stop_token_ids(tokenizer, cfg.generate.stop_token),
                     reward_stats=reward_stats)


def build_scorer(cfg: PPOConfig, device: torch.device):
    """A reward function or a reward model with its own tokenizer, template and EOS reading
    (model.reward_append_eos), plus the score mean/std that train-reward stored with the
    model (empty for functions)."""
    m = cfg.model
    if is_function_spec(m.reward):
        return load_function_scorer(m.reward), {}
    scorer = RewardModelScorer.from_pretrained(
        m.reward, template=m.reward_template, separator=m.reward_separator,
        append_eos=m.reward_append_eos, max_length=m.reward_max_length,
        length_option="model.reward_max_length", batch_size=max(8, cfg.train.batch_size),
        device=device)
    config = scorer.model.config
    stats = {"mean": getattr(config, "rlhf_score_mean", None),
             "std": getattr(config, "rlhf_score_std", None)}
    return scorer, stats


def _value_model(cfg: PPOConfig, policy, tokenizer, scorer) -> torch.nn.Module:
    """From the reward model when it is a decoder over the policy's vocabulary, else the policy.

    A value head must read each prefix of the policy's own tokens, so an encoder reward model
    or one with another tokenizer cannot seed it (N+ implementation details, Huang et al. 2024).
    """
    reward_model = getattr(scorer, "model", None)
    compatible = (reward_model is not None and is_decoder_classifier(reward_model)
                  and scorer.tokenizer.get_vocab() == tokenizer.get_vocab())
    choice = cfg.model.value_init
    if choice == "reward" and not compatible:
        raise UserError("model.value_init=reward needs a decoder reward model with the policy's "
                        "tokenizer; use model.value_init=policy")
    if choice == "reward" or (choice == "auto" and compatible):
        value = value_model_from_reward(cfg.model.reward, disable_dropout=cfg.model.disable_dropout)
    else:
        value = value_model_from_policy(policy, seed=cfg.run.seed,
                                        disable_dropout=cfg.model.disable_dropout)
    value.config.pad_token_id = tokenizer.pad_token_id
    return value


def stop_token_ids(tokenizer, stop_token: str | None) -> list[int]:
    """EOS plus the configured stop token, which must be a single token of the policy."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if stop_token is not None:
        ids = tokenizer.encode(stop_token, add_special_tokens=False)
        if len(ids) != 1:
            raise UserError(f"generate.stop_token {stop_token!r} is {len(ids)} tokens for the "
                            "policy's tokenizer; it must be exactly one")
        stops.append(ids[0])
    if not stops:
        raise UserError("the policy's tokenizer has no EOS token; set generate.stop_token")
    return stops


# -- scores -----------------------------------------------------------------------------------


@dataclass
class ScoreTransform:
    """gain * score + bias (Ziegler et al. 2019), then the missing-EOS penalty (so it is in
    normalised units), then clipping."""

    gain: float = 1.0
    bias: float = 0.0
    missing_eos_penalty: float | None = None
    clip: float | None = None

    def __call__(self, scores: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        scores = normalize_scores(scores, self.gain, self.bias)
        if self.missing_eos_penalty is not None:
            scores = apply_missing_eos_penalty(scores, ended, self.missing_eos_penalty)
        return clip_scores(scores, self.clip) if self.clip is not None else scores


def score_transform(cfg: PPOConfig, reward_stats: dict, reference_scores) -> ScoreTransform:
    """The configured normalisation: none, the reward model's stored stats, or measured."""
    gain, bias = 1.0, 0.0
    if cfg.ppo.score_normalization == "reward_model":
        mean, std = reward_stats.get("mean"), reward_stats.get("std")
        if mean is None or not std:
            raise UserError("ppo.score_normalization=reward_model needs a reward model saved by "
                            "train-reward (rlhf_score_mean/std in its config.json); use "
                            "'reference' instead")
        gain, bias = 1.0 / std, -mean / std
    elif cfg.ppo.score_normalization == "reference":
        gain, bias = gain_bias_for_unit_normal(reference_scores)
    return ScoreTransform(gain=gain, bias=bias, missing_eos_penalty=cfg.ppo.missing_eos_penalty,
                          clip=cfg.ppo.score_clip)


# -- the PPO update ---------------------------------------------------------------------------


@dataclass
class UpdateSettings:
    """Plain numbers the update needs (classes take plain arguments, not config objects)."""

    ppo_epochs: int
    per_minibatch: int
    """Rows of each minibatch that one process trains on."""
    micro_batch_size: int
    clip_range: float
    value_clip_range: float
    vf_coef: float
    temperature: float
    max_grad_norm: float
    target_approx_kl: float | None
    ratio_threshold: float | None = None
    seed: int = 0
    """Run seed: with the iteration and epoch it keys each epoch's minibatch order."""


RATIO_SKIPPED = "ratio_skipped"
"""A minibatch whose mean ratio exceeded ppo.ratio_threshold: no optimizer step."""


def _rows(rollout: Rollout, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The (query, response) tensors of some rows, trimmed to their longest real response."""
    mask = rollout.response_mask[index]
    width = max(int(mask.sum(1).max()), 1)
    return (rollout.query_ids[index], rollout.query_mask[index],
            rollout.response_ids[index, :width], mask[:, :width])


def minibatch_order(n_rows: int, seed: int, iteration: int, epoch: int) -> torch.Tensor:
    """(n_rows,) the order of the global batch's rows in one PPO epoch, from a generator keyed
    by (seed, iteration, epoch): the same minibatches for any number of processes, and on
    resume, whatever the RNG state."""
    generator = torch.Generator().manual_seed(row_seed("minibatches", seed, iteration, epoch))
    return torch.randperm(n_rows, generator=generator)


def ppo_update(policy, value_model, optimizer, scheduler, accelerator, rollout: Rollout,
               advantages: torch.Tensor, returns: torch.Tensor, settings: UpdateSettings,
               is_finite=lambda quantities: True, *,
               iteration: int = 0) -> tuple[dict[str, float], list[str]]:
    """PPO epochs over minibatches of the global batch; one optimizer step per minibatch.

    `rollout`, `advantages` and `returns` hold the global batch on every process
    (`rollout.gather_rows`). Each epoch orders the rows by `minibatch_order`, cuts them into
    global minibatches of per_minibatch rows per process, and process p trains on the p-th
    share of each: several processes take the steps one process would. Decisions that end an
    epoch or skip a step (approx-KL early stop, ratio threshold, NaN guard) are taken on
    values all-reduced over processes, so every process takes the same branch.

    Returns the metrics and every minibatch's outcome (`run.optimizer_step`'s, or
    RATIO_SKIPPED); a skipped minibatch adds no metrics.
    """
    world, rank, per = accelerator.num_processes, accelerator.process_index, settings.per_minibatch
    totals: dict[str, float] = {}
    outcomes: list[str] = []
    epochs_done = 0
    for epoch in range(settings.ppo_epochs):
        order = minibatch_order(len(rollout.scores), settings.seed, iteration, epoch)
        epoch_stats: dict[str, float] = {}
        for start in range(0, len(order), per * world):
            minibatch = order[start:start + per * world].to(rollout.scores.device)
            stats, outcome = _minibatch_step(
                policy, value_model, optimizer, scheduler, accelerator, rollout, advantages,
                returns, minibatch, minibatch[rank * per:(rank + 1) * per], settings, is_finite)
            outcomes.append(outcome)
            if stats is not None:
                _accumulate(epoch_stats, stats, 1.0)
        epochs_done += 1
        if not epoch_stats:
            continue
        _accumulate(totals, epoch_stats, 1.0)
        epoch_kl = _process_mean(accelerator, epoch_stats["policy/approx_kl"])
        if (settings.target_approx_kl is not None
                and epoch_kl / epoch_stats["_count"] > settings.target_approx_kl):
            break  # early stop: the policy moved too far from the rollout policy
    means = {}
    if totals:
        count = totals.pop("_count")
        means = {key: value / count for key, value in totals.items()}
        means["policy/ratio_max"] = totals["policy/ratio_max"]  # a maximum, not a sum
    return means | {"ppo/epochs_done": float(epochs_done),
                    "ppo/ratio_skipped_minibatches": float(outcomes.count(RATIO_SKIPPED))
                    }, outcomes


def _process_mean(accelerator, value: float) -> float:
    """The mean of a float over processes (the float itself with one process)."""
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.reduce(torch.tensor(value, device=accelerator.device), "mean"))


def _minibatch_step(policy, value_model, optimizer, scheduler, accelerator, rollout, advantages,
                    returns, minibatch, mine, settings: UpdateSettings,
                    is_finite) -> tuple[dict[str, float] | None, str]:
    """Forward and backward this process's rows `mine` of the global `minibatch`, then one
    optimizer step: (metrics or None when skipped, outcome)."""
    # Weights are shares of the global minibatch's real tokens times the process count: DDP
    # averages the processes' gradients, so the result is the token mean over all its rows.
    tokens = rollout.response_mask[minibatch].sum().float().clamp(min=1) / accelerator.num_processes
    stats: dict[str, float] = {}
    losses = []
    micro_batches = mine.split(settings.micro_batch_size)
    for index, micro in enumerate(micro_batches):
        query_ids, query_mask, response_ids, response_mask = _rows(rollout, micro)
        width = response_ids.shape[1]
        with ExitStack() as stack:
            if index < len(micro_batches) - 1:  # all-reduce once per minibatch
                stack.enter_context(accelerator.no_sync(policy))
                stack.enter_context(accelerator.no_sync(value_model))
            with accelerator.autocast():
                logprobs, entropy = response_logprobs(
                    policy, query_ids, query_mask, response_ids, response_mask,
                    settings.temperature, with_entropy=True)
                values = response_values(value_model, query_ids, query_mask, response_ids,
                                         response_mask)
            policy_loss, policy_stats = ppo_policy_loss(
                logprobs, rollout.logprobs[micro, :width], advantages[micro, :width],
                response_mask, settings.clip_range)
            value_loss, value_stats = clipped_value_loss(
                values, rollout.values[micro, :width], returns[micro, :width], response_mask,
                settings.value_clip_range)
            loss = policy_loss + settings.vf_coef * value_loss
            share = response_mask.sum() / tokens
            accelerator.backward(loss * share)
        losses.append(loss.detach())
        micro_stats = policy_stats.as_dict("policy/") | value_stats.as_dict("value/")
        micro_stats["policy/entropy"] = float(masked_mean(entropy.detach(), response_mask))
        micro_stats["loss/policy"] = micro_stats.pop("policy/loss")
        micro_stats["loss/value"] = micro_stats.pop("value/loss")
        _accumulate(stats, micro_stats, float(share))
    if (settings.ratio_threshold is not None
            and _process_mean(accelerator, stats["policy/ratio_mean"]) > settings.ratio_threshold):
        optimizer.zero_grad(set_to_none=True)  # a loss spike in the making (trl 0.11)
        return None, RATIO_SKIPPED
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    outcome, grad_norm = optimizer_step(
        accelerator, optimizer, scheduler, parameters, max_grad_norm=settings.max_grad_norm,
        loss=torch.stack(losses), is_finite=is_finite)
    if outcome == SKIPPED:
        return None, outcome
    stats["policy/grad_norm"] = grad_norm
    stats["_count"] = 1.0
    return stats, outcome


def _accumulate(totals: dict[str, float], stats: dict[str, float], weight: float) -> None:
    """Weighted running sums; `_count` counts unweighted entries. ratio_max keeps the max."""
    for key, value in stats.items():
        if key == "policy/ratio_max":
            totals[key] = max(totals.get(key, float("-inf")), value)
        elif key == "_count":
            totals[key] = totals.get(key, 0.0) + value
        else:
            totals[key] = totals.get(key, 0.0) + weight * value


# -- one iteration ----------------------------------------------------------------------------


def sequence_kl(rollout: Rollout, estimator: str) -> torch.Tensor:
    """(B, R) per-token KL estimate of policy vs reference, 0 after the stop token."""
    kl = KL_ESTIMATORS[estimator](rollout.logprobs, rollout.ref_logprobs)  # (B, R)
    return kl * rollout.response_mask


def advantages_and_returns(rollout: Rollout, kl: torch.Tensor, kl_coef: float, *, gamma: float,
                           lam: float, whiten_rewards: bool, sum_over_processes=None):
    """Steps 3 and 4: shaped per-token rewards, then GAE; advantages whitened over the real
    tokens of the global batch (`sum_over_processes` all-reduces the statistics)."""
    rewards, non_score = shape_rewards(rollout.scores, kl, kl_coef, rollout.response_mask)
    if whiten_rewards:  # scale only: a mean shift would change the incentive to stop early
        rewards = masked_whiten(rewards, rollout.response_mask, shift_mean=False,
                                sum_over_processes=sum_over_processes)
    advantages, returns = gae(rewards, rollout.values, rollout.response_mask, gamma, lam)
    advantages = masked_whiten(advantages, rollout.response_mask,
                               sum_over_processes=sum_over_processes)
    return advantages, returns, rewards, non_score


def rollout_metrics(rollout: Rollout, raw_scores: torch.Tensor, kl: torch.Tensor,
                    non_score: torch.Tensor, kl_coef: float) -> dict[str, float]:
    """Per-iteration objective metrics (docs/metrics.md), averaged over sequences."""
    non_score_per_sequence = non_score.sum(1)  # (B,)
    lengths = rollout.response_mask.sum(1).float()  # (B,)
    return {
        "objective/score": float(rollout.scores.mean()),
        "objective/score_std": float(rollout.scores.std()) if len(rollout.scores) > 1 else 0.0,
        "objective/raw_score": float(raw_scores.mean()),
        "objective/kl": float(kl.sum(1).mean()),
        "objective/kl_coef": kl_coef,
        "objective/non_score_reward": float(non_score_per_sequence.mean()),
        "objective/rlhf_reward": float((rollout.scores + non_score_per_sequence).mean()),
        "response/length": float(lengths.mean()),
        "response/ended_fraction": float(rollout.ended_with_eos.float().mean()),
    }


# -- the loop ---------------------------------------------------------------------------------


def train_ppo(cfg: PPOConfig) -> dict[str, float]:
    """Run PPO as configured; returns the last iteration's metrics."""
    run = Run(cfg.run, cfg, stage="ppo")
    per_process, per_minibatch, micro = cfg.batch_split(run.accelerator.num_processes)
    models = load_ppo_models(cfg, run.device)
    check_lengths(cfg, models)
    prompts, prompt_ids = load_prompts(
        cfg.data.path, name=cfg.data.name, split=cfg.data.split, template=cfg.data.template,
        columns=dict(cfg.data.columns), tokenizer=models.tokenizer,
        max_prompt_tokens=cfg.data.max_prompt_tokens, context_chars=cfg.data.context_chars,
        max_samples=cfg.data.max_samples, seed=cfg.run.seed)
    score_prompts = _score_prompts(cfg, prompts)
    schedule = IterationSchedule(len(prompt_ids), cfg)
    optimizer, scheduler = adamw_with_schedule(
        list(models.policy.parameters()) + list(models.value.parameters()),
        learning_rate=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
        scheduler=cfg.train.scheduler, warmup_ratio=cfg.train.warmup_ratio,
        total_steps=schedule.iterations * cfg.ppo.ppo_epochs * cfg.ppo.num_minibatches)
    policy, value, optimizer = run.accelerator.prepare(models.policy, models.value, optimizer)
    _prepare_frozen(run, models)
    checkpointed = {"models": {"policy": policy, "value": value},
                    "optimizers": {"ppo": optimizer}, "schedulers": {"ppo": scheduler}}
    state = run.start(**checkpointed)
    kl_ctl = _kl_controller(cfg)
    if "kl_controller" in state.extra:
        kl_ctl.load_state_dict(state.extra["kl_controller"])
        transform = ScoreTransform(**state.extra["score_transform"])
    else:
        transform = _initial_transform(cfg, run, models, prompt_ids, score_prompts, schedule)
    settings = UpdateSettings(
        ppo_epochs=cfg.ppo.ppo_epochs, per_minibatch=per_minibatch, micro_batch_size=micro,
        clip_range=cfg.ppo.clip_range, value_clip_range=cfg.ppo.value_clip_range,
        vf_coef=cfg.ppo.vf_coef, temperature=cfg.generate.temperature,
        max_grad_norm=cfg.train.max_grad_norm, target_approx_kl=cfg.ppo.target_approx_kl,
        ratio_threshold=cfg.ppo.ratio_threshold, seed=cfg.run.seed)
    bar = tqdm(total=schedule.iterations, initial=state.step, desc="ppo", dynamic_ncols=True,
               disable=not (run.is_main and cfg.run.progress))
    metrics: dict[str, float] = {}
    while state.step < schedule.iterations:
        started = time.perf_counter()
        indices = schedule.local_prompts(state.step, run.accelerator)
        timings: dict[str, float] = {}
        rollout, texts = _collect(cfg, run, models, policy, value,                         # 1.
                                  [prompt_ids[i] for i in indices],
                                  [score_prompts[i] for i in indices],
                                  schedule.response_lengths(state.step, indices),
                                  schedule.row_seeds(state.step, indices), timings)
        raw_scores = rollout.scores
        if not run.finite_or_skip(state.step, {"reward": raw_scores}):
            state.step += 1  # no update from an iteration whose rewards are NaN/inf
            _log_iteration(cfg, run, state.step, count_outcomes(state, None, [SKIPPED]), None,
                           None, bar)
            run.end_of_step(state, checkpointed, last=state.step == schedule.iterations)
            continue
        rollout.scores = transform(raw_scores, rollout.ended_with_eos)
        kl = sequence_kl(rollout, cfg.ppo.kl_estimator)                                  # 2.
        advantages, returns, _, non_score = advantages_and_returns(                      # 3, 4.
            rollout, kl, kl_ctl.value, gamma=cfg.ppo.gamma, lam=cfg.ppo.lam,
            whiten_rewards=cfg.ppo.whiten_rewards,
            sum_over_processes=run.sum_over_processes if run.accelerator.num_processes > 1 else None)
        policy.train()
        update_started = time.perf_counter()
        update_stats, outcomes = ppo_update(                                             # 5.
            policy, value, optimizer, scheduler, run.accelerator,
            *gather_rows(run.accelerator, rollout, advantages, returns,
                         pad_id=models.tokenizer.pad_token_id),
            settings, lambda quantities: run.finite_or_skip(state.step, quantities),
            iteration=state.step)
        timings["time/update"] = time.perf_counter() - update_started
        metrics = _iteration_metrics(run, rollout, raw_scores, kl, non_score, kl_ctl.value,
                                     update_stats | timings | _throughput(rollout, started))
        metrics["train/lr"] = scheduler.get_last_lr()[0]
        kl_ctl.update(metrics["objective/kl"], cfg.train.batch_size)                    # 6.
        metrics = count_outcomes(state, metrics, outcomes)
        state.step += 1
        state.extra |= {"kl_controller": kl_ctl.state_dict(), "score_transform": vars(transform)}
        _log_iteration(cfg, run, state.step, metrics, texts, rollout, bar)
        run.end_of_step(state, checkpointed, last=state.step == schedule.iterations)
    bar.close()
    _save_final(run, policy, value, models.tokenizer)
    run.finish()
    return metrics


def _iteration_metrics(run: Run, rollout: Rollout, raw_scores, kl, non_score, kl_coef: float,
                       update_stats: dict[str, float]) -> dict[str, float]:
    """One iteration's metrics over the global batch: means over processes, except the
    score's std and the ratio's max, which are taken over all rows."""
    metrics = rollout_metrics(rollout, raw_scores, kl, non_score, kl_coef) | update_stats
    metrics = run.mean_over_processes(metrics)
    if run.accelerator.num_processes > 1:
        metrics["objective/score_std"] = float(run.accelerator.gather(rollout.scores).std())
        if "policy/ratio_max" in update_stats:
            metrics["policy/ratio_max"] = float(run.accelerator.reduce(
                torch.tensor(update_stats["policy/ratio_max"], device=run.device), "max"))
    return metrics


def check_lengths(cfg: PPOConfig, models: PPOModels) -> None:
    """Prompt plus response fit the positions of the policy and value model, so a run fails
    at load with the keys to change instead of an IndexError mid-run (the reward model's
    limit is checked by its scorer)."""
    total = cfg.data.max_prompt_tokens + cfg.generate.max_new_tokens
    for model in (models.policy, models.value):
        check_fits_positions(model, total, "data.max_prompt_tokens + generate.max_new_tokens",
                             cfg.model.policy)


def _prepare_frozen(run: Run, models: PPOModels) -> None:
    """The reference and the reward model at the trained models' forward precision: with the
    policy equal to the reference (iteration 1), the KL is exactly 0 (`Run.prepare_frozen`)."""
    models.reference = run.prepare_frozen(models.reference)
    if isinstance(models.scorer, RewardModelScorer):
        models.scorer.model = run.prepare_frozen(models.scorer.model)


class IterationSchedule:
    """Which prompts each iteration uses, and how long its responses may be.

    Both depend only on (seed, iteration), never on RNG state, so resume picks up exactly
    where the run stopped.
    """

    def __init__(self, n_prompts: int, cfg: PPOConfig):
        self.batch_size = cfg.train.batch_size
        self.per_epoch = n_prompts // self.batch_size
        if self.per_epoch == 0:
            raise UserError(f"train.batch_size {self.batch_size} is larger than the {n_prompts} "
                            "prompts; lower train.batch_size")
        episodes = cfg.ppo.total_episodes or cfg.train.epochs * self.per_epoch * self.batch_size
        self.iterations = math.ceil(episodes / self.batch_size)
        self.seed = cfg.run.seed
        self.n_prompts = n_prompts
        self.min_new, self.max_new = cfg.generate.min_new_tokens, cfg.generate.max_new_tokens
        self._epoch, self._batches = -1, []

    def local_prompts(self, iteration: int, accelerator) -> list[int]:
        """This process's share of the iteration's prompt indices."""
        epoch, position = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = prompt_batches(self.n_prompts, self.batch_size, seed=self.seed,
                                           epoch=epoch)
        batch = self._batches[position]
        share = len(batch) // accelerator.num_processes
        return batch[accelerator.process_index * share:][:share]

    def row_seeds(self, iteration: int, indices: list[int]) -> list[int]:
        """Sampling seeds keyed by (seed, iteration, prompt): the same samples however many
        processes share the batch."""
        return [row_seed(self.seed, iteration, index) for index in indices]

    def response_lengths(self, iteration: int, indices: list[int]) -> list[int]:
        """Each prompt's response length limit: max_new_tokens, or a draw from [min, max]
        keyed by (seed, iteration, prompt), like the seed's per-sample LengthSampler."""
        if self.min_new is None:
            return [self.max_new] * len(indices)
        choices = self.max_new - self.min_new + 1
        return [self.min_new + row_seed("length", self.seed, iteration, index) % choices
                for index in indices]

    def first_prompts(self, count: int) -> list[int]:
        """The first `count` prompts of the training order (the first iterations' prompts)."""
        order = [i for batch in prompt_batches(self.n_prompts, self.batch_size, seed=self.seed,
                                               epoch=0) for i in batch]
        return order[:count]


def _score_prompts(cfg: PPOConfig, prompts) -> list[str]:
    """The prompt text the reward model reads for each prompt."""
    if cfg.data.reward_prompt == "instruction":
        return [row.get("instruction") or row.get("prompt") or "" for row in prompts.raw]
    return list(prompts.prompts)


def _kl_controller(cfg: PPOConfig):
    if cfg.ppo.adaptive_kl:
        return AdaptiveKLController(cfg.ppo.kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
    return FixedKLController(cfg.ppo.kl_coef)


def _collect(cfg: PPOConfig, run: Run, models: PPOModels, policy, value, prompt_ids,
             score_prompts, lengths: list[int], row_seeds: list[int],
             timings: dict) -> tuple[Rollout, Texts]:
    """Step 1 in chunks of train.rollout_batch_size rows (all at once when 0), under the
    trained models' autocast, so the value and score heads run at the update's precision."""
    query_ids, query_mask = left_pad(prompt_ids, models.tokenizer.pad_token_id)
    query_ids, query_mask = query_ids.to(run.device), query_mask.to(run.device)
    chunk = cfg.train.rollout_batch_size or len(query_ids)
    parts, texts = [], Texts(prompts=[], responses=[])
    for start in range(0, len(query_ids), chunk):
        rows = slice(start, start + chunk)
        with run.accelerator.autocast():
            rollout, part_texts = collect_rollout(
                policy, models.reference, value, models.scorer, query_ids=query_ids[rows],
                query_mask=query_mask[rows], score_prompts=score_prompts[rows],
                tokenizer=models.tokenizer, max_new_tokens=lengths[rows],
                temperature=cfg.generate.temperature, stop_token_ids=models.stop_ids,
                row_seeds=row_seeds[rows], timings=timings)
        parts.append(rollout)
        texts.prompts += part_texts.prompts
        texts.responses += part_texts.responses
    return concat_rollouts(parts, models.tokenizer.pad_token_id), texts


def _initial_transform(cfg: PPOConfig, run: Run, models: PPOModels, prompt_ids, score_prompts,
                       schedule: IterationSchedule) -> ScoreTransform:
    """Score normalisation fixed before training. For 'reference': gain and bias that give
    the initial policy (= the reference) scores of mean 0 and std 1, measured on samples
    drawn as training draws them (the first iterations' prompts, each response's length
    limit drawn as training draws it, the same temperature): with a length-sensitive reward,
    samples all of max_new_tokens put normalised training scores 2 to 4 std from 0."""
    reference_scores = None
    if cfg.ppo.score_normalization == "reference":
        indices = schedule.first_prompts(cfg.ppo.normalization_samples)
        rollout, _ = _collect(cfg, run, models, models.reference, None,
                              [prompt_ids[i] for i in indices], [score_prompts[i] for i in indices],
                              schedule.response_lengths(-1, indices),
                              schedule.row_seeds(-1, indices), {})
        reference_scores = rollout.scores.cpu()
    return score_transform(cfg, models.reward_stats, reference_scores)


def _throughput(rollout: Rollout, started: float) -> dict[str, float]:
    seconds = time.perf_counter() - started
    tokens = float(rollout.response_mask.sum() + rollout.query_mask.sum())
    return {"time/iteration": seconds, "throughput/tokens_per_s": tokens / max(seconds, 1e-9)}


def _log_iteration(cfg: PPOConfig, run: Run, step: int, metrics: dict[str, float],
                   texts: Texts | None, rollout: Rollout | None, bar) -> None:
    if step % cfg.run.log_every == 0:
        run.log(step, metrics)
    bar.update(1)
    if rollout is None:  # a skipped iteration: no samples to show
        return
    bar.set_postfix(score=f"{metrics['objective/score']:.3f}",
                    kl=f"{metrics['objective/kl']:.3f}")
    if not cfg.samples_every or (step % cfg.samples_every != 0 and step != 1):
        return
    rows = list(zip(texts.prompts, texts.responses, rollout.scores.tolist(), strict=True))[:8]
    if run.accelerator.num_processes > 1:  # the first rows of the global batch, in its order
        rows = gather_object(rows)[:8]
    if run.is_main:
        with open(run.output_dir / "samples.jsonl", "a", encoding="utf-8") as handle:
            for prompt, response, score in rows:
                handle.write(json.dumps({"step": step, "prompt": prompt, "response": response,
                                         "score": score}, ensure_ascii=False) + "\n")


def _save_final(run: Run, policy, value, tokenizer) -> None:
    """The policy (and value model) as save_pretrained folders."""
    if run.is_main:
        save_pretrained_atomic(run.accelerator.unwrap_model(policy), tokenizer,
                               run.output_dir / "policy")
        save_pretrained_atomic(run.accelerator.unwrap_model(value), tokenizer,
                               run.output_dir / "value")
        print(f"[rlhf] policy saved to {run.output_dir / 'policy'}", flush=True)
    run.accelerator.wait_for_everyone()
