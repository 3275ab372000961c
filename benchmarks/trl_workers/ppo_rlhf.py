"""rlhf side of the PPO comparison (main venv): a real `rlhf.stages.ppo.train.train_ppo` run.

Iteration time is the wall time between the ends of consecutive iterations (the loop's
`end_iteration` step, wrapped here), so it covers everything the loop does. The final
save_pretrained of policy and value (after the last iteration; TRL saves nothing with
save_strategy="no") is skipped.

The spec's `variant` picks the models: "separate" (default: a full policy, a frozen copy as
reference and a value model of its own, against trl 1.12), "lora" (LoRA adapters on the policy
as in the spec's `lora`, the reference is the policy with its adapters off, the value model
trains in full: trl 1.12's PPOTrainer with a peft_config) or "shared" (model.value=shared: one
GPT-2 trunk with the LM head and a scalar value head, a frozen copy as reference, constant
learning rate and trl 0.11's ratio_threshold: trl 0.11.4's value-head PPOTrainer).

    .venv/bin/python benchmarks/trl_workers/ppo_rlhf.py SPEC.json
"""

from __future__ import annotations

import json
from pathlib import Path

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


def variant_overrides(spec: dict) -> list[str]:
    """The config keys of the spec's variant (see the module docstring)."""
    variant = spec.get("variant", "separate")
    kl = [f"ppo.kl_coef={spec['kl_coef']}"] if "kl_coef" in spec else []
    if variant == "separate":
        return kl
    if variant == "lora":
        lora = spec["lora"]
        return kl + [f"lora.r={lora['r']}", f"lora.alpha={lora['alpha']}",
                     f"lora.dropout={lora['dropout']}",
                     f"lora.target_modules=[{','.join(lora['target_modules'])}]",
                     "lora.value=false", "lora.merge=false"]
    if variant == "shared":  # trl 0.11.4: constant lr, ratio_threshold 10, value head on the LM
        return kl + ["model.value=shared", "model.value_init=policy", "train.scheduler=constant",
                     f"ppo.ratio_threshold={spec['ratio_threshold']}"]
    raise SystemExit(f"unknown variant {variant!r}")


def main() -> None:
    spec = read_spec()
    set_threads(spec["threads"])
    import torch
    from accelerate import Accelerator

    import rlhf.stages.ppo.train as loop
    from rlhf.config import PPOConfig, load_config

    clock, rss, phases = StepClock(), [], Phases()
    end_iteration = loop.end_iteration

    def timed_end_iteration(*args, **kwargs):
        clock.mark()
        phases.cut()
        rss.append(peak_rss_mb())
        return end_iteration(*args, **kwargs)

    loop.end_iteration = timed_end_iteration
    loop.final_models = lambda ppo: {}  # nothing saved: TRL saves nothing either
    made = {}
    adamw_with_schedule = loop.adamw_with_schedule

    def recorded_adamw(*args, **kwargs):
        made["optimizer"], made["scheduler"] = adamw_with_schedule(*args, **kwargs)
        made["optimizer"].step = phases.wrap(made["optimizer"].step, "optimizer")
        return made["optimizer"], made["scheduler"]

    loop.adamw_with_schedule = recorded_adamw
    # The update's sub-phases, as the TRL workers time theirs: its forward passes (the loop's
    # forward function, as UpdateSettings gets it), backward passes and optimizer steps.
    loop.separate_forward = phases.wrap(loop.separate_forward, "update forward")
    loop.shared_forward = phases.wrap(loop.shared_forward, "update forward")
    Accelerator.backward = phases.wrap(Accelerator.backward, "backward")

    with open(spec["prompts"], encoding="utf-8") as handle:
        prompts = json.load(handle)
    iterations = spec["warmup"] + spec["iterations"]
    batch = len(prompts["input_ids"])
    output_dir = Path(spec["output_dir"]) / "run"
    cfg = load_config(PPOConfig, None, [
        f"run.output_dir={output_dir}", f"run.seed={spec['seed']}", "run.progress=false",
        "run.save_every=0",
        f"run.mixed_precision={'bf16' if spec.get('bf16') else repr('no')}",
        f"data.path={prompts['path']}", "data.template=dolly",
        f"data.max_prompt_tokens={prompts['max_prompt_tokens']}",
        f"data.context_chars={prompts['context_chars']}", f"data.max_samples={batch}",
        f"model.policy={spec['policy']}", f"model.reward={spec['reward']}",
        "model.reward_template=concat", "model.reward_separator=''", "model.value_init=reward",
        f"generate.max_new_tokens={spec['new_tokens']}",
        f"generate.temperature={spec['temperature']}",
        "ppo.kl_estimator=k1", "ppo.kl_coef=0.05", "ppo.adaptive_kl=false",
        "ppo.gamma=1.0", "ppo.lam=0.95", "ppo.ppo_epochs=4", "ppo.num_minibatches=1",
        "ppo.clip_range=0.2", "ppo.value_clip_range=0.2", "ppo.vf_coef=0.1",
        "ppo.whiten_rewards=false", "ppo.score_normalization=none",
        f"ppo.total_episodes={batch * iterations}",
        f"train.batch_size={batch}", "train.micro_batch_size=0", "train.rollout_batch_size=0",
        f"train.learning_rate={spec['lr']}", "train.scheduler=linear",
        "train.max_grad_norm=0",  # TRL's PPO loop does not clip gradients
        "samples_every=0"] + variant_overrides(spec))
    loop.train_ppo(cfg)

    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").open()]
    rows = [row for row in rows if "time/iteration" in row]
    seconds = clock.intervals(spec["warmup"])
    timed = rows[spec["warmup"]:]
    logged = {key: median([row[key] for row in timed])
              for key in ("time/generate", "time/forward", "time/score", "time/update")}
    update = phases.medians(spec["warmup"])
    settings = {"optimizer": optimizer_name(made["optimizer"]),
                "mixed_precision": cfg.run.mixed_precision, "gradient_checkpointing": False,
                "variant": spec.get("variant", "separate"),
                "trained_parameters": sum(p.numel() for group in made["optimizer"].param_groups
                                          for p in group["params"] if p.requires_grad)}
    emit({"side": "rlhf", "settings": settings, "iteration_s_median": median(seconds),
          "iteration_s": seconds,
          "phases": {"generate": logged["time/generate"],
                     "rollout forward": logged["time/forward"], "score": logged["time/score"],
                     "update": logged["time/update"]} | update,
          "response_length": [row["response/length"] for row in rows],
          "query_width": prompts["query_width"],
          "peak_rss_mb": rss[-1], "process_peak_rss_mb": peak_rss_mb(),
          "torch": torch.__version__, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
