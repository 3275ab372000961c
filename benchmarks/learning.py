"""Gold-reward benchmark (issue 17, after Gao et al. 2022, "Scaling Laws for Reward Model
Overoptimization"): does optimising a learned proxy reward improve the true (gold) reward, and
how far in KL before it stops?

1. SFT policy on the synthetic descriptiveness task (the demo's stage and data).
2. Pairs sampled from it and labelled by the gold reward through Bradley-Terry (`label-pairs`);
   proxy reward models (tiny RoBERTa, `train-reward`) on the first N pairs for several N, each
   one's held-out accuracy against the gold order.
3. PPO, RLOO, GRPO, REINFORCE++ optimise a proxy with `eval.reward` = the gold (held-out gold,
   proxy and KL to SFT every few iterations); DPO trains on the proxy's N pairs and is evaluated
   at its checkpoints; several seeds.
4. Best-of-n with the proxy on the held-out prompts, n = 1, 2, 4, ..., 64 (one draw of 64).
5. benchmarks/results/learning/: learning_points.json, learning_table.md, <method>.png.

    .venv/bin/python benchmarks/learning.py            # 6 min on 2 quiet CPU cores (LEARNING.md)
    .venv/bin/python benchmarks/learning.py --quick    # 1-2 minutes: one proxy, PPO, best-of-n

The default grid is every method on every proxy, 3 seeds each: 45 runs, 6 minutes on 2 quiet
cores, up to about 3 times that on a busy machine. `--grid reduced` (every method on the
largest proxy, PPO on every proxy) or `--grid middle` (the same with the middle proxy) runs
21 of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning_report as report  # noqa: E402
import learning_stages as stages  # noqa: E402
from learning_runs import RL_METHODS, run_pool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = {"sft_examples": 2000, "sft_epochs": 2, "sizes": [250, 1000, 4000], "test_pairs": 400,
        "proxy_epochs": 1, "seeds": 3, "iterations": 40, "eval_every": 2, "best_of": 64,
        "dpo_epochs": 1, "dpo_save_every": 25}
QUICK = {"sft_examples": 400, "sft_epochs": 1, "sizes": [250], "test_pairs": 64,
         "proxy_epochs": 1, "seeds": 1, "iterations": 4, "eval_every": 2, "best_of": 8,
         "dpo_epochs": 0, "dpo_save_every": 0}
LEARNING_RATE = 1.0e-3  # demo_configs/ppo.yaml's, for every RL method
KL_COEF = 0.02  # small and fixed: the policy must move far enough for the gold to peak
BT_TEMPERATURE = 0.1  # label noise of `rlhf label-pairs` (docs/gold.md: 10-20 % flips)


def settings(args) -> dict:
    """The sizes of this run: FULL or QUICK, with the command line's changes."""
    chosen = dict(QUICK if args.quick else FULL)
    for key in ("seeds", "iterations", "sizes"):
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    chosen["grid"] = "quick" if args.quick else args.grid
    return chosen


