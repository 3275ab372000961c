"""DPO and its variants: optimise a policy directly on preference pairs against a fixed reference
(Rafailov et al. 2023), with no reward model and no sampling. The loop is
`rlhf.engine.supervised`'s; a step reads:

    1. the policy's log-probs of each pair's chosen and rejected response   (one forward pass)
    2. the reference's                                  (precomputed table, a forward, or none)
    3. the configured loss, backward, one optimizer step                   (`update.dpo_update`)

With LoRA the reference is the policy with its adapters switched off: no second copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

from rlhf.adapters import AdaptersOff
from rlhf.config import DPOConfig
from rlhf.data.dpo import TokenizedPairs, tokenize_preference_pairs
from rlhf.data.preferences import load_preferences
from rlhf.engine.run import Run
from rlhf.engine.supervised import SupervisedTask, start_training, train_supervised
from rlhf.models import check_fits_positions, frozen_copy, load_policy
from rlhf.saving import save_trained
from rlhf.stages.dpo.reference import (
    compute_table,
    from_tables,
    no_reference,
    on_the_fly,
    stored_tables,
)
from rlhf.stages.dpo.update import dpo_update, evaluate_dpo, implicit_rewards_of, objective
from rlhf.trainable import ready_to_train


@dataclass
class DPOData:
    """Tokenized train and test pairs and what preparing them dropped or cut."""

    train: TokenizedPairs
    test: TokenizedPairs
    counts: dict[str, int]


def prepare_dpo_data(cfg: DPOConfig, tokenizer) -> DPOData:
    """Load any preference layout, split, and tokenise each pair as the policy reads it."""
    data = cfg.data
    train, test = load_preferences(
        data.path, name=data.name, split=data.split, test_split=data.test_split,
        test_fraction=data.test_fraction, seed=cfg.run.seed, columns=dict(data.columns),
        max_samples=data.max_samples, tokenizer=tokenizer)
    parts = {name: tokenize_preference_pairs(prefs, tokenizer, max_length=data.max_length)
             for name, prefs in (("train", train), ("test", test))}
    counts = {f"train_{k}": v for k, v in train.counts.items()}
    counts |= {f"test_{k}": v for k, v in test.counts.items()}
    for name, pairs in parts.items():
        counts |= {f"{name}_pairs": len(pairs.examples), f"{name}_truncated": pairs.truncated}
        counts |= {f"{name}_dropped_{why}": n for why, n in pairs.dropped.items() if n}
    return DPOData(train=parts["train"], test=parts["test"], counts=counts)


def train_dpo(cfg: DPOConfig) -> dict[str, float]:
    """Optimise the policy as configured; returns the final held-out metrics."""
    run = Run(cfg.run, cfg, stage="dpo")
    micro_batch_size, _ = cfg.train.micro_batches_per_step(run.accelerator.num_processes)
    model, tokenizer = load_policy(
        cfg.model.name_or_path, disable_dropout=cfg.model.disable_dropout,
        trust_remote_code=cfg.model.trust_remote_code, seed=cfg.run.seed,
        quantize=cfg.lora.quantize)
    check_fits_positions(model, cfg.data.max_length, "data.max_length", cfg.model.name_or_path)
    data = prepare_dpo_data(cfg, tokenizer)
    _announce(run, data)
    reference = _reference_model(cfg, model)
    model = ready_to_train(model, lora=cfg.lora, base_name=cfg.model.name_or_path,
                           gradient_checkpointing=cfg.train.gradient_checkpointing)
    if reference is None and cfg.dpo.needs_reference:  # LoRA: the base, adapters off
        reference = AdaptersOff(model)
    training = start_training(run, model, cfg.train, n_examples=len(data.train.examples))
    pad_id = tokenizer.pad_token_id
    read_reference = _reference_source(cfg, run, reference, data, pad_id)
    del reference  # a precomputed table is all that is kept of a separate reference
    settings = {"objective": objective(cfg.dpo.loss, beta=cfg.dpo.beta,
                                       label_smoothing=cfg.dpo.label_smoothing,
                                       gamma=cfg.dpo.simpo_gamma),
                "reference": read_reference, "pad_id": pad_id}
    held_out = HeldOut(run, partial(
        evaluate_dpo, training.model, data.test, **settings,
        rewards_of=implicit_rewards_of(cfg.dpo.loss, cfg.dpo.beta),
        batch_size=cfg.train.eval_batch_size, accelerator=run.accelerator))
    task = SupervisedTask(
        name="dpo", n_examples=len(data.train.examples),
        lengths=data.train.lengths() if cfg.data.group_by_length else None,
        update=lambda batch, is_finite: dpo_update(
            training.model, training.optimizer, training.scheduler, run.accelerator,
            data.train, batch, **settings, micro_batch_size=micro_batch_size,
            max_grad_norm=cfg.train.max_grad_norm, is_finite=is_finite),
        evaluate=held_out,
        progress=lambda m: {"loss": f"{m['train/loss']:.3f}", "acc": f"{m['train/accuracy']:.2f}"},
        evaluate_at_start=True)  # loss log 2 and accuracy 0 at the reference: the baseline
    final = train_supervised(run, training, task, batch_size=cfg.train.batch_size,
                             seed=cfg.run.seed)
    _finish(run, training.model, tokenizer, final, merge=cfg.lora.merge)
    return final


def _reference_model(cfg: DPOConfig, policy):
    """A separate frozen reference: model.reference when given, else a copy of the policy as
    loaded; None with LoRA (the adapters-off policy serves) or a reference-free loss."""
    if not cfg.dpo.needs_reference:
        return None
    if cfg.model.reference is not None:
        reference, _ = load_policy(cfg.model.reference, disable_dropout=cfg.model.disable_dropout,
                                   trust_remote_code=cfg.model.trust_remote_code,
                                   seed=cfg.run.seed)
        return reference
    return None if cfg.lora.r else frozen_copy(policy)


def _reference_source(cfg: DPOConfig, run: Run, reference, data: DPOData, pad_id: int):
    """How each step gets the reference's log-probs: none, a forward now, or the table."""
    if reference is None:
        return no_reference
    reference = run.prepare_frozen(reference)
    if cfg.dpo.reference_logprobs == "on_the_fly":
        return on_the_fly(reference, run.device)
    splits = {"train": data.train, "test": data.test}
    tables = stored_tables(run, lambda split: compute_table(
        reference, splits[split], batch_size=cfg.train.eval_batch_size, pad_id=pad_id,
        accelerator=run.accelerator), {name: len(p.examples) for name, p in splits.items()})
    return from_tables(tables)


