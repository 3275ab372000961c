"""The outputs of `benchmarks/learning.py`: the per-run summary (best gold gain, where the gold
peaks, the final proxy - gold gap), the markdown table and one PNG per method."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

# A run has over-optimised when its gold fell after its peak by more than this many SFT std
# while its proxy score rose above its value at the peak (the eval/past_the_peak idea, on the
# whole trajectory). 0.1 std is above the noise of 64 prompts with fixed sampling seeds.
DROP_IN_STD = 0.1


def summarise(points: list[dict]) -> dict:
    """One run's trajectory as gains over its first point (the SFT policy)."""
    start = points[0]
    gold_std = max(start["gold_std"], 1e-8)
    proxy_std = max(start["proxy_std"], 1e-8)
    peak = max(range(len(points)), key=lambda i: points[i]["gold"])
    final = points[-1]
    gold_gain = points[peak]["gold"] - start["gold"]
    final_gold = (final["gold"] - start["gold"]) / gold_std
    final_proxy = (final["proxy"] - start["proxy"]) / proxy_std
    drop = (points[peak]["gold"] - final["gold"]) / gold_std
    return {"best_gold_gain": gold_gain, "best_gold_gain_std": gold_gain / gold_std,
            "peak_kl": points[peak]["kl"], "peak_sqrt_kl": points[peak]["sqrt_kl"],
            "peak_index": peak, "evaluations": len(points),
            "final_kl": final["kl"], "final_gold_gain_std": final_gold,
            "final_proxy_gain_std": final_proxy, "final_gap_std": final_proxy - final_gold,
            "gold_drop_after_peak_std": drop,
            "overoptimised": bool(drop > DROP_IN_STD and final["proxy"] > points[peak]["proxy"])}


def grouped(runs: list[dict]) -> dict:
    """{(method, proxy size): [runs]} in a stable order."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run["method"], run["size"])].append(run)
    return dict(sorted(groups.items(), key=lambda item: (_method_order(item[0][0]), item[0][1])))


def _method_order(method: str) -> int:
    order = ("ppo", "rloo", "grpo", "reinforce_pp", "dpo", "best_of_n")
    return order.index(method) if method in order else len(order)


def _cell(values: list[float], digits: int) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: list[dict], best_of_n: dict, accuracy: dict) -> str:
    """Markdown: one row per (method, proxy size), mean ± std over seeds."""
    lines = ["| method | proxy pairs | proxy acc. vs gold | seeds | best gold gain (nats) | "
             "in SFT std | sqrt KL at gold peak | KL at gold peak | final KL | "
             "final proxy gain (std) | final gold gain (std) | final gap (std) | "
             "over-optimised runs |", "|" + "---|" * 13]
    for (method, size), group in grouped(runs).items():
        summaries = [run["summary"] for run in group]
        lines.append(_row(method, size, summaries, accuracy))
    for size, points in sorted(best_of_n.items()):
        lines.append(_row("best_of_n", size, [summarise(points)], accuracy))
    return "\n".join(lines)


def _row(method: str, size: int, summaries: list[dict], accuracy: dict) -> str:
    def cell(key: str, digits: int) -> str:
        return _cell([s[key] for s in summaries], digits)

    acc = accuracy.get(size, {}).get("accuracy_vs_gold", math.nan)
    flagged = sum(s["overoptimised"] for s in summaries)
    return (f"| {method} | {size} | {acc:.3f} | {len(summaries)} | {cell('best_gold_gain', 3)} | "
            f"{cell('best_gold_gain_std', 2)} | {cell('peak_sqrt_kl', 2)} | "
            f"{cell('peak_kl', 2)} | {cell('final_kl', 2)} | "
            f"{cell('final_proxy_gain_std', 2)} | {cell('final_gold_gain_std', 2)} | "
            f"{cell('final_gap_std', 2)} | {flagged}/{len(summaries)} |")


def _gains(points: list[dict], key: str) -> tuple[list[float], list[float]]:
    return ([p["sqrt_kl"] for p in points], [p[key] - points[0][key] for p in points])


def plot_method(method: str, runs: list[dict], best_of_n: dict, path: Path) -> None:
    """Gold (top) and proxy (bottom) gain over the SFT policy against sqrt(KL to SFT): one
    column per proxy size, each seed a thin line, their mean (per evaluation) thick,
    best-of-n with the same proxy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({run["size"] for run in runs})
    figure, axes = plt.subplots(2, len(sizes), figsize=(4.2 * len(sizes), 6.4), squeeze=False)
    for column, size in enumerate(sizes):
        group = [run for run in runs if run["size"] == size]
        for row, key in enumerate(("gold", "proxy")):
            axis = axes[row][column]
            for run in group:
                axis.plot(*_gains(run["points"], key), color="C0", alpha=0.35, linewidth=0.8)
            axis.plot(*_mean_curve(group, key), color="C0", linewidth=2.2, marker="o",
                      markersize=3, label=f"{method} (mean of {len(group)})")
            if size in best_of_n:
                largest = best_of_n[size][-1]["n"]
                axis.plot(*_gains(best_of_n[size], key), color="C3", linestyle="--",
                          marker="s", markersize=3, label=f"best-of-n (n = 1..{largest})")
            axis.axhline(0.0, color="grey", linewidth=0.6)
            axis.set_title(f"{key} gain, proxy on {size} pairs", fontsize=10)
            axis.set_xlabel("sqrt(KL to SFT) (sqrt nats)")
            axis.grid(alpha=0.3)
        axes[0][column].legend(fontsize=8)
    axes[0][0].set_ylabel("gold gain (nats of gold)")
    axes[1][0].set_ylabel("proxy gain (proxy units)")
    figure.suptitle(f"{method}: gold and proxy gain\nagainst KL to SFT", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _mean_curve(group: list[dict], key: str) -> tuple[list[float], list[float]]:
    """Mean over seeds at each evaluation (runs of a group share their evaluation steps)."""
    length = min(len(run["points"]) for run in group)
    xs = [statistics.mean(run["points"][i]["sqrt_kl"] for run in group) for i in range(length)]
    ys = [statistics.mean(run["points"][i][key] - run["points"][0][key] for run in group)
          for i in range(length)]
    return xs, ys


def all_finite(value) -> bool:
    """Every number in a nested structure of dicts and lists is finite."""
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(all_finite(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True
