"""The bookkeeping every RL iteration ends with: throughput, sample responses, the log line,
the progress bar, checkpoints, and the models saved at the end."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from accelerate.utils import gather_object
from tqdm.auto import tqdm

from rlhf.algo.types import Rollout
from rlhf.engine.checkpoint import TrainingState
from rlhf.engine.engines import full_state_dict
from rlhf.engine.run import Run
from rlhf.rl.evaluation import HeldOutEvaluation, evaluate_held_out
from rlhf.rl.rollout import Texts
from rlhf.rl.schedule import IterationSchedule
from rlhf.rl.setup import PolicyModels
from rlhf.saving import save_trained


@dataclass(kw_only=True)
class RLSession:
    """What every iteration of an RL run uses, set up once by the stage's start function; a
    stage's session adds its own parts (PPO's value model, KL controller, ...) and says which
    models and optimizers its checkpoints hold."""

    cfg: Any
    """The stage's config (it has `run` and `samples_every`)."""
    run: Run
    models: PolicyModels
    """The unprepared models: the reference, the scorer and the tokenizer are read from here."""
    policy: Any
    """The policy as accelerate prepared it (DDP-wrapped with several processes)."""
    optimizer: Any
    scheduler: Any
    schedule: IterationSchedule
    prompt_ids: list[list[int]]
    score_prompts: list[str]
    """The prompt text the reward model reads for each prompt."""
    evaluation: HeldOutEvaluation | None = None
    """The held-out evaluation (`eval` section); None when eval.every is 0."""
    state: TrainingState | None = None
    """Set by `Run.start` (resumed from a checkpoint or new)."""
    bar: Any = None

    @property
    def checkpointed(self) -> dict[str, dict]:
        """The models, optimizers and schedulers a checkpoint holds, by name."""
        raise NotImplementedError

    @property
    def sum_over_processes(self):
        """An all-reduce sum for statistics of the global batch (None with one process)."""
        return self.run.sum_over_processes if self.run.accelerator.num_processes > 1 else None


def throughput(rollout: Rollout, started: float) -> dict[str, float]:
    seconds = time.perf_counter() - started
    tokens = float(rollout.response_mask.sum() + rollout.query_mask.sum())
    return {"time/iteration": seconds, "throughput/tokens_per_s": tokens / max(seconds, 1e-9)}


def write_samples(run: Run, step: int, texts: Texts, rollout: Rollout) -> None:
    """Up to 8 (prompt, response, score) rows of the global batch, in its order, appended to
    samples.jsonl by the main process."""
    rows = list(zip(texts.prompts, texts.responses, rollout.scores.tolist(), strict=True))[:8]
    if run.accelerator.num_processes > 1:  # the first rows of the global batch, in its order
        rows = gather_object(rows)[:8]
    if run.is_main:
        with open(run.output_dir / "samples.jsonl", "a", encoding="utf-8") as handle:
            for prompt, response, score in rows:
                handle.write(json.dumps({"step": step, "prompt": prompt, "response": response,
                                         "score": score}, ensure_ascii=False) + "\n")


def progress_bar(session: RLSession, desc: str):
    """A bar over the session's iterations that starts where a resumed run stands."""
    return tqdm(total=session.schedule.iterations, initial=session.state.step, desc=desc,
                dynamic_ncols=True, disable=not (session.run.is_main and session.cfg.run.progress))


def end_iteration(session: RLSession, metrics: dict[str, float], texts: Texts | None = None,
                  rollout: Rollout | None = None) -> dict[str, float]:
    """Count the iteration, evaluate on the held-out prompts when due, log it (and samples every
    samples_every iterations and after the first), checkpoint when due; the metrics."""
    session.state.step += 1
    step, cfg = session.state.step, session.cfg
    evaluated = session.evaluation is not None and session.evaluation.due(step)
    if evaluated:
        metrics = metrics | held_out_metrics(session)
    if step % cfg.run.log_every == 0 or evaluated:
        session.run.log(step, metrics)
    session.bar.update(1)
    if rollout is not None:  # a skipped iteration has no samples to show
        shown = {"score": f"{metrics['objective/score']:.3f}"}
        if "objective/kl" in metrics:
            shown["kl"] = f"{metrics['objective/kl']:.3f}"
        session.bar.set_postfix(**shown)
        if cfg.samples_every and (step % cfg.samples_every == 0 or step == 1):
            write_samples(session.run, step, texts, rollout)
    session.run.end_of_step(session.state, session.checkpointed,
                            last=step == session.schedule.iterations)
    return metrics


def held_out_metrics(session: RLSession) -> dict[str, float]:
    """The held-out evaluation's metrics; its alarm history goes into the checkpoint state."""
    metrics = evaluate_held_out(session.evaluation, session.run, session.models, session.policy)
    session.state.extra["evaluation"] = session.evaluation.state_dict()
    return metrics


def run_to_the_end(session: RLSession, iteration, **saved) -> dict[str, float]:
    """`iteration(session)` until the schedule's last iteration, then the `saved` models
    (policy=..., value=...) written and the run finished; the last iteration's metrics."""
    metrics: dict[str, float] = {}
    if session.evaluation is not None and "evaluation" in session.state.extra:  # resumed
        session.evaluation.load_state_dict(session.state.extra["evaluation"])
    elif session.evaluation is not None and session.state.step == 0:  # the policy before training
        session.run.log(0, held_out_metrics(session))
    while session.state.step < session.schedule.iterations:
        metrics = iteration(session)
    session.bar.close()
    save_models(session.run, session.models.tokenizer, merge=session.cfg.lora.merge, **saved)
    session.run.finish()
    return metrics


def save_models(run: Run, tokenizer, *, merge: bool = True, **models) -> None:
    """Each model as a save_pretrained folder named by its keyword (policy=..., value=...);
    a LoRA model also as `<name>-adapter` (and without the merged folder when not `merge`).
    Every process calls it: a sharded model's weights are gathered first (FSDP2)."""
    written = []
    for name, model in models.items():
        state_dict = full_state_dict(run.accelerator, model)  # collective; None unless sharded
        if run.is_main:
            written += save_trained(run.accelerator.unwrap_model(model), tokenizer,
                                    run.output_dir / name, merge=merge, state_dict=state_dict)
    if run.is_main:
        print(f"[rlhf] saved {', '.join(map(str, written))}", flush=True)
    run.accelerator.wait_for_everyone()