class HeldOut:
    """The held-out evaluation (its metrics are what the loop logs); the latest implicit rewards
    of chosen and rejected responses go to eval_scores.json for the report's histograms."""

    def __init__(self, run: Run, evaluate):
        self.run, self._evaluate = run, evaluate

    def __call__(self) -> dict[str, float]:
        metrics, rewards = self._evaluate()
        if self.run.is_main:
            (self.run.output_dir / "eval_scores.json").write_text(json.dumps(rewards),
                                                                  encoding="utf-8")
        return metrics


def _announce(run: Run, data: DPOData) -> None:
    if run.is_main:
        counts = ", ".join(f"{k}={v}" for k, v in data.counts.items())
        print(f"[rlhf] preference pairs: {len(data.train.examples)} train / "
              f"{len(data.test.examples)} test ({counts})", flush=True)


def _finish(run: Run, model, tokenizer, final: dict[str, float], *, merge: bool) -> None:
    """Print the held-out result and save OUT/model (left padding, as generation expects)."""
    if run.is_main:
        print(f"[rlhf] held-out reward accuracy {final['eval/accuracy']:.4f}, loss "
              f"{final['eval/loss']:.4f}, margin {final['eval/margin_mean']:.4f}", flush=True)
        tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "left"
        written = save_trained(run.accelerator.unwrap_model(model), tokenizer,
                               run.output_dir / "model", merge=merge)
        print(f"[rlhf] policy saved to {', '.join(map(str, written))}", flush=True)
    run.accelerator.wait_for_everyone()
    run.finish()
