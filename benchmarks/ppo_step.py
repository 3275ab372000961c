"""Time per phase of one PPO iteration at GPT-2-small size, and the loop's overhead ratio.

A 124M GPT-2 policy (random weights, real GPT-2 tokenizer), a value model of the same size
and a 125M RoBERTa reward model (random weights, real roberta-base tokenizer) run `rlhf
train-ppo` on real dolly prompts: batch 8, exactly N new tokens, 4 PPO epochs x 1 minibatch.
The per-phase times come from the run's own metrics.jsonl (median over the timed iterations,
after one warm-up iteration). Then the same model calls are timed alone with the same shapes:
generation, the policy/reference/value forwards, the reward forward, and the PPO epochs'
forward + backward + optimizer step. Overhead ratio = iteration time / sum of those.

    .venv/bin/python benchmarks/ppo_step.py [--new-tokens 32] [--iterations 4]

Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DOLLY = SHARED / "dolly-15k-prompts-oneill"


def make_models(folder: Path) -> tuple[Path, Path]:
    """Random-weight GPT-2-small policy and RoBERTa-base reward model folders."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GPT2Config,
        RobertaConfig,
    )

    torch.manual_seed(0)
    gpt2 = AutoTokenizer.from_pretrained(SHARED / "gpt2-tokenizer")
    AutoModelForCausalLM.from_config(GPT2Config()).save_pretrained(folder / "policy")
    gpt2.save_pretrained(folder / "policy")
    roberta = AutoTokenizer.from_pretrained(SHARED / "roberta-base-tokenizer")
    roberta.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                                "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                                "mask_token": "<mask>"})
    config = RobertaConfig(vocab_size=len(roberta), max_position_embeddings=514,
                           type_vocab_size=1, num_labels=1, pad_token_id=roberta.pad_token_id)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder / "reward")
    roberta.save_pretrained(folder / "reward")
    return folder / "policy", folder / "reward"


def run_training(folder: Path, policy: Path, reward: Path, args,
                 *overrides: str) -> dict[str, float]:
    """Median per-phase seconds of the timed iterations of a real train-ppo run (one warm-up
    iteration first); `overrides` are extra `key=value` settings."""
    from rlhf.config import PPOConfig, load_config
    from rlhf.stages.ppo.train import train_ppo

    iterations = args.iterations + 1
    cfg = load_config(PPOConfig, None, [
        f"run.output_dir={folder / 'run'}", "run.progress=false", "run.save_every=0",
        f"data.path={DOLLY}", "data.template=dolly", "data.max_prompt_tokens=64",
        f"data.max_samples={8 * iterations}", f"model.policy={policy}", f"model.reward={reward}",
        "model.reward_template=pair", f"generate.max_new_tokens={args.new_tokens}",
        "generate.temperature=0.7", "ppo.ppo_epochs=4", "ppo.num_minibatches=1",
        f"ppo.total_episodes={8 * iterations}", "train.batch_size=8", "samples_every=0",
        *overrides])
    train_ppo(cfg)
    rows = [json.loads(line) for line in (folder / "run" / "metrics.jsonl").open()][1:]
    keys = [k for k in rows[0] if k.startswith("time/")] + ["response/length"]
    return {key: statistics.median(r[key] for r in rows) for key in keys}


def ppo_epoch(policy, value, optimizer, query_ids, query_mask, response, mask) -> None:
    """The model work of one PPO epoch with one minibatch: policy (with the entropy metric)
    and value forward, backward through both, one optimizer step."""
    from rlhf.rl.forward import response_logprobs, response_values

    logprobs, _ = response_logprobs(policy, query_ids, query_mask, response, mask, 0.7,
                                    with_entropy=True)
    values = response_values(value, query_ids, query_mask, response, mask)
    (logprobs.mean() + values.mean()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def time_calls_alone(policy_path: Path, reward_path: Path, args, repeats: int = 3) -> dict:
    """The same model calls with the same shapes, each timed on its own (median of repeats)."""
    import torch

    from rlhf.algo.masking import response_mask_after_stop
    from rlhf.data.batching import left_pad
    from rlhf.data.prompts import load_prompts
    from rlhf.engine.optim import adamw_with_schedule
    from rlhf.models import frozen_copy, load_policy
    from rlhf.reward.scorers import RewardModelScorer
    from rlhf.rl.forward import response_logprobs, response_values
    from rlhf.rl.generation import sample_responses
    from rlhf.value_models import value_model_from_policy

    policy, tokenizer = load_policy(str(policy_path))
    reference, value = frozen_copy(policy), value_model_from_policy(policy)
    scorer = RewardModelScorer.from_pretrained(str(reward_path), template="pair")
    prompts, ids = load_prompts(str(DOLLY), template="dolly", tokenizer=tokenizer,
                                max_prompt_tokens=64, max_samples=8)
    query_ids, query_mask = left_pad(ids, tokenizer.pad_token_id)
    never = [-1]  # no stop token: exactly N new tokens, as in the run (random weights rarely stop)
    torch.manual_seed(0)
    response = sample_responses(policy, query_ids, query_mask, max_new_tokens=args.new_tokens,
                                temperature=0.7, stop_token_ids=never,
                                pad_id=tokenizer.pad_token_id)
    mask = response_mask_after_stop(response, never)
    texts = tokenizer.batch_decode(response)
    optimizer, _ = adamw_with_schedule(  # the optimizer train-ppo uses (fused AdamW)
        list(policy.parameters()) + list(value.parameters()), learning_rate=1e-6,
        weight_decay=0.0, scheduler="constant", warmup_ratio=0.0, total_steps=4)

    def ppo_epochs() -> None:
        for _ in range(4):
            ppo_epoch(policy, value, optimizer, query_ids, query_mask, response, mask)

    calls = {
        "generate": lambda: sample_responses(
            policy, query_ids, query_mask, max_new_tokens=args.new_tokens, temperature=0.7,
            stop_token_ids=never, pad_id=tokenizer.pad_token_id),
        "policy_forward": lambda: response_logprobs(policy, query_ids, query_mask, response,
                                                    mask, 0.7),
        "reference_forward": lambda: response_logprobs(reference, query_ids, query_mask,
                                                       response, mask, 0.7),
        "value_forward": lambda: response_values(value, query_ids, query_mask, response, mask),
        "reward_forward": lambda: scorer(prompts.prompts, texts),
        "ppo_epochs": ppo_epochs,
    }
    timings = {}
    for name, call in calls.items():
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            if name == "ppo_epochs":
                call()
            else:
                with torch.no_grad():
                    call()
            seconds.append(time.perf_counter() - start)
        timings[name] = statistics.median(seconds)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
        folder = Path(tmp)
        policy, reward = make_models(folder)
        phases = run_training(folder, policy, reward, args)
        alone = time_calls_alone(policy, reward, args)
    model_calls = sum(alone.values())
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"GPT-2-small policy + value, RoBERTa-base reward; batch 8, {args.new_tokens} new "
          f"tokens, 4 PPO epochs x 1 minibatch; median of {args.iterations} iterations")
    print("| phase in train-ppo | seconds |\n|---|---|")
    for key, value in phases.items():
        print(f"| {key} | {value:.3f} |")
    print("| model call alone | seconds |\n|---|---|")
    for key, value in alone.items():
        print(f"| {key} | {value:.3f} |")
    print(f"| sum of model calls | {model_calls:.3f} |")
    print(f"overhead ratio: iteration {phases['time/iteration']:.3f} s / model calls "
          f"{model_calls:.3f} s = {phases['time/iteration'] / model_calls:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
