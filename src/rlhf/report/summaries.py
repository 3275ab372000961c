"""The numbers of a report: each stage's summary table, the pipeline overview's one-line
headline, the last value of every metric, and how numbers are written."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from rlhf.report.run_files import SAMPLING_STAGES, StageRun, is_number, read_config


def format_number(value) -> str:
    """A value as report text: thousands separators, a few significant digits, HTML-escaped."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"


def _last(records: list[dict], key: str):
    values = [r[key] for r in records if is_number(r.get(key))]
    return values[-1] if values else None


def _first(records: list[dict], key: str):
    values = [r[key] for r in records if is_number(r.get(key))]
    return values[0] if values else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def kv_table(rows: list[tuple[str, object]]) -> str:
    """A two-column (name, value) table; rows whose value is None are left out."""
    body = "".join(f"<tr><th scope=\"row\">{escape(name)}</th><td class=\"num\">"
                   f"{format_number(value)}</td></tr>" for name, value in rows
                   if value is not None)
    if not body:
        return '<p class="muted">Nothing logged yet.</p>'
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _steps(records: list[dict]) -> int | None:
    steps = [r["step"] for r in records if is_number(r.get("step"))]
    return max(steps) if steps else None


def _artifacts(run_dir: Path) -> list[tuple[str, object]]:
    """Checkpoints and saved model folders present in the run directory."""
    checkpoints = sorted((p.name for p in run_dir.glob("checkpoint-*") if p.is_dir()),
                         key=lambda name: int(name.rsplit("-", 1)[-1])
                         if name.rsplit("-", 1)[-1].isdigit() else -1)
    models = [f"{name}/" for name in ("model", "policy", "value") if (run_dir / name).is_dir()]
    return [("checkpoints", f"{len(checkpoints)} (latest {checkpoints[-1]})"
             if checkpoints else None),
            ("saved models", ", ".join(models) or None)]


def reward_summary(run: StageRun, scores: dict[str, list[float]]) -> list[tuple[str, object]]:
    r = run.records
    return [
        ("held-out accuracy", _last(r, "eval/accuracy")),
        ("held-out mean margin (chosen - rejected)", _last(r, "eval/margin_mean")),
        ("held-out loss", _last(r, "eval/loss")),
        ("held-out examples", _last(r, "eval/examples")),
        *[(f"held-out {label} score mean (n={len(values)})", _mean(values))
          for label, values in scores.items()],
        ("last train accuracy", _last(r, "train/accuracy")),
        ("last train loss", _last(r, "train/loss")),
        ("optimizer steps", _steps(r)),
        ("epochs", _last(r, "train/epoch")),
        *_artifacts(run.path),
    ]


def _score_rows(records: list[dict]) -> list[tuple[str, object]]:
    """Iterations and objective/score first -> last: the rows PPO and critic-free runs share."""
    scored = [x for x in records if is_number(x.get("objective/score"))]
    start, end = (scored[0], scored[-1]) if scored else ({}, {})
    change = (end["objective/score"] - start["objective/score"]) if scored else None
    return [
        ("iterations", _steps(records)),
        (f"score at start (step {start.get('step')})", start.get("objective/score")),
        (f"score at end (step {end.get('step')})", end.get("objective/score")),
        ("score change", change),
    ]


def _policy_rows(records: list[dict]) -> list[tuple[str, object]]:
    """How the sampled responses changed: length and entropy, start -> end."""
    return [("response length at start / end", _pair(records, "response/length")),
            ("policy entropy at start / end", _pair(records, "policy/entropy"))]


def ppo_summary(run: StageRun) -> list[tuple[str, object]]:
    r = run.records
    kls = [x["objective/kl"] for x in r if is_number(x.get("objective/kl"))]
    return [
        *_score_rows(r),
        ("mean KL over the run (nats per sequence)", _mean(kls)),
        ("final KL", kls[-1] if kls else None),
        ("last KL coefficient", _last(r, "objective/kl_coef")),
        *_policy_rows(r),
        *_artifacts(run.path),
    ]


KL_MODES = {"reward": "KL penalty in the reward", "loss": "KL term in the loss",
            "none": "no KL penalty"}


def critic_free_method(config: dict) -> str | None:
    """The estimator as configured (algo.advantage, its aggregation, KL mode): the runs of
    this stage differ by these, so the summary names them rather than the stage alone."""
    algo = config.get("algo")
    if not isinstance(algo, dict) or algo.get("advantage") is None:
        return None
    parts = [str(algo["advantage"])]
    if algo.get("ratio") == "sequence":
        parts.append("sequence-level ratio")
    if algo.get("loss_aggregation") is not None:
        parts.append(f"{algo['loss_aggregation']} aggregation")
    if algo.get("kl_penalty") is not None:
        mode = str(algo["kl_penalty"])
        parts.append(KL_MODES.get(mode, f"kl_penalty={mode}"))
    if algo.get("dynamic_sampling"):
        parts.append("dynamic sampling")
    return ", ".join(parts)