def grid(cfg: dict) -> list[tuple[str, int]]:
    """(method, proxy size) pairs to run. 'reduced': every method on the largest proxy (the
    most accurate one), PPO on every proxy; 'middle': the same with the middle proxy; 'full':
    every method on every proxy; 'quick': PPO on the one proxy."""
    sizes = sorted(cfg["sizes"])
    if cfg["grid"] == "quick":
        return [("ppo", size) for size in sizes]
    methods = [*RL_METHODS, "dpo"]
    if cfg["grid"] == "full":
        return [(method, size) for method in methods for size in sizes]
    chosen = sizes[len(sizes) // 2] if cfg["grid"] == "middle" else sizes[-1]
    return [(m, chosen) for m in methods] + [("ppo", s) for s in sizes if s != chosen]


def run_tasks(cfg: dict, work: Path, sft: Path) -> list[dict]:
    """One task per (method, proxy size, seed); DPO (the longest) first."""
    tasks = []
    for method, size in sorted(grid(cfg), key=lambda pair: pair[0] != "dpo"):
        for seed in range(cfg["seeds"]):
            name = f"{method}_{size}_seed{seed}"
            spec = {"kind": "dpo" if method == "dpo" else "rl", "name": name,
                    "method": method, "size": size, "seed": seed, "sft": str(sft),
                    "proxy": str(work / f"proxy_{size}" / "model"),
                    "folder": str(work / "runs" / name)}
            if method == "dpo":
                spec |= {"pairs": str(stages.pairs_file(work, size)),
                         "epochs": cfg["dpo_epochs"], "save_every": cfg["dpo_save_every"]}
            else:
                spec |= {"iterations": cfg["iterations"], "eval_every": cfg["eval_every"],
                         "learning_rate": LEARNING_RATE, "kl_coef": KL_COEF}
            tasks.append(spec)
    return tasks


def prepare(cfg: dict, work: Path, jobs: int) -> tuple[Path, dict]:
    """Stages 1-2 and the best-of-n draw: SFT, gold pairs, proxies (in the pool, beside the
    best-of-n sampling), then each proxy's accuracy against the gold."""
    timings = {}
    start = time.time()
    sft = stages.train_sft_policy(work, examples=cfg["sft_examples"], epochs=cfg["sft_epochs"])
    timings["sft_s"] = time.time() - start
    counts = stages.label_gold_pairs(work, sft, train_pairs=max(cfg["sizes"]),
                                     test_pairs=cfg["test_pairs"], bt_temperature=BT_TEMPERATURE)
    timings["labels_s"] = time.time() - start - timings["sft_s"]
    for size in cfg["sizes"]:
        stages.pairs_file(work, size)
    tasks = [{"kind": "best_of_n", "work": str(work), "sft": str(sft), "best_of": cfg["best_of"]}]
    tasks += [{"kind": "proxy", "name": f"proxy_{size}", "work": str(work), "size": size,
               "epochs": cfg["proxy_epochs"]} for size in sorted(cfg["sizes"], reverse=True)]
    done = run_pool(tasks, jobs)
    timings["proxies_s"] = time.time() - start - timings["sft_s"] - timings["labels_s"]
    proxies = {task["size"]: {"train_reward": task["metrics"],
                              **stages.gold_accuracy(work, task["size"])}
               for task in done if task["kind"] == "proxy"}
    for size, proxy in sorted(proxies.items()):
        print(f"[learning] proxy on {size} pairs: accuracy vs gold "
              f"{proxy['accuracy_vs_gold']:.3f}, vs labels {proxy['accuracy_vs_label']:.3f}",
              flush=True)
    return sft, {"labels": counts, "proxies": proxies, "timings": timings}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def write_outputs(out: Path, cfg: dict, runs: list[dict], best_of_n: dict, prepared: dict,
                  wall: float) -> None:
    """learning_points.json, learning_table.md and one PNG per method."""
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        run["summary"] = report.summarise(run["points"])
    accuracy = prepared["proxies"]
    text = report.table(runs, best_of_n, accuracy)
    header = (f"Wall time {wall / 60:.1f} min on {os.cpu_count()} x {cpu_name()}; grid "
              f"{cfg['grid']}; {cfg['seeds']} seed(s); {cfg['iterations']} RL iterations of "
              f"32 responses, eval every {cfg['eval_every']} on {stages.EVAL_PROMPTS} held-out "
              f"prompts; KL coefficient {KL_COEF}, learning rate {LEARNING_RATE}.\n\n")
    (out / "learning_table.md").write_text(header + text + "\n")
    methods = sorted({run["method"] for run in runs})
    for method in methods:
        report.plot_method(method, [r for r in runs if r["method"] == method], best_of_n,
                           out / f"{method}.png")
    points = {"settings": cfg, "cpu": cpu_name(), "wall_s": wall, **prepared,
              "best_of_n": {str(k): v for k, v in best_of_n.items()},
              "runs": [{k: v for k, v in run.items() if k not in ("sft", "proxy", "folder",
                                                                   "pairs", "work")}
                       for run in runs]}
    (out / "learning_points.json").write_text(json.dumps(points, indent=1))
    print(header + text, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one proxy, one seed, PPO and "
                        "best-of-n, a few iterations: 1-2 minutes")
    parser.add_argument("--grid", choices=("full", "reduced", "middle"), default="full",
                        help="full: every method on every proxy; reduced: every method on the "
                        "largest proxy, PPO on every proxy; middle: the same on the middle proxy")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/learning"))
    parser.add_argument("--work", help="keep the models and run folders here (default: a "
                        "temporary folder, deleted at the end)")
    args = parser.parse_args()
    cfg = settings(args)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="rlhf-learning-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        sft, prepared = prepare(cfg, work, args.jobs)
        best_of_n = {size: stages.best_of_n_points(work, size, cfg["best_of"])
                     for size in cfg["sizes"]}
        runs_start = time.time()
        runs = run_pool(run_tasks(cfg, work, sft), args.jobs)
        prepared["timings"]["runs_s"] = time.time() - runs_start
        prepared["timings"]["total_s"] = time.time() - start
        write_outputs(Path(args.out), cfg, runs, best_of_n, prepared, time.time() - start)


if __name__ == "__main__":
    main()
