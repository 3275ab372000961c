"""Held-out evaluation of an RL run (the `eval` config section): the same prompts answered by the
policy before training and every `eval.every` iterations, scored by the training reward
(eval/score) and optionally by a second reward (eval/reward: a held-out reward model, or a gold
reward function), with the KL to the reference on the policy's own samples.

It is what tells a user whether the true quality rose while the training (proxy) reward was
optimised, and at what KL (Gao et al. 2022 plot both against sqrt(KL)). Sampling is seeded by
prompt alone ("eval", index), the same at every evaluation and in every run, so two
evaluations differ only by the policy; it never touches the training's random streams, so a
run with evaluations trains exactly as one without. Every process answers every held-out
prompt (each logs the same numbers); under FSDP2 they sample in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from rlhf.algo.kl import kl_k1
from rlhf.algo.overoptimisation import past_the_peak
from rlhf.engine.run import Run
from rlhf.rl.generation import row_seed
from rlhf.rl.rollout import collect_in_chunks
from rlhf.rl.setup import (
    PolicyModels,
    load_run_prompts,
    load_run_scorer,
    prepare_frozen_scorer,
)

EVAL_PROMPT_SEED = 0
"""The held-out prompts are chosen with this seed, not the run's, so seeds compare on one set."""


@dataclass
class HeldOutEvaluation:
    """The held-out prompts, the optional second reward, and the history the alarm reads."""

    prompt_ids: list[list[int]]
    score_prompts: list[str]
    every: int
    patience: int
    max_new_tokens: int
    temperature: float
    chunk: int
    scorer: object | None = None
    """The second reward (eval.reward); None: eval/score only."""
    history: list[tuple[float, float]] = field(default_factory=list)
    """(eval/score, eval/reward) of each evaluation so far, for the over-optimisation alarm."""
    warned: bool = False

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def state_dict(self) -> dict:
        return {"history": [list(pair) for pair in self.history], "warned": self.warned}

    def load_state_dict(self, state: dict) -> None:
        self.history = [tuple(pair) for pair in state["history"]]
        self.warned = state["warned"]


def load_evaluation(cfg, models: PolicyModels, run: Run) -> HeldOutEvaluation | None:
    """The run's held-out evaluation, or None when `eval.every` is 0. The second reward reads
    text as the training reward model is configured to (model.reward_*), at the run's
    precision."""
    if not cfg.eval.every:
        return None
    data = replace(cfg.data, split=cfg.eval.split, max_samples=cfg.eval.prompts)
    prompt_ids, score_prompts = load_run_prompts(data, models.tokenizer, EVAL_PROMPT_SEED)
    scorer = None
    if cfg.eval.reward is not None:
        scorer = load_run_scorer(cfg.eval.reward, cfg.model, batch_size=cfg.train.batch_size,
                                 device=run.device)
        prepare_frozen_scorer(run, scorer)
    return HeldOutEvaluation(
        prompt_ids=prompt_ids, score_prompts=score_prompts, every=cfg.eval.every,
        patience=cfg.eval.alarm_patience, max_new_tokens=cfg.generate.max_new_tokens,
        temperature=cfg.generate.temperature, chunk=cfg.train.rollout_batch_size, scorer=scorer)


@torch.no_grad()
def evaluate_held_out(evaluation: HeldOutEvaluation, run: Run, models: PolicyModels,
                      policy) -> dict[str, float]:
    """eval/ metrics of the policy on the held-out prompts (see docs/metrics.md)."""
    was_training = policy.training
    count = len(evaluation.prompt_ids)
    rollout, texts = collect_in_chunks(
        run, models, policy, None, evaluation.prompt_ids, evaluation.score_prompts,
        [evaluation.max_new_tokens] * count, [row_seed("eval", i) for i in range(count)],
        chunk=evaluation.chunk, temperature=evaluation.temperature, timings={})
    policy.train(was_training)
    scores = rollout.scores.float()
    metrics = {"eval/score": float(scores.mean()), "eval/score_std": _std(scores),
               "eval/distinct_fraction": len(set(texts.responses)) / count,
               "eval/response_length": float(rollout.response_mask.sum(1).float().mean())}
    if rollout.ref_logprobs is not None:
        kl = (kl_k1(rollout.logprobs, rollout.ref_logprobs) * rollout.response_mask).sum(1)
        metrics["eval/kl"] = float(kl.mean())
    if evaluation.scorer is not None:
        reward = evaluation.scorer(texts.prompts, texts.responses).float()
        metrics |= {"eval/reward": float(reward.mean()), "eval/reward_std": _std(reward)}
        metrics |= _alarm(evaluation, run, metrics)
    return metrics


def _alarm(evaluation: HeldOutEvaluation, run: Run, metrics: dict[str, float]
           ) -> dict[str, float]:
    """eval/past_the_peak (0 or 1), and one warning line the first time it turns 1."""
    evaluation.history.append((metrics["eval/score"], metrics["eval/reward"]))
    proxy, gold = zip(*evaluation.history, strict=True)
    fired = past_the_peak(proxy, gold, evaluation.patience)
    if fired and not evaluation.warned and run.is_main:
        best = max(gold)
        print(f"[rlhf] warning: over-optimisation: eval/reward has stayed below its best "
              f"({best:.4f}) for {evaluation.patience} evaluation(s) while eval/score, the "
              f"training reward, rose to {proxy[-1]:.4f}; the policy is gaming the training "
              "reward (keep an earlier checkpoint, raise the KL penalty or stop here)",
              flush=True)
    evaluation.warned = evaluation.warned or fired
    return {"eval/past_the_peak": float(fired)}


def _std(values: torch.Tensor) -> float:
    return float(values.std()) if len(values) > 1 else 0.0
