"""Reward-model training throughput (pairs/s) and peak memory on CPU at distilroberta size.

A 6-layer, 768-wide RoBERTa with random weights and the real roberta-base tokenizer trains on
real preference text (Anthropic HH harmless-base test split, long dialogues cut to 512 tokens
from the left) through the package's own `reward_update`, with and without length-grouped
batching. Each measurement runs in its own process (so peak RSS is its own), alternating
A B A B, and the medians are compared as a ratio measured in this one run.

    .venv/bin/python benchmarks/reward_throughput.py [--repeats 3] [--steps 6]

Needs ../shared/data (beside the repository) for the tokenizer and the data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROBERTA = SHARED / "roberta-base-tokenizer"
HH = SHARED / "hh-rlhf-harmless-base-test" / "test.jsonl.gz"


def roberta_tokenizer_folder() -> str:
    """The shared roberta-base tokenizer with its special tokens declared, as on the hub."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ROBERTA))
    tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                                  "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                                  "mask_token": "<mask>"})
    folder = tempfile.mkdtemp(prefix="roberta-tok-")
    tokenizer.save_pretrained(folder)
    return folder


def worker(grouped: bool, steps: int, batch_size: int, max_length: int) -> dict:
    """Train `steps` optimizer steps and report pairs/s (after one warm-up step) and peak RSS."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    from rlhf.data.batching import epoch_batches
    from rlhf.data.preferences import load_preferences
    from rlhf.data.reward_text import tokenize_preferences
    from rlhf.engine.optim import adamw_with_schedule
    from rlhf.models import load_tokenizer, turn_off_dropout
    from rlhf.stages.reward import reward_update

    torch.manual_seed(0)
    tokenizer = load_tokenizer(roberta_tokenizer_folder())
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=6,
                           num_attention_heads=12, intermediate_size=3072,
                           max_position_embeddings=514, type_vocab_size=1, num_labels=1,
                           pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForSequenceClassification.from_config(config)
    turn_off_dropout(model)
    train, _ = load_preferences(str(HH), test_fraction=0.1, seed=0, tokenizer=tokenizer)
    data = tokenize_preferences(train, tokenizer, template="pair", separator="\n",
                                max_length=max_length)
    lengths = [max(len(ids) for ids in example) for example in data.input_ids]
    batches = epoch_batches(len(data.best), batch_size, seed=0, epoch=0,
                            lengths=lengths if grouped else None)[: steps + 1]
    accelerator = Accelerator(cpu=True)
    optimizer, scheduler = adamw_with_schedule(  # what train-reward uses: fused AdamW
        model.parameters(), learning_rate=1e-5, weight_decay=0.0, scheduler="constant",
        warmup_ratio=0.0, total_steps=len(batches))
    model.train()
    tokens = real_tokens = 0
    for index, batch in enumerate(batches):
        if index == 1:  # the first step pays one-off allocation costs
            start = time.perf_counter()
        reward_update(model, optimizer, scheduler, accelerator, data, batch,
                      micro_batch_size=batch_size, pad_id=tokenizer.pad_token_id,
                      center_coef=0.0, max_grad_norm=1.0,
                      is_finite=lambda quantities: True)  # random weights: finite anyway
        if index >= 1:  # chosen and rejected share one forward pass padded to the longest
            width = max(len(ids) for i in batch for ids in data.input_ids[i])
            tokens += width * 2 * len(batch)
            real_tokens += sum(len(ids) for i in batch for ids in data.input_ids[i])
    elapsed = time.perf_counter() - start
    return {"pairs_per_s": steps * batch_size / elapsed, "seconds": elapsed,
            "real_tokens_per_s": real_tokens / elapsed,
            "padded_tokens_per_step": tokens / steps, "real_tokens_per_step": real_tokens / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_worker(grouped: bool, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", "grouped" if grouped else "random",
               "--steps", str(args.steps), "--batch-size", str(args.batch_size),
               "--max-length", str(args.max_length)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--worker", choices=["grouped", "random"])
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker == "grouped", args.steps, args.batch_size, args.max_length)
        print(json.dumps(result))
        return
    import torch

    results: dict[str, list[dict]] = {"random": [], "grouped": []}
    for repeat in range(args.repeats):
        for grouped in (False, True):  # alternate A B A B on a shared, noisy machine
            results["grouped" if grouped else "random"].append(run_worker(grouped, args))
            print(f"repeat {repeat}: {'grouped' if grouped else 'random '} "
                  f"{results['grouped' if grouped else 'random'][-1]}", flush=True)
    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for name, runs in results.items()}
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"distilroberta-size reward model, batch {args.batch_size} pairs, max length "
          f"{args.max_length}, {args.steps} timed steps, median of {args.repeats}")
    print("| batching | pairs/s | real tokens/s | real tokens/step | padded tokens/step | "
          "peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for name, row in summary.items():
        print(f"| {name} | {row['pairs_per_s']:.2f} | {row['real_tokens_per_s']:.0f} | "
              f"{row['real_tokens_per_step']:.0f} | {row['padded_tokens_per_step']:.0f} | "
              f"{row['peak_rss_mb']:.0f} |")
    for key in ("pairs_per_s", "real_tokens_per_s"):
        ratio = summary["grouped"][key] / summary["random"][key]
        print(f"length grouping speed-up in {key}: {ratio:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
