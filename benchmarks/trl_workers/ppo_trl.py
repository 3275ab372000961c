"""TRL side of the PPO comparison (benchmarks/.venv-trl-ppo): trl 1.12's
`trl.experimental.ppo.PPOTrainer` on the same models and the same pre-tokenised prompts.

Iteration time is the wall time between consecutive `on_step_end` callbacks (one per PPO
update). `gc.collect` is wrapped to add up its own time per iteration, so the driver can report
TRL both as is and net of the two `gc.collect()` calls its loop makes per update.

The spec's `variant`: "separate" (default: policy, a reference copy, a value model) or "lora"
(a peft LoraConfig from the spec's `lora` on the policy, no reference model: TRL's reference is
then the policy with its adapter disabled, `null_ref_context`; the value model trains in full,
as trl 1.12 applies peft to the policy only). Phases (generation, the rollout's reference and
value forwards, scoring, the update's forwards, backward passes and optimizer steps) are timed
by wrapping the module functions the loop calls; "other" in the driver's table is the rest.

    benchmarks/.venv-trl-ppo/bin/python benchmarks/trl_workers/ppo_trl.py SPEC.json
"""

from __future__ import annotations

import gc
import json
import os
import time

from common import (
    Phases,
    StepClock,
    emit,
    median,
    optimizer_name,
    peak_rss_mb,
    read_spec,
    set_threads,
)

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


def peft_settings(config) -> dict | None:
    """What the policy's adapter was built with (read back from peft's config)."""
    if config is None:
        return None
    return {"r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
            "target_modules": sorted(config.target_modules), "bias": config.bias,
            "fan_in_fan_out": config.fan_in_fan_out}


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
    lora = spec.get("variant", "separate") == "lora"
    policy = AutoModelForCausalLM.from_pretrained(spec["policy"], **float32)
    reference = None if lora else AutoModelForCausalLM.from_pretrained(spec["policy"], **float32)
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=spec["lora"]["r"], lora_alpha=spec["lora"]["alpha"],
                                 lora_dropout=spec["lora"]["dropout"],
                                 target_modules=spec["lora"]["target_modules"], bias="none",
                                 task_type="CAUSAL_LM")
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

    phases = Phases()
    trl_ppo.batch_generation = phases.wrap(recorded_generation, "generate")
    trl_ppo.forward = phases.wrap(
        trl_ppo.forward,
        lambda *a, **k: "update forward" if torch.is_grad_enabled() else "rollout forward")
    trl_ppo.get_reward = phases.wrap(
        trl_ppo.get_reward, lambda model, *a, **k: "score" if model is reward else
        "rollout forward")

    clock, gc_at_end, rss = StepClock(), [], []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.mark()
            phases.cut()
            gc_at_end.append(GC_SECONDS[0])
            rss.append(peak_rss_mb())

    if spec.get("bf16"):
        # trl 1.12's PPOTrainer builds its Accelerator without a mixed_precision argument and
        # transformers 5 no longer exports bf16=True as ACCELERATE_MIXED_PRECISION, so bf16=True
        # alone trains in float32 (measured: mixed_precision "no"). This is what `accelerate
        # launch --mixed_precision bf16` sets; the spec's "trl_env_precision": false leaves it.
        if spec.get("trl_env_precision", True):
            os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    config = PPOConfig(
        output_dir=spec["output_dir"], seed=spec["seed"], report_to="none", disable_tqdm=True,
        save_strategy="no", eval_strategy="no", logging_steps=1, bf16=spec.get("bf16", False), fp16=False,
        gradient_checkpointing=False, use_cpu=True,
        learning_rate=spec["lr"], lr_scheduler_type="linear", weight_decay=0.0,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, num_mini_batches=1,
        local_rollout_forward_batch_size=batch, total_episodes=batch * iterations,
        num_ppo_epochs=4, response_length=spec["new_tokens"], stop_token=None,
        stop_token_id=None, temperature=spec["temperature"], missing_eos_penalty=None,
        kl_coef=spec.get("kl_coef", 0.05), kl_estimator="k1", cliprange=0.2,
        cliprange_value=0.2, vf_coef=0.1, gamma=1.0, lam=0.95, whiten_rewards=False,
        num_sample_generations=0)
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy,
                         ref_model=reference, reward_model=reward, value_model=value,
                         train_dataset=dataset, eval_dataset=dataset, callbacks=[Timer()],
                         peft_config=peft_config)
    trainer.accelerator.backward = phases.wrap(trainer.accelerator.backward, "backward")
    trainer.optimizer.step = phases.wrap(trainer.optimizer.step, "optimizer")
    trainer.train()

    settings = {"optimizer": optimizer_name(trainer.optimizer),
                "mixed_precision": trainer.accelerator.mixed_precision,
                "gradient_checkpointing": policy.is_gradient_checkpointing,
                "variant": spec.get("variant", "separate"), "peft": peft_settings(peft_config),
                "reference": "policy with adapter disabled" if trainer.ref_model is None
                else type(trainer.ref_model).__name__,
                "trained_parameters": sum(p.numel() for group in trainer.optimizer.param_groups
                                          for p in group["params"] if p.requires_grad)}
    warmup = spec["warmup"]
    seconds = clock.intervals(warmup)
    gc_seconds = [b - a for a, b in zip(gc_at_end[warmup - 1:], gc_at_end[warmup:],
                                        strict=False)]
    net = [s - g for s, g in zip(seconds, gc_seconds, strict=True)]
    emit({"side": "trl", "settings": settings, "iteration_s_median": median(seconds),
          "iteration_s": seconds,
          "net_iteration_s_median": median(net), "gc_s": gc_seconds,
          "gc_s_median": median(gc_seconds), "gc_calls": GC_CALLS[0],
          "phases": phases.medians(warmup),
          "response_length": lengths, "eos_tokens": eos,
          "query_width": prompts["query_width"],
          "peak_rss_mb": rss[-1], "process_peak_rss_mb": peak_rss_mb(),
          "torch": torch.__version__, "transformers": transformers.__version__,
          "trl": trl.__version__, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
