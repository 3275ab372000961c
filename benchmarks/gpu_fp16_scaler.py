"""Diagnostic: does an fp16 run have a GradScaler, at which scale, and do its first steps
overflow when the scale starts at 2^40? One tiny PPO run; prints the scaler's scale after each
optimizer step and the run's train/overflow_steps.

    PYTHONPATH=src python3 benchmarks/gpu_fp16_scaler.py   # on a CUDA machine
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from pathlib import Path

import accelerate
from accelerate.utils import GradScalerKwargs

import rlhf.engine.optim
import rlhf.engine.run

ROOT = Path(__file__).resolve().parents[1]
scales = []
original_step = rlhf.engine.optim.optimizer_step


def recording_step(optimizer, accelerator, *args, **kwargs):
    scaler = getattr(accelerator, "scaler", None)
    outcome = original_step(optimizer, accelerator, *args, **kwargs)
    scales.append({"scaler": type(scaler).__name__,
                   "scale": None if scaler is None else float(scaler.get_scale()),
                   "outcome": outcome[0]})
    return outcome


def main() -> None:
    from rlhf.config import PPOConfig, load_config

    init = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0**40
    rlhf.engine.run.Accelerator = functools.partial(
        accelerate.Accelerator, kwargs_handlers=[GradScalerKwargs(init_scale=init)])
    import rlhf.stages.ppo.train as train

    for module in list(sys.modules.values()):  # every module that imported optimizer_step
        if getattr(module, "optimizer_step", None) is original_step:
            module.optimizer_step = recording_step

    out = Path(tempfile.mkdtemp()) / "run"
    train.train_ppo(load_config(PPOConfig, ROOT / "configs/ppo/tiny.yaml", [
        f"run.output_dir={out}", "run.progress=false",
        f"run.mixed_precision={sys.argv[2] if len(sys.argv) > 2 else 'fp16'}",
        "ppo.total_episodes=64"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    print(json.dumps({"steps": scales, "overflow_steps": [r.get("train/overflow_steps")
                                                          for r in rows]}))


if __name__ == "__main__":
    main()
