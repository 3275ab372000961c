"""The metrics of the tiny SFT, reward and PPO runs at a fixed seed: a refactor that claims no
change of behaviour must leave every value identical (timings aside).

    .venv/bin/python benchmarks/metrics_snapshot.py --out before.json            # old tree
    .venv/bin/python benchmarks/metrics_snapshot.py --out after.json --compare before.json

Each stage runs as a user would run it (`python -m rlhf.cli train-... --config
configs/<stage>/tiny.yaml`), in its own process, into a fresh directory. The snapshot holds
every line of metrics.jsonl without the `time/` and `throughput/` keys, and a hash of the
final weights. `--compare` prints the first difference of each stage and exits 1 if any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"sft": ("train-sft", "model"), "reward": ("train-reward", "model"),
          "ppo": ("train-ppo", "policy")}
TIMING = ("time/", "throughput/")


def run_stage(stage: str, folder: Path) -> dict:
    command, model = STAGES[stage]
    out = folder / stage
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, "-m", "rlhf.cli", command, "--config",
                    str(ROOT / "configs" / stage / "tiny.yaml"), f"run.output_dir={out}",
                    "run.progress=false"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    weights = (out / model / "model.safetensors").read_bytes()
    return {"metrics": [{k: v for k, v in line.items() if not k.startswith(TIMING)}
                        for line in lines],
            "weights_sha256": hashlib.sha256(weights).hexdigest()}


def first_difference(before: dict, after: dict) -> str | None:
    if len(before["metrics"]) != len(after["metrics"]):
        return f"{len(before['metrics'])} lines before, {len(after['metrics'])} after"
    for old, new in zip(before["metrics"], after["metrics"], strict=True):
        if old != new:
            keys = sorted(set(old) | set(new))
            changed = [k for k in keys if old.get(k) != new.get(k)]
            return f"step {old.get('step')}: " + ", ".join(
                f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
    if before["weights_sha256"] != after["weights_sha256"]:
        return "final weights differ"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, default=None, help="an earlier snapshot")
    parser.add_argument("--stages", default="sft,reward,ppo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        snapshot = {stage: run_stage(stage, Path(folder)) for stage in args.stages.split(",")}
    args.out.write_text(json.dumps(snapshot, indent=1))
    if args.compare is None:
        return
    before = json.loads(args.compare.read_text())
    failed = False
    for stage, after in snapshot.items():
        difference = first_difference(before[stage], after)
        lines = len(after["metrics"])
        print(f"{stage}: " + (f"DIFFERS: {difference}" if difference else
                              f"identical ({lines} metric lines, final weights equal)"))
        failed |= difference is not None
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
