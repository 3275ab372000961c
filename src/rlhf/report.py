"""Plots of a run, drawn from its metrics.jsonl (PNG files in the run directory)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every line of a run's metrics.jsonl, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping lines that do not have it."""
    points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(records: list[dict], keys: list[str], title: str, path: Path) -> Path | None:
    """One line per metric key against the optimizer step; None when no key has data."""
    drawn = [(key, *series(records, key)) for key in keys]
    drawn = [d for d in drawn if d[1]]
    if not drawn:
        return None
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    for key, steps, values in drawn:
        axes.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3,
                  label=key)
    axes.set_xlabel("optimizer step")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_score_histogram(scores: dict[str, list[float]], path: Path) -> Path:
    """Overlaid histograms of held-out scores for chosen and rejected responses."""
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, values in scores.items():
        axes.hist(values, bins=30, alpha=0.55, label=f"{label} (n={len(values)})")
    axes.set_xlabel("reward-model score")
    axes.set_title("held-out scores")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_reward_run(run_dir: str | Path) -> list[Path]:
    """loss.png, accuracy.png and scores.png for a reward-model run."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    written = [
        plot_curves(records, ["train/loss", "eval/loss"], "reward-model loss",
                    run_dir / "loss.png"),
        plot_curves(records, ["train/accuracy", "eval/accuracy"], "preference accuracy",
                    run_dir / "accuracy.png"),
    ]
    scores_path = run_dir / "eval_scores.json"
    if scores_path.exists():
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
        written.append(plot_score_histogram(scores, run_dir / "scores.png"))
    return [path for path in written if path is not None]


PPO_PANELS = [
    ("score.png", ["objective/score", "objective/rlhf_reward"], "reward-model score"),
    ("kl.png", ["objective/kl"], "KL to the reference (nats per sequence)"),
    ("kl_coef.png", ["objective/kl_coef"], "KL coefficient beta"),
    ("entropy.png", ["policy/entropy"], "policy entropy (nats per token)"),
    ("length.png", ["response/length"], "response length (tokens)"),
]


def plot_ppo_run(run_dir: str | Path) -> list[Path]:
    """score.png, kl.png, kl_coef.png, entropy.png and length.png for a PPO run."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    written = [plot_curves(records, keys, title, run_dir / name)
               for name, keys, title in PPO_PANELS]
    return [path for path in written if path is not None]