def critic_free_summary(run: StageRun) -> list[tuple[str, object]]:
    r = run.records
    return [
        ("method", critic_free_method(read_config(run.path))),
        *_score_rows(r),
        ("final KL (nats per sequence)", _last(r, "objective/kl")),
        ("share of groups without signal at the end", _last(r, "group/zero_signal_fraction")),
        *_policy_rows(r),
        *_artifacts(run.path),
    ]


def _pair(records: list[dict], key: str) -> str | None:
    first, last = _first(records, key), _last(records, key)
    return None if first is None else f"{format_number(first)} → {format_number(last)}"


def sft_summary(run: StageRun) -> list[tuple[str, object]]:
    r = run.records
    eval_loss = _last(r, "eval/loss")
    perplexity = math.exp(eval_loss) if eval_loss is not None and eval_loss < 700 else None
    return [
        ("final eval loss", eval_loss),
        ("eval perplexity (exp of eval loss)", perplexity),
        ("final train loss", _last(r, "train/loss")),
        ("optimizer steps", _steps(r)),
        ("epochs", _last(r, "train/epoch")),
        *_artifacts(run.path),
    ]


def dpo_summary(run: StageRun) -> list[tuple[str, object]]:
    r, config = run.records, read_config(run.path)
    settings = config.get("dpo", {})
    return [
        ("loss", f"{settings.get('loss', 'dpo')} (beta {settings.get('beta')})"),
        ("held-out reward accuracy", f"{format_number(_first(r, 'eval/accuracy'))} → "
                                     f"{format_number(_last(r, 'eval/accuracy'))}"),
        ("held-out implicit reward margin", _last(r, "eval/margin_mean")),
        ("final eval loss", _last(r, "eval/loss")),
        ("optimizer steps", _steps(r)),
        *_artifacts(run.path),
    ]


def generic_summary(run: StageRun) -> list[tuple[str, object]]:
    return [("logged steps", _steps(run.records)), ("metric lines", len(run.records)),
            *_artifacts(run.path)]


def stage_summary(run: StageRun, scores: dict[str, list[float]]) -> list[tuple[str, object]]:
    """The summary rows of a run's stage (`scores`: a reward run's held-out scores)."""
    if run.stage == "reward":
        return reward_summary(run, scores)
    if run.stage == "ppo":
        return ppo_summary(run)
    if run.stage == "critic_free":
        return critic_free_summary(run)
    if run.stage == "sft":
        return sft_summary(run)
    if run.stage == "dpo":
        return dpo_summary(run)
    return generic_summary(run)


def headline(run: StageRun) -> str:
    """One line for the pipeline overview (already HTML)."""
    r = run.records
    if run.stage in ("reward", "dpo") and _last(r, "eval/accuracy") is not None:
        return f"held-out accuracy {format_number(_last(r, 'eval/accuracy'))}"
    if run.stage in SAMPLING_STAGES and _first(r, "objective/score") is not None:
        return (f"score {format_number(_first(r, 'objective/score'))} → "
                f"{format_number(_last(r, 'objective/score'))}")
    if _last(r, "eval/loss") is not None:
        return f"eval loss {format_number(_last(r, 'eval/loss'))}"
    steps = _steps(r)
    return f"{steps} steps" if steps is not None else "nothing logged yet"


def metric_keys(records: list[dict]) -> set[str]:
    """Every key logged with a numeric value (the step aside)."""
    return {k for r in records for k, v in r.items() if k != "step" and is_number(v)}


def final_metrics_table(records: list[dict]) -> str:
    """Every numeric metric's last value and the step it was logged at."""
    last: dict[str, tuple[object, object]] = {}
    for record in records:
        for key, value in record.items():
            if key != "step" and is_number(value):
                last[key] = (record.get("step"), value)
    if not last:
        return '<p class="muted">Nothing logged yet.</p>'
    rows = "".join(f'<tr><td><code>{escape(key)}</code></td><td class="num">'
                   f'{format_number(step)}</td><td class="num">{format_number(value)}</td></tr>'
                   for key, (step, value) in sorted(last.items()))
    return ('<table class="metrics"><thead><tr><th>metric</th><th>step</th><th>last value</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>")
