"""How PPO iteration time scales with batch size and response length (should be near linear).

A real `rlhf train-ppo` run per point: a GPT-2-style policy and value model (random weights,
real GPT-2 tokenizer and 50k vocabulary; by default 4 layers x 256 wide so the sweep fits a
CPU, `--size small` for 124M GPT-2 small), a rule reward (no reward model: this measures the
PPO loop), real dolly prompts of at most 64 tokens, 4 PPO epochs x 1 minibatch, N new tokens
(random weights almost never emit EOS; the mean response length is printed). Each point: one warm-up iteration, then the median `time/iteration`
of the timed ones. Sweeps batch size at a fixed length and length at a fixed batch size,
prints both tables with seconds per generated token (flat = linear) and draws
`benchmarks/results/ppo_scaling.png`.

    .venv/bin/python benchmarks/ppo_scaling.py [--size small] [--iterations 2]

Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DOLLY = SHARED / "dolly-15k-prompts-oneill"
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"narrow": {"n_layer": 4, "n_embd": 256, "n_head": 4}, "small": {}}


def make_policy(folder: Path, size: str) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(SHARED / "gpt2-tokenizer")
    AutoModelForCausalLM.from_config(GPT2Config(**SIZES[size])).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def iteration_seconds(policy: Path, work: Path, batch: int, length: int,
                      iterations: int) -> tuple[float, float]:
    """Median seconds per timed iteration and the mean response length of a short run."""
    from rlhf.config import PPOConfig, load_config
    from rlhf.stages.ppo.train import train_ppo

    total = iterations + 1
    out = work / f"run-b{batch}-n{length}"
    cfg = load_config(PPOConfig, None, [
        f"run.output_dir={out}", "run.progress=false", "run.save_every=0",
        f"data.path={DOLLY}", "data.template=dolly", "data.max_prompt_tokens=64",
        f"data.max_samples={batch * total}", f"model.policy={policy}",
        "model.reward=rlhf.reward.rules:vivid_word_fraction", "ppo.score_normalization=none",
        f"generate.max_new_tokens={length}",
        "generate.temperature=0.7", "ppo.ppo_epochs=4", "ppo.num_minibatches=1",
        f"ppo.total_episodes={batch * total}", f"train.batch_size={batch}", "samples_every=0"])
    train_ppo(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()][1:]
    return (statistics.median(r["time/iteration"] for r in rows),
            statistics.mean(r["response/length"] for r in rows))


def plot(batch_rows, length_rows, fixed_length: int, fixed_batch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, rows, label, title in (
            (axes[0], batch_rows, "batch size (sequences)", f"{fixed_length} new tokens"),
            (axes[1], length_rows, "new tokens per response", f"batch {fixed_batch}")):
        xs = [x for x, _, _ in rows]
        ys = [seconds for _, seconds, _ in rows]
        axis.plot(xs, ys, "o-", label="measured")
        slope = ys[0] / xs[0]  # proportional to the smallest point: what linear would give
        axis.plot(xs, [slope * x for x in xs], "--", color="grey", label="linear from first")
        axis.set_xlabel(label)
        axis.set_ylabel("seconds per PPO iteration")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="narrow")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per point")
    parser.add_argument("--batch-sizes", default="4,8,16,32")
    parser.add_argument("--lengths", default="16,32,64,128")
    parser.add_argument("--fixed-batch", type=int, default=8)
    parser.add_argument("--fixed-length", type=int, default=32)
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="ppo-scaling-") as tmp:
        work = Path(tmp)
        policy = make_policy(work / "policy", args.size)
        measured: dict[tuple[int, int], tuple[float, float]] = {}  # the shared point once

        def point(batch: int, length: int) -> tuple[float, float]:
            if (batch, length) not in measured:
                measured[batch, length] = iteration_seconds(policy, work, batch, length,
                                                            args.iterations)
            return measured[batch, length]

        batch_rows = [(b, *point(b, args.fixed_length))
                      for b in map(int, args.batch_sizes.split(","))]
        length_rows = [(n, *point(args.fixed_batch, n)) for n in map(int, args.lengths.split(","))]
    path = RESULTS / f"ppo_scaling_{args.size}.png"
    plot(batch_rows, length_rows, args.fixed_length, args.fixed_batch, path)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); policy size "
          f"{args.size}; median of {args.iterations} iterations per point")
    for rows, name, fixed in ((batch_rows, "batch size", f"{args.fixed_length} new tokens"),
                              (length_rows, "new tokens", f"batch {args.fixed_batch}")):
        print(f"\n| {name} ({fixed}) | s / iteration | mean response length | "
              "ms per response token |\n|---|---|---|---|")
        for x, seconds, length in rows:
            tokens = (x * length) if name == "batch size" else (args.fixed_batch * length)
            print(f"| {x} | {seconds:.3f} | {length:.1f} | {1000 * seconds / tokens:.2f} |")
    print(f"\nplot: {path}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
