"""The optimisation runs of `benchmarks/learning.py`: PPO, RLOO, GRPO, REINFORCE++ against a
proxy reward model (their `eval` section scoring the held-out prompts with the proxy, the gold
and the KL to the SFT policy), and DPO on the proxy's pairs, evaluated at its checkpoints.

Every run is one task for a pool of spawned worker processes (one torch thread each), so two
runs share the two CPU cores; a task returns its points, never a model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

from learning_stages import EVAL_PROMPTS, GOLD, MAX_NEW_TOKENS

ROOT = Path(__file__).resolve().parents[1]
RL_METHODS = ("ppo", "rloo", "grpo", "reinforce_pp")
RESPONSES_PER_ITERATION = 32  # every method: as demo_configs/ppo.yaml's batch
GROUP = 4  # responses per prompt of RLOO and GRPO (configs/critic_free/*_tiny.yaml)


def init_worker() -> None:
    """One torch thread per worker: two workers share the two cores."""
    import torch

    torch.set_num_threads(1)


def rl_overrides(spec: dict) -> list[str]:
    """Overrides every RL method shares: models, length, evaluation, a small fixed KL
    coefficient (so the KL gets far enough for over-optimisation to show), the same learning
    rate."""
    return [f"run.output_dir={spec['folder']}", f"run.seed={spec['seed']}",
            "run.progress=false", "run.save_every=0", "samples_every=0",
            f"model.policy={spec['sft']}", f"model.reward={spec['proxy']}",
            f"generate.max_new_tokens={MAX_NEW_TOKENS}", "generate.temperature=1.0",
            f"eval.every={spec['eval_every']}", f"eval.prompts={EVAL_PROMPTS}",
            "eval.split=test", f"eval.reward={GOLD}", "eval.alarm_patience=1000",
            f"train.learning_rate={spec['learning_rate']}", "train.scheduler=constant"]


def rl_config(spec: dict):
    """The method's config: the demo's PPO stage, or the shipped tiny critic-free config."""
    from rlhf.config import CriticFreeConfig, load_config
    from rlhf.demo import stage_config

    iterations, kl_coef = spec["iterations"], spec["kl_coef"]
    common = rl_overrides(spec)
    if spec["method"] == "ppo":
        return stage_config("ppo", Path(spec["folder"]), False, [
            *common, "ppo.adaptive_kl=false", f"ppo.kl_coef={kl_coef}",
            f"train.batch_size={RESPONSES_PER_ITERATION}",
            f"ppo.total_episodes={RESPONSES_PER_ITERATION * iterations}"])
    samples = 1 if spec["method"] == "reinforce_pp" else GROUP
    prompts = RESPONSES_PER_ITERATION // samples
    return load_config(CriticFreeConfig, ROOT / f"configs/critic_free/{spec['method']}_tiny.yaml",
                       [*common, f"algo.kl_coef={kl_coef}", f"generate.num_samples={samples}",
                        f"train.batch_size={prompts}", f"algo.total_prompts={prompts * iterations}"])


def eval_points(folder: Path) -> list[dict]:
    """(step, kl, sqrt_kl, gold, proxy) of every held-out evaluation in RUN/metrics.jsonl."""
    points = []
    for line in open(folder / "metrics.jsonl", encoding="utf-8"):
        row = json.loads(line)
        if "eval/reward" in row:
            kl = row.get("eval/kl", 0.0)
            points.append({"step": row["step"], "kl": kl, "sqrt_kl": math.sqrt(max(kl, 0.0)),
                           "gold": row["eval/reward"], "proxy": row["eval/score"],
                           "gold_std": row["eval/reward_std"], "proxy_std": row["eval/score_std"],
                           "length": row["eval/response_length"],
                           "distinct": row["eval/distinct_fraction"]})
    return points


def run_rl(spec: dict) -> dict:
    """One RL run (in a worker): train, then read its evaluations back."""
    if spec["method"] == "ppo":
        from rlhf.stages.ppo.train import train_ppo as train
    else:
        from rlhf.stages.critic_free.train import train_critic_free as train
    with quiet(Path(spec["folder"])):
        train(rl_config(spec))
    return spec | {"points": eval_points(Path(spec["folder"]))}


def run_dpo(spec: dict) -> dict:
    """DPO from the SFT policy on the proxy's pairs (the demo's DPO stage), a checkpoint every
    `save_every` steps, each evaluated on the held-out prompts afterwards."""
    from rlhf.demo import stage_config
    from rlhf.stages.dpo.train import train_dpo

    folder = Path(spec["folder"])
    cfg = stage_config("dpo", folder, False, [
        f"run.output_dir={folder}", f"run.seed={spec['seed']}", "run.progress=false",
        f"model.name_or_path={spec['sft']}", f"data.path={spec['pairs']}",
        "data.max_samples=null", f"train.epochs={spec['epochs']}", "run.eval_every=0",
        f"run.save_every={spec['save_every']}", "run.keep_last=1000"])
    with quiet(folder):
        train_dpo(cfg)
        points = dpo_points(spec, folder)
    return spec | {"points": points}


def dpo_points(spec: dict, folder: Path) -> list[dict]:
    """The SFT policy (step 0) and each checkpoint against the SFT policy on the held-out
    prompts (`compare_policies`, proxy-scored), with the gold on the same responses."""
    import torch
    from learning_stages import eval_prompts
    from safetensors.torch import load_model

    from rlhf.engine.checkpoint import list_checkpoints
    from rlhf.models import load_policy
    from rlhf.reward.gold import gold_descriptiveness
    from rlhf.reward.scorers import RewardModelScorer
    from rlhf.rl.compare import compare_policies
    from rlhf.rl.generation import stop_token_ids

    reference, tokenizer = load_policy(spec["sft"])
    scorer = RewardModelScorer.from_pretrained(spec["proxy"])
    prompt_ids, texts = eval_prompts(Path(spec["sft"]))
    steps = [(0, None), *list_checkpoints(folder)]
    points = []
    for step, checkpoint in steps:
        policy, _ = load_policy(spec["sft"])
        if checkpoint is not None:
            load_model(policy, str(checkpoint / "model.safetensors"))
        result = compare_policies(
            policy.eval(), reference.eval(), tokenizer, scorer, prompt_ids, texts,
            max_new_tokens=MAX_NEW_TOKENS, temperature=1.0,
            stop_token_ids=stop_token_ids(tokenizer, None), seed=0)
        gold = torch.tensor(gold_descriptiveness(texts, result.policy_responses))
        kl = float(result.policy_kl.mean())
        points.append({"step": step, "kl": kl, "sqrt_kl": math.sqrt(max(kl, 0.0)),
                       "gold": float(gold.mean()), "proxy": float(result.policy_scores.mean()),
                       "gold_std": float(gold.std()),
                       "proxy_std": float(result.policy_scores.std()),
                       "length": float(result.policy_lengths.float().mean()),
                       "distinct": len(set(result.policy_responses)) / len(texts)})
    return points


def run_task(task: dict) -> dict:
    """A pool task: an RL run, a DPO run, a proxy to train or best-of-n candidates to draw."""
    import learning_stages as stages

    kind, work = task["kind"], Path(task.get("work", "."))
    if kind == "dpo":
        return run_dpo(task)
    if kind == "proxy":
        with quiet(work / f"proxy_{task['size']}"):
            metrics = stages.train_proxy(work, task["size"], task["epochs"])
        return task | {"metrics": metrics}
    if kind == "best_of_n":
        with quiet(work / "best_of_n"):
            stages.sample_best_of(work, Path(task["sft"]), task["best_of"])
        return task
    return run_rl(task)


@contextlib.contextmanager
def quiet(folder: Path):
    """A run's own output goes to FOLDER.log, so the pool's console stays readable."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.log", "w", encoding="utf-8") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def run_pool(tasks: list[dict], jobs: int) -> list[dict]:
    """Every task on `jobs` spawned workers (one thread each), in order of submission;
    prints each as it finishes."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    start = time.time()
    if jobs <= 1:
        return [_done(run_task(task), start) for task in tasks]
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker) as pool:
        futures = {pool.submit(run_task, task): i for i, task in enumerate(tasks)}
        results = [None] * len(tasks)
        for future in as_completed(futures):
            results[futures[future]] = _done(future.result(), start)
    return results


def _done(result: dict, start: float) -> dict:
    import time

    name = result.get("name", result["kind"])
    print(f"[learning] {time.time() - start:6.0f} s  done: {name}", flush=True)
    return result
