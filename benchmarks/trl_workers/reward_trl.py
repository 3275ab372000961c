"""TRL side of the reward-model comparison (benchmarks/.venv-trl-reward): `trl.RewardTrainer`
on the same pre-tokenised pairs. Two modes: the same batches as rlhf (sequential sampler over
the file's order), or (spec "epoch") one whole epoch over the file with TRL's default random
sampler, timed from `on_train_begin` to the last step's end.

    benchmarks/.venv-trl-reward/bin/python benchmarks/trl_workers/reward_trl.py SPEC.json
"""

from __future__ import annotations

import json

from common import StepClock, emit, median, optimizer_name, peak_rss_mb, read_spec, set_threads


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    with open(spec["data"], encoding="utf-8") as handle:
        pairs = json.load(handle)
    size, epoch = spec["batch_size"], spec.get("epoch", False)
    rows = len(pairs["chosen"]) if epoch else (spec["warmup"] + spec["steps"]) * size
    # Already tokenised (`chosen_ids`/`rejected_ids`): TRL skips its own tokenisation and only
    # filters rows longer than max_length (there are none: the driver cut them to max_length).
    columns = {"chosen_ids": pairs["chosen"][:rows], "rejected_ids": pairs["rejected"][:rows]}
    dataset = Dataset.from_dict(columns)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])

    clock, losses = StepClock(), []

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if epoch:
                clock.mark()  # the epoch's clock starts with training

        def on_step_end(self, args, state, control, **kwargs):
            clock.mark()

    class LossLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    config = RewardConfig(
        output_dir=spec["output_dir"], seed=spec["seed"], data_seed=spec["seed"],
        per_device_train_batch_size=size, gradient_accumulation_steps=1,
        max_steps=-1 if epoch else rows // size, num_train_epochs=1,
        learning_rate=spec["lr"], weight_decay=0.0, lr_scheduler_type="constant",
        warmup_steps=0, max_grad_norm=spec["max_grad_norm"],  # optim: default (fused AdamW)
        max_length=spec["max_length"], center_rewards_coefficient=None, disable_dropout=True,
        gradient_checkpointing=False, bf16=False, fp16=False,  # TRL defaults: True, True
        use_cpu=True, train_sampling_strategy="random" if epoch else "sequential",
        dataloader_num_workers=0, dataloader_drop_last=False, logging_strategy="steps",
        logging_steps=1,
        save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
        model_init_kwargs={"dtype": torch.float32})
    trainer = RewardTrainer(model=spec["model"], args=config, train_dataset=dataset,
                            processing_class=tokenizer, callbacks=[Timer(), LossLog()])
    seen = {"real": 0, "padded": 0}
    collate = trainer.data_collator

    def counting_collate(examples):  # the real and padded tokens each batch runs
        batch = collate(examples)
        seen["real"] += int(batch["attention_mask"].sum())
        seen["padded"] += batch["input_ids"].numel()
        return batch

    trainer.data_collator = counting_collate  # the train dataloader is built in train()
    trainer.train()
    seconds = clock.intervals(1 if epoch else spec["warmup"])
    settings = {"optimizer": optimizer_name(trainer.optimizer),
                "mixed_precision": trainer.accelerator.mixed_precision,
                "gradient_checkpointing": trainer.model.is_gradient_checkpointing}
    emit({"side": "trl", "settings": settings, "pairs_per_s": len(seconds) * size / sum(seconds),
          "step_s_median": median(seconds), "step_s": seconds, "losses": losses,
          "epoch_s": sum(seconds), "tokens": seen,
          "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__,
          "transformers": transformers.__version__, "trl": trl.__version__,
          "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
