"""trl 0.11.4 side of the PPO comparison (benchmarks/.venv-trl-011): the value-head
`trl.PPOTrainer` of the seed's stack, with `AutoModelForCausalLMWithValueHead` (one GPT-2 trunk,
the LM head and a scalar value head), on the same models and pre-tokenised prompts as rlhf's
model.value=shared run.

trl 0.11 leaves the loop to the user; this is its documented one (the gpt2-sentiment example):
`ppo_trainer.generate(queries, return_prompt=False, **generation_kwargs)`, score the responses,
`ppo_trainer.step(queries, responses, scores)`. Scores come from the GPT-2 reward classifier on
query + response ids (right-padded, read at the last real token; the trailing EOS that
`generate` keeps is not read, as rlhf does not read it with a pad == EOS reward model).
Iteration time is the wall time between the ends of consecutive `step` calls. Phases:
generation, scoring, the rollout forwards inside `step` (policy + value head, reference), and
the update's forwards, backward passes and optimizer steps (wrapped here).

Settings that make the math rlhf's (each a trl 0.11 default otherwise):
- dropout 0 in the trunk and the value head (`summary_dropout_prob=0`): trl 0.11 leaves the
  model in train mode after its first update, so `generate` would sample with dropout on;
- temperature 1: trl 0.11 computes log-probs from the raw logits whatever the sampling
  temperature, so only at 1 are they the sampling distribution's (rlhf divides by it);
- the tokenizer pads on the right (GPT-2's default) for `step`'s forwards: transformers 4.46's
  GPT-2 numbers positions 0.. whatever the attention mask, so right padding keeps every real
  token at its true position (generation pads left and gets position ids from `generate`).

    benchmarks/.venv-trl-011/bin/python benchmarks/trl_workers/ppo_trl011.py SPEC.json
"""

from __future__ import annotations

import json
import warnings

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


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import torch
    import transformers
    import trl
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

    warnings.filterwarnings("ignore", message=".*No dataset is provided.*")
    with open(spec["prompts"], encoding="utf-8") as handle:
        prompts = json.load(handle)
    batch = len(prompts["input_ids"])
    iterations = spec["warmup"] + spec["iterations"]

    tokenizer = AutoTokenizer.from_pretrained(spec["policy"])
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # GPT-2's default; see the module docstring
    no_dropout = {"attn_pdrop": 0.0, "resid_pdrop": 0.0, "embd_pdrop": 0.0}
    model = AutoModelForCausalLMWithValueHead.from_pretrained(
        spec["policy"], torch_dtype=torch.float32, summary_dropout_prob=0.0, **no_dropout)
    reward = AutoModelForSequenceClassification.from_pretrained(
        spec["reward"], num_labels=1, torch_dtype=torch.float32).eval()

    config = PPOConfig(
        exp_name="compare_trl", seed=spec["seed"], log_with=None,
        learning_rate=spec["lr"], batch_size=batch, mini_batch_size=batch,
        gradient_accumulation_steps=1, ppo_epochs=4, adap_kl_ctrl=False,
        init_kl_coef=spec["kl_coef"], kl_penalty="kl", gamma=1.0, lam=0.95, cliprange=0.2,
        cliprange_value=0.2, vf_coef=0.1, max_grad_norm=None, ratio_threshold=10.0,
        whiten_rewards=False, use_score_scaling=False, use_score_norm=False, score_clip=None,
        early_stopping=False, optimize_device_cache=False, gradient_checkpointing=False)
    # ref_model=None: trl makes the reference as a frozen deep copy of the value-head model.
    trainer = PPOTrainer(config=config, model=model, ref_model=None, tokenizer=tokenizer)

    phases = Phases()
    trainer.batched_forward_pass = phases.wrap(
        trainer.batched_forward_pass,
        lambda *a, **k: "update forward" if torch.is_grad_enabled() else "rollout forward")
    trainer.accelerator.backward = phases.wrap(trainer.accelerator.backward, "backward")
    trainer.optimizer.step = phases.wrap(trainer.optimizer.step, "optimizer")

    generation_kwargs = {"min_length": -1, "top_k": 0.0, "top_p": 1.0, "do_sample": True,
                         "pad_token_id": tokenizer.eos_token_id,
                         "max_new_tokens": spec["new_tokens"],
                         "temperature": spec["temperature"]}
    queries = [torch.tensor(ids) for ids in prompts["input_ids"]]

    def generate():
        return trainer.generate(queries, return_prompt=False, batch_size=batch,
                                **generation_kwargs)

    @torch.no_grad()
    def score(responses):
        """The reward classifier on query + response (trailing EOS left out), right-padded."""
        rows = []
        for query, response in zip(queries, responses, strict=True):
            if len(response) and response[-1] == tokenizer.eos_token_id:
                response = response[:-1]
            rows.append(torch.cat([query, response]))
        padded = tokenizer.pad({"input_ids": rows}, return_tensors="pt")
        logits = reward(**padded).logits  # pools at the token before the first pad (= EOS)
        return list(logits[:, 0].float())

    generate = phases.wrap(generate, "generate")
    score = phases.wrap(score, "score")
    clock, rss, lengths, eos, step_timing = StepClock(), [], [], [], []
    for _ in range(iterations):
        responses = generate()
        lengths.append([len(response) for response in responses])
        eos.append(sum(int(tokenizer.eos_token_id in response) for response in responses))
        scores = score(responses)
        stats = trainer.step(queries, responses, scores)
        clock.mark()
        phases.cut()
        rss.append(peak_rss_mb())
        step_timing.append({key: stats[key] for key in stats if key.startswith("time/")})

    warmup = spec["warmup"]
    seconds = clock.intervals(warmup)
    settings = {"optimizer": optimizer_name(trainer.optimizer),
                "mixed_precision": trainer.accelerator.mixed_precision,
                "gradient_checkpointing": False, "variant": "value-head",
                "reference": type(trainer.ref_model).__name__,
                "value_head_dropout": type(model.v_head.dropout).__name__,
                "trained_parameters": sum(p.numel() for group in trainer.optimizer.param_groups
                                          for p in group["params"] if p.requires_grad),
                "generation": {k: v for k, v in generation_kwargs.items()}}
    emit({"side": "trl011", "settings": settings, "iteration_s_median": median(seconds),
          "iteration_s": seconds, "phases": phases.medians(warmup),
          "trl_step_timing": step_timing[warmup:],
          "response_length": [sum(row) / len(row) for row in lengths], "eos_tokens": eos,
          "query_width": prompts["query_width"],
          "peak_rss_mb": rss[-1], "process_peak_rss_mb": peak_rss_mb(),
          "torch": torch.__version__, "transformers": transformers.__version__,
          "trl": trl.__version__, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
