"""rlhf side of the reward-model comparison (main venv): `rlhf.stages.reward.reward_update` on the
pre-tokenised pairs the driver wrote. Two modes: batch after batch in the file's order
(identical batches on both sides), or (spec "epoch") one whole epoch over the file in the
order `rlhf train-reward` uses by default (length-grouped batches, `data.group_by_length`),
timed from its first step's start to its last step's end.

    .venv/bin/python benchmarks/trl_workers/reward_rlhf.py SPEC.json
"""

from __future__ import annotations

import json

from common import StepClock, emit, median, optimizer_name, peak_rss_mb, read_spec, set_threads


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import torch
    from accelerate import Accelerator

    from rlhf.data.batching import epoch_batches
    from rlhf.data.reward_text import TokenizedPreferences
    from rlhf.engine.optim import adamw_with_schedule
    from rlhf.models import load_reward_model
    from rlhf.stages.reward import reward_update

    with open(spec["data"], encoding="utf-8") as handle:
        pairs = json.load(handle)
    data = TokenizedPreferences(
        input_ids=[[c, r] for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True)],
        best=[0] * len(pairs["chosen"]), margins=None, listwise=False, truncated=0)
    size = spec["batch_size"]
    if spec.get("epoch"):  # train-reward's default order: what a user gets
        lengths = [max(len(ids) for ids in pair) for pair in data.input_ids]
        batches = epoch_batches(len(data.best), size, seed=spec["seed"], epoch=0,
                                lengths=lengths)
    else:
        batches = [list(range(i * size, (i + 1) * size))
                   for i in range(spec["warmup"] + spec["steps"])]

    torch.manual_seed(spec["seed"])
    model, tokenizer = load_reward_model(spec["model"], trained=True)  # float32, dropout off
    accelerator = Accelerator(cpu=True, mixed_precision="no")
    optimizer, scheduler = adamw_with_schedule(  # what train-reward uses: fused AdamW
        model.parameters(), learning_rate=spec["lr"], weight_decay=0.0, scheduler="constant",
        warmup_ratio=0.0, total_steps=len(batches))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    clock, losses = StepClock(), []
    if spec.get("epoch"):
        clock.mark()  # the epoch's clock starts with its first step
    for batch in batches:
        stats, _ = reward_update(model, optimizer, scheduler, accelerator, data, batch,
                              micro_batch_size=size, pad_id=tokenizer.pad_token_id,
                              center_coef=0.0, max_grad_norm=spec["max_grad_norm"],
                              is_finite=lambda quantities: True)
        clock.mark()
        losses.append(stats["train/loss"])
    seconds = clock.intervals(1 if spec.get("epoch") else spec["warmup"])
    settings = {"optimizer": optimizer_name(optimizer),
                "mixed_precision": accelerator.mixed_precision,
                "gradient_checkpointing": accelerator.unwrap_model(model).is_gradient_checkpointing}
    emit({"side": "rlhf", "settings": settings, "pairs_per_s": len(seconds) * size / sum(seconds),
          "step_s_median": median(seconds), "step_s": seconds, "losses": losses,
          "epoch_s": sum(seconds), "tokens": tokens(data.input_ids, batches),
          "peak_rss_mb": peak_rss_mb(), "torch": torch.__version__,
          "threads": torch.get_num_threads()})


def tokens(pairs: list[list[list[int]]], batches: list[list[int]]) -> dict[str, int]:
    """Real and padded tokens the batches ran (chosen and rejected padded to the longest)."""
    rows = [[pairs[i][0] for i in batch] + [pairs[i][1] for i in batch] for batch in batches]
    return {"real": sum(len(ids) for batch in rows for ids in batch),
            "padded": sum(len(batch) * max(len(ids) for ids in batch) for batch in rows)}


if __name__ == "__main__":
    main()
