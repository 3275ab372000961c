"""TRL side of the PPO comparison (benchmarks/.venv-trl-ppo): trl 1.12's
`trl.experimental.ppo.PPOTrainer` on the same models and the same pre-tokenised prompts.

Iteration time is the wall time between consecutive `on_step_end` callbacks (one per PPO
update). `gc.collect` is wrapped to add up its own time per iteration, so the driver can report
TRL both as is and net of the two `gc.collect()` calls its loop makes per update.

    benchmarks/.venv-trl-ppo/bin/python benchmarks/trl_workers/ppo_trl.py SPEC.json
"""

from __future__ import annotations

import gc
import json
import time

from common import StepClock, emit, median, optimizer_name, peak_rss_mb, read_spec, set_threads

_collect = gc.collect
GC_SECONDS = [0.0]
GC_CALLS = [0]


def timed_collect(*args, **kwargs):
    start = time.perf_counter()
    try:
        return _collect(*args, **kwargs)
    finally:
        GC_SECONDS[0] += time.perf_counter() - start
        GC_CALLS[0] += 1


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    gc.collect = timed_collect  # ppo_trainer calls gc.collect() through the gc module
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        TrainerCallback,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    with open(spec["prompts"], encoding="utf-8") as handle:
        prompts = json.load(handle)
    batch = len(prompts["input_ids"])
    iterations = spec["warmup"] + spec["iterations"]

    tokenizer = AutoTokenizer.from_pretrained(spec["policy"], padding_side="left")
    tokenizer.pad_token = tokenizer.eos_token
    # The collator left-pads the prompts to the longest of the batch, as rlhf's left_pad does.
    dataset = Dataset.from_dict({"input_ids": prompts["input_ids"]})

    float32 = {"dtype": torch.float32}
    policy = AutoModelForCausalLM.from_pretrained(spec["policy"], **float32)
    reference = AutoModelForCausalLM.from_pretrained(spec["policy"], **float32)
    value = AutoModelForSequenceClassification.from_pretrained(spec["reward"], num_labels=1,
                                                               **float32)
    reward = AutoModelForSequenceClassification.from_pretrained(spec["reward"], num_labels=1,
                                                                **float32)

    lengths, eos = [], []
    batch_generation = trl_ppo.batch_generation

    def recorded_generation(*args, **kwargs):
        """Counts the tokens each rollout generated (TRL's loop never reports it)."""
        query_responses, logits = batch_generation(*args, **kwargs)
        responses = query_responses[:, args[1].shape[1]:]
        lengths.append(float(responses.shape[1]))
        eos.append(int((responses == tokenizer.eos_token_id).sum()))
        return query_responses, logits

    trl_ppo.batch_generation = recorded_generation

    clock, gc_at_end, rss = StepClock(), [], []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.mark()
            gc_at_end.append(GC_SECONDS[0])
            rss.append(peak_rss_mb())

    config = PPOConfig(
        output_dir=spec["output_dir"], seed=spec["seed"], report_to="none", disable_tqdm=True,
        save_strategy="no", eval_strategy="no", logging_steps=1, bf16=False, fp16=False,
        gradient_checkpointing=False, use_cpu=True,
        learning_rate=spec["lr"], lr_scheduler_type="linear", weight_decay=0.0,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_mini_batches=1,
        local_rollout_forward_batch_size=batch, total_episodes=batch * iterations,
        num_ppo_epochs=4, response_length=spec["new_tokens"], stop_token=None,
        stop_token_id=None, temperature=spec["temperature"], missing_eos_penalty=None,
        kl_coef=0.05, kl_estimator="k1", cliprange=0.2, cliprange_value=0.2, vf_coef=0.1,
        gamma=1.0, lam=0.95, whiten_rewards=False, num_sample_generations=0)
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy,
                         ref_model=reference, reward_model=reward, value_model=value,
                         train_dataset=dataset, eval_dataset=dataset, callbacks=[Timer()])
    trainer.train()

    settings = {"optimizer": optimizer_name(trainer.optimizer),
                "mixed_precision": trainer.accelerator.mixed_precision,
                "gradient_checkpointing": policy.is_gradient_checkpointing}
    warmup = spec["warmup"]
    seconds = clock.intervals(warmup)
    gc_seconds = [b - a for a, b in zip(gc_at_end[warmup - 1:], gc_at_end[warmup:],
                                        strict=False)]
    net = [s - g for s, g in zip(seconds, gc_seconds, strict=True)]
    emit({"side": "trl", "settings": settings, "iteration_s_median": median(seconds),
          "iteration_s": seconds,
          "net_iteration_s_median": median(net), "gc_s": gc_seconds,
          "gc_s_median": median(gc_seconds), "gc_calls": GC_CALLS[0],
          "response_length": lengths, "eos_tokens": eos,
          "query_width": prompts["query_width"],
          "peak_rss_mb": rss[-1], "process_peak_rss_mb": peak_rss_mb(),
          "torch": torch.__version__, "transformers": transformers.__version__,
          "trl": trl.__version__, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
