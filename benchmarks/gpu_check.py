"""Mixed precision on a real GPU: the checks of the mixed-precision issue that a CPU cannot make.

1. KL at the first PPO iteration (policy == reference) is exactly 0 under bf16 (`auto` picks
   bf16 on a GPU), for the tiny config and for a GPT-2-small-sized policy; beside it, the KL
   the old set-up measured (policy under bf16 autocast, reference in float32) on the same
   samples, and the time per iteration in bf16 and float32.
2. fp16 with loss scaling: runs of every stage whose GradScaler starts at 2^40, so the first
   steps overflow. Each must finish, count the overflows in train/overflow_steps and end with
   finite weights (before: the first overflow stopped the run).
3. Building models leaves the CUDA generator as the run seeded it (before: torch.manual_seed
   inside fork_rng(devices=[]) reseeded it, to the same state on every process).

    PYTHONPATH=src python benchmarks/gpu_check.py --out DIR     # all three checks, on CUDA
    .venv/bin/python benchmarks/gpu_check.py --checks kl --batch 8    # check 1 on a CPU

Checks 2 and 3 need CUDA. Writes DIR/gpu_check.json with every number, and prints it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ppo": ROOT / "configs/ppo/tiny.yaml", "reward": ROOT / "configs/reward/tiny.yaml",
        "sft": ROOT / "configs/sft/tiny.yaml"}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def ppo(out: Path, *overrides: str) -> list[dict]:
    from rlhf.config import PPOConfig, load_config
    from rlhf.stages.ppo.train import train_ppo

    train_ppo(load_config(PPOConfig, TINY["ppo"], [f"run.output_dir={out}",
                                                   "run.progress=false", *overrides]))
    return records(out)


def gpt2_small_policy(folder: Path) -> Path:
    """A GPT-2-small-sized causal LM (12 x 768, random weights) with the built-in tokenizer."""
    from transformers import AutoModelForCausalLM, GPT2Config

    from rlhf.builtin_models import builtin_tokenizer

    tokenizer = builtin_tokenizer("builtin:tiny-gpt2")
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=768, n_layer=12, n_head=12,
                        n_positions=1024, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def old_setup_kl(policy_path: str, precision: str, batch: int = 32) -> list[float]:
    """Per-sequence KL at iteration 1 the way PPO measured it before: the policy prepared by
    accelerate (autocast), the reference a float32 copy outside it."""
    from rlhf.config import RunConfig
    from rlhf.data.batching import left_pad
    from rlhf.data.prompts import load_prompts
    from rlhf.engine.run import Run
    from rlhf.models import frozen_copy, load_policy
    from rlhf.reward.scorers import load_function_scorer
    from rlhf.rl.rollout import collect_rollout

    run = Run(RunConfig(output_dir="/tmp/unused-run", mixed_precision=precision), None,
              stage="check")
    policy, tokenizer = load_policy(policy_path)
    reference = frozen_copy(policy).to(run.device)
    policy = run.accelerator.prepare(policy)
    _, ids = load_prompts("builtin:descriptiveness", template="prompt", tokenizer=tokenizer,
                          max_prompt_tokens=32, max_samples=batch)
    query_ids, query_mask = left_pad(ids, tokenizer.pad_token_id)
    rollout, _ = collect_rollout(
        policy, reference, None, load_function_scorer("rlhf.reward.rules:vivid_word_fraction"),
        query_ids=query_ids.to(run.device), query_mask=query_mask.to(run.device),
        score_prompts=[""] * len(ids), tokenizer=tokenizer, max_new_tokens=32, temperature=1.0,
        stop_token_ids=[tokenizer.eos_token_id], row_seeds=list(range(len(ids))))
    kl = ((rollout.logprobs - rollout.ref_logprobs) * rollout.response_mask).sum(1)
    return kl.tolist()


def kl_checks(work: Path, batch: int) -> dict:
    results = {}
    tiny = ppo(work / "tiny-bf16", "ppo.total_episodes=64", "run.mixed_precision=bf16")
    results["tiny_bf16"] = {"kl_step1": tiny[0]["objective/kl"],
                            "kl_step2": tiny[1]["objective/kl"]}
    small = str(gpt2_small_policy(work / "gpt2-small"))
    for precision in ("bf16", "no"):
        rows = ppo(work / f"small-{precision}", f"model.policy={small}",
                   f"run.mixed_precision={precision}", f"train.batch_size={batch}",
                   f"ppo.total_episodes={3 * batch}", "ppo.num_minibatches=1",
                   "generate.max_new_tokens=32", "train.learning_rate=1e-5",
                   f"ppo.normalization_samples={batch}")
        results[f"gpt2_small_{precision}"] = {
            "kl_step1": rows[0]["objective/kl"], "kl_step3": rows[2]["objective/kl"],
            "approx_kl_step1": rows[0]["policy/approx_kl"],
            "clipfrac_step1": rows[0]["policy/clipfrac"],
            "iteration_s_step3": rows[2]["time/iteration"],
            "generate_s_step3": rows[2]["time/generate"], "update_s_step3": rows[2]["time/update"]}
    old = old_setup_kl(small, "bf16", batch)
    results["gpt2_small_old_setup_bf16"] = {"kl_min": min(old), "kl_max": max(old)}
    return results


def fp16_checks(work: Path) -> dict:
    """Every stage under fp16 with a GradScaler that starts at 2^40: the first steps overflow."""
    import accelerate
    from accelerate.utils import GradScalerKwargs

    import rlhf.engine.run

    rlhf.engine.run.Accelerator = functools.partial(
        accelerate.Accelerator, kwargs_handlers=[GradScalerKwargs(init_scale=2.0**40)])
    from rlhf.config import RewardConfig, SFTConfig, load_config
    from rlhf.stages.reward import train_reward
    from rlhf.stages.sft import train_sft

    results = {}
    runs = {
        "ppo": lambda out: ppo(out, "run.mixed_precision=fp16", "ppo.total_episodes=160"),
        "reward": lambda out: (train_reward(load_config(RewardConfig, TINY["reward"], [
            f"run.output_dir={out}", "run.progress=false", "run.mixed_precision=fp16",
            "train.max_steps=40", "data.max_samples=800"])), records(out))[1],
        "sft": lambda out: (train_sft(load_config(SFTConfig, TINY["sft"], [
            f"run.output_dir={out}", "run.progress=false", "run.mixed_precision=fp16",
            "train.max_steps=40", "data.max_samples=800"])), records(out))[1],
    }
    for stage, launch in runs.items():
        try:
            rows = [r for r in launch(work / f"fp16-{stage}") if "train/overflow_steps" in r]
            final = work / f"fp16-{stage}" / ("policy" if stage == "ppo" else "model")
            from safetensors.torch import load_file

            finite = all(bool(torch.isfinite(t).all())
                         for t in load_file(final / "model.safetensors").values())
            results[stage] = {"finished": True, "steps": rows[-1]["step"],
                              "overflow_steps": rows[-1]["train/overflow_steps"],
                              "skipped_batches": rows[-1]["train/skipped_batches"],
                              "weights_finite": finite}
        except Exception as error:  # report it and go on: this is a measurement
            results[stage] = {"finished": False, "error": f"{type(error).__name__}: {error}"}
    rlhf.engine.run.Accelerator = accelerate.Accelerator
    return results


def cuda_rng_check(work: Path) -> dict:
    """The CUDA generator after the run seeded it, and again after building every model."""
    from rlhf.config import RunConfig
    from rlhf.engine.run import Run
    from rlhf.models import load_policy, load_reward_model
    from rlhf.value_models import value_model_from_policy

    Run(RunConfig(output_dir=str(work / "rng"), seed=5), None, stage="check")
    seeded = torch.cuda.get_rng_state()
    policy, _ = load_policy("builtin:tiny-gpt2", seed=0)
    load_reward_model("builtin:tiny-roberta", seed=0)
    value_model_from_policy(policy, seed=0)
    return {"cuda_rng_unchanged_by_model_building": bool(torch.equal(
        seeded, torch.cuda.get_rng_state()))}


def cpu_name() -> str:
    """The CPU's model name and whether it multiplies bf16 in hardware (AMX / AVX512-BF16)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                 if line.startswith("model name")), platform.processor() or "unknown CPU")
    fast = [flag for flag in ("amx_bf16", "avx512_bf16") if f" {flag}" in info]
    return f"{name} ({', '.join(fast) or 'no bf16 matrix units'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--checks", default="kl,fp16,rng", help="comma-separated: kl,fp16,rng")
    parser.add_argument("--batch", type=int, default=32, help="PPO batch of check 1")
    args = parser.parse_args()
    checks = args.checks.split(",")
    if not torch.cuda.is_available() and set(checks) - {"kl"}:
        sys.exit("the fp16 and rng checks need CUDA; on a CPU run --checks kl")
    import accelerate
    import transformers

    transformers.utils.logging.disable_progress_bar()  # per-file load/save bars are noise
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rlhf-gpu-check-"))  # fresh: runs refuse old checkpoints
    started = time.time()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name()
    results = {"device": device, "torch": torch.__version__,
               "transformers": transformers.__version__, "accelerate": accelerate.__version__,
               "python": platform.python_version(),
               "threads": torch.get_num_threads()}
    runs = {"kl": lambda folder: kl_checks(folder, args.batch), "fp16": fp16_checks,
            "rng": cuda_rng_check}
    for name in checks:
        step = time.time()
        results[name] = runs[name](work / name)
        results[f"{name}_seconds"] = round(time.time() - step, 1)
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    results["seconds"] = round(time.time() - started, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
