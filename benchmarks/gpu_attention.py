"""The attention kernel inside a real bf16 PPO loop on a GPU, where every iteration brings new
sequence shapes: `train-ppo` with a GPT-2-small-sized policy (random weights, built-in
tokenizer, tiny config's data), batch 32, 32 new tokens, 4 PPO epochs, for SDPA as torch picks
it, SDPA with cuDNN's attention turned off, and eager attention; in bf16 and float32.
Median seconds per phase over iterations 2-6.

    PYTHONPATH=src python3 benchmarks/gpu_attention.py --out DIR   # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import gpt2_small_policy, ppo  # noqa: E402

SETTINGS = {  # name: (model.attention, cuDNN SDPA allowed)
    "sdpa": ("sdpa", True),
    "sdpa without cuDNN": ("sdpa", False),
    "eager": ("eager", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_attention"))
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rlhf-gpu-attention-"))
    small = str(gpt2_small_policy(work / "gpt2-small"))
    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "cases": {}}
    for precision in ("bf16", "no"):
        for name, (attention, cudnn) in SETTINGS.items():
            if torch.cuda.is_available():
                torch.backends.cuda.enable_cudnn_sdp(cudnn)
            rows = ppo(work / f"{precision}-{name.replace(' ', '-')}", f"model.policy={small}",
                       f"run.mixed_precision={precision}", f"model.attention={attention}",
                       f"train.batch_size={args.batch}", f"ppo.total_episodes={6 * args.batch}",
                       "ppo.num_minibatches=1", "generate.max_new_tokens=32",
                       "train.learning_rate=1e-5", f"ppo.normalization_samples={args.batch}",
                       "run.save_every=0")
            case = {key: round(statistics.median(r[key] for r in rows[1:]), 4)
                    for key in ("time/iteration", "time/generate", "time/forward",
                                "time/update")}
            case["kl_iteration_1"] = rows[0]["objective/kl"]
            results["cases"][f"{precision} {name}"] = case
            print(f"{precision} {name}", json.dumps(case), flush=True)
            (args.out / "gpu_attention.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
