"""Bigger models on a GPU (issue 15): bf16 tiny runs, GPT-2-small PPO with and without LoRA, and
a ~1B-parameter policy with LoRA; tokens/s, peak GPU memory and model FLOPs utilisation.

    PYTHONPATH=src python benchmarks/gpu_scale.py --out DIR        # on a CUDA machine
    .venv/bin/python benchmarks/gpu_scale.py --quick --out /tmp/x   # smoke test on a CPU

Every model has random weights built from a config and the built-in 2,048-token tokenizer, so
nothing is downloaded. Each case runs `train-ppo` / `train-critic-free` in this process for a
few iterations (the first is a warm-up) at run.mixed_precision=auto (bf16 on a GPU that has
it). Per case: seconds per iteration (median after the warm-up), generated response tokens/s,
peak memory (torch.cuda.max_memory_allocated; on a CPU the process's peak RSS so far) and MFU.

MFU counts model FLOPs the usual way (Kaplan et al. 2020; PaLM's appendix B): 2 N per token
for every forward of an N-parameter model (generation, the policy/reference/value forwards,
the reward model is left out), and 6 N per token for a trained model's forward + backward,
over the peak dense bf16 rate of the GPU (--peak-tflops; 989 for an H100/H200 SXM). With LoRA
the backward skips the frozen weights' gradients (about 4 N instead of 6 N), so its MFU by
this convention overstates the work done a little; it is the convention users compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # GPT2Config keywords: (layers, width, heads)
    "gpt2-small": (12, 768, 12),
    "1b": (22, 2048, 16),  # 12 L d^2 = 1.11e9 in the blocks
    "quick": (2, 64, 4),
}


def policy_folder(folder: Path, size: str) -> Path:
    """A random-weight GPT-2-style causal LM of `size` with the built-in tokenizer."""
    from transformers import AutoModelForCausalLM, GPT2Config

    from rlhf.builtin_models import builtin_tokenizer

    if (folder / "config.json").is_file():
        return folder
    layers, width, heads = SIZES[size]
    tokenizer = builtin_tokenizer("builtin:tiny-gpt2")
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=width, n_layer=layers, n_head=heads,
                        n_positions=256, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def parameters(folder: Path) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


def peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB


def run_case(stage: str, out: Path, overrides: list[str]) -> list[dict]:
    """Train one stage in this process; its metrics.jsonl rows."""
    from rlhf.config import CriticFreeConfig, PPOConfig, load_config
    from rlhf.stages.critic_free.train import train_critic_free
    from rlhf.stages.ppo.train import train_ppo

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    schema, train, config = {
        "ppo": (PPOConfig, train_ppo, ROOT / "configs/ppo/tiny.yaml"),
        "critic_free": (CriticFreeConfig, train_critic_free,
                        ROOT / "configs/critic_free/grpo_tiny.yaml")}[stage]
    train(load_config(schema, config, [f"run.output_dir={out}", "run.progress=false",
                                       "run.save_every=0", "samples_every=0", *overrides]))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def summarise(rows: list[dict], *, generate: int, rollout: int, update: int, batch: int,
              epochs: int, peak_tflops: float) -> dict:
    """Median seconds per iteration after the warm-up, response tokens/s and MFU; `generate`,
    `rollout` and `update` are the parameters run per token in sampling, in the rollout's
    forwards and in the update's forward + backward passes."""
    timed = rows[1:] or rows
    seconds = statistics.median(r["time/iteration"] for r in timed)
    tokens = statistics.median(r["throughput/tokens_per_s"] * r["time/iteration"]
                               for r in timed)  # prompt + response tokens of the batch
    responses = statistics.median(r["response/length"] for r in timed) * batch
    flops = 2 * generate * responses + 2 * rollout * tokens + 6 * update * tokens * epochs
    return {"s_per_iteration": round(seconds, 3),
            "response_tokens_per_s": round(responses / seconds, 1),
            "model_tflops_per_iteration": round(flops / 1e12, 2),
            "mfu": round(flops / seconds / (peak_tflops * 1e12), 4) if peak_tflops else None,
            "kl_iteration_1": rows[0].get("objective/kl")}


def cases(args, work: Path) -> list[tuple[str, str, list[str], dict]]:
    """(name, stage, overrides, model sizes for MFU) of every case."""
    small = str(policy_folder(work / "gpt2-small", "quick" if args.quick else "gpt2-small"))
    big = str(policy_folder(work / "1b", "quick" if args.quick else "1b"))
    n_small, n_big = parameters(Path(small)), parameters(Path(big))
    length = ["generate.max_new_tokens=32", "generate.min_new_tokens=32"]
    shape = ["train.batch_size=8", "ppo.total_episodes=24", "ppo.num_minibatches=1",
             "ppo.score_normalization=none", *length]
    # Parameters per token: sampling runs the policy; the rollout runs policy, reference and
    # value forwards (a shared head reads values in a second no-grad pass); the update runs
    # policy and value forward + backward (one backbone when shared).
    return [
        ("ppo tiny config", "ppo", ["ppo.total_episodes=96"], None),
        ("grpo tiny config", "critic_free", ["algo.total_prompts=48"], None),
        ("ppo gpt2-small full", "ppo", [f"model.policy={small}", *shape],
         {"generate": n_small, "rollout": 3 * n_small, "update": 2 * n_small}),
        ("ppo gpt2-small full fp32", "ppo", [f"model.policy={small}", *shape,
                                             "run.mixed_precision=no"],
         {"generate": n_small, "rollout": 3 * n_small, "update": 2 * n_small}),
        ("ppo gpt2-small lora r=16", "ppo", [f"model.policy={small}", *shape, "lora.r=16",
                                             "lora.merge=false"],
         {"generate": n_small, "rollout": 3 * n_small, "update": 2 * n_small}),
        ("ppo 1B lora r=16 + shared value head", "ppo", [
            f"model.policy={big}", *shape, "lora.r=16", "lora.merge=false", "model.value=shared",
            "train.gradient_checkpointing=true"],
         {"generate": n_big, "rollout": 3 * n_big, "update": n_big}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_scale"))
    parser.add_argument("--quick", action="store_true", help="tiny stand-ins (CPU smoke test)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    args = parser.parse_args()
    import transformers

    transformers.utils.logging.disable_progress_bar()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rlhf-gpu-scale-"))  # fresh: runs refuse old checkpoints
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    results = {"device": device, "torch": torch.__version__, "cases": {}}
    for name, stage, overrides, sizes in cases(args, work):
        started = time.time()
        rows = run_case(stage, work / name.replace(" ", "_"), overrides)
        result = {"peak_memory_gb": round(peak_memory_gb(), 2),
                  "wall_s": round(time.time() - started, 1)}
        if sizes:
            result |= summarise(rows, **sizes, batch=8, epochs=4,
                                peak_tflops=args.peak_tflops if device != "cpu" else 0)
        else:
            result |= {"s_per_iteration": statistics.median(r["time/iteration"]
                                                            for r in rows[1:] or rows),
                       "kl_iteration_1": rows[0].get("objective/kl")}
        results["cases"][name] = result
        (args.out / "gpu_scale.json").write_text(json.dumps(results, indent=2))
        print(name, json.dumps(result), flush=True)
    print(json.dumps(results, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
