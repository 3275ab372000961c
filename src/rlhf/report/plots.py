"""Matplotlib figures of a run: curves against the optimizer step and held-out score
histograms, as PNG files in the run directory or PNG bytes for report.html."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from rlhf.report.panels import SCORES_FILE, file_panels  # noqa: E402
from rlhf.report.run_files import read_metrics  # noqa: E402


def series(records: list[dict], key: str, x: str = "step", sqrt_x: bool = False
           ) -> tuple[list[float], list[float]]:
    """(x values, values) of one metric against the step or another metric of the same lines,
    skipping lines that do not have both (a negative x under sqrt, a KL estimate's noise
    around 0, counts as 0)."""
    points = [(r[x], r[key]) for r in records
              if r.get(key) is not None and r.get(x) is not None]
    xs = [max(p[0], 0.0) ** 0.5 if sqrt_x else p[0] for p in points]
    return xs, [p[1] for p in points]


def curves_figure(records: list[dict], keys: list[str] | tuple[str, ...], title: str, *,
                  x: str = "step", sqrt_x: bool = False, width: float = 6.0,
                  height: float = 3.6):
    """A figure with one line per metric key against the optimizer step (or the metric `x`,
    or its square root); None without data."""
    drawn = [(key, *series(records, key, x, sqrt_x)) for key in keys]
    drawn = [d for d in drawn if d[1]]
    if not drawn:
        return None
    figure, axes = plt.subplots(figsize=(width, height), dpi=100)
    for key, steps, values in drawn:
        axes.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3,
                  label=key)
    axes.set_xlabel("optimizer step" if x == "step" else f"sqrt({x})" if sqrt_x else x)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def plot_curves(records: list[dict], keys: list[str] | tuple[str, ...], title: str,
                path: Path, **axis) -> Path | None:
    """One line per metric key against the optimizer step (or `x=`, `sqrt_x=`: see
    `curves_figure`); None when no key has data."""
    figure = curves_figure(records, keys, title, **axis)
    if figure is None:
        return None
    figure.savefig(path)
    plt.close(figure)
    return path


def score_histogram_figure(scores: dict[str, list[float]]):
    """Overlaid histograms of held-out scores for chosen and rejected responses.

    All series share one set of bins: per-series bins over a narrow range (a well-separated
    reward model) draw bars too thin to see, and shared bins make the overlap comparable.
    """
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=100)
    drawn = {label: values for label, values in scores.items() if len(values)}
    if drawn:
        bins = np.histogram_bin_edges(np.concatenate([np.asarray(v, dtype=float)
                                                      for v in drawn.values()]), bins=40)
        for label, values in drawn.items():
            axes.hist(values, bins=bins, alpha=0.55, label=f"{label} (n={len(values)})")
        axes.legend()
    axes.set_xlabel("score (reward model; DPO: implicit reward)")
    axes.set_title("held-out scores")
    figure.tight_layout()
    return figure


def plot_score_histogram(scores: dict[str, list[float]], path: Path) -> Path:
    """Overlaid histograms of held-out scores for chosen and rejected responses."""
    figure = score_histogram_figure(scores)
    figure.savefig(path)
    plt.close(figure)
    return path


def figure_png(figure, dpi: int = 150) -> bytes:
    """The figure as PNG bytes (for embedding in HTML); closes the figure."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def plot_run(run_dir: str | Path, stage: str) -> list[Path]:
    """The PNG files of a stage's run (panels.STAGE_PANELS with a file, and a reward or DPO
    run's scores.png from eval_scores.json); the paths written."""
    run_dir = Path(run_dir)
    panels = file_panels(stage)
    if not panels:
        return []
    records = read_metrics(run_dir)
    written = [plot_curves(records, panel.keys, panel.png_title, run_dir / panel.file,
                           x=panel.x, sqrt_x=panel.sqrt_x) for panel in panels]
    scores_path = run_dir / "eval_scores.json"
    if stage in ("reward", "dpo") and scores_path.exists():
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
        written.append(plot_score_histogram(scores, run_dir / SCORES_FILE))
    return [path for path in written if path is not None]
