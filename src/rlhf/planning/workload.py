"""What a run will do, as plain numbers: the models, the batch sizes and lengths per process, and
the memory options (LoRA, checkpointing, the shared value head, precision), read from a stage's
config. The plan (`planning.plan`) works on this, and the advice (`planning.advice`) changes it
one option at a time, each change with the `key=value` override that makes it."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.planning.shapes import is_reward_function

STAGE_NAMES = ("sft", "reward", "dpo", "ppo", "critic_free")
PAIR_STAGES = ("reward", "dpo")
"""Stages whose examples are pairs: chosen and rejected in one forward pass."""
RL_STAGES = ("ppo", "critic_free")


@dataclass(frozen=True)
class Workload:
    """One process's share of a run, in plain numbers."""

    stage: str
    processes: int
    device: str
    """'cpu' or 'cuda': where the models live (the plan counts that device's memory)."""
    precision: str
    """'fp32', 'bf16' or 'fp16': the autocast precision of every forward pass."""
    trained: str
    """The trained model: the policy (RL, SFT) or the reward model (reward stage)."""
    reward: str | None
    """RL: the reward model (None for a reward function, which holds no model)."""
    micro_rows: int
    """Sequences per forward/backward pass (reward stage: 2 per pair)."""
    micro_divides: int
    """The micro-batch must divide this many sequences (a minibatch, or a process's batch)."""
    seq_len: int
    """Tokens per trained sequence: prompt + response (RL) or data.max_length."""
    logit_positions: int
    """Positions with full-vocabulary logits per trained sequence (0 for a classifier)."""
    rollout_rows: int = 0
    """RL: sequences per generation and scoring pass (train.rollout_batch_size or all)."""
    reward_rows: int = 0
    """RL: sequences per reward-model forward: the rollout batch, cut into the scorer's
    batches of max(8, train.batch_size) (`rl.setup`)."""
    prompt_tokens: int = 0
    new_tokens: int = 0
    reward_max_length: int | None = None
    eval_rows: int = 0
    """Supervised stages: sequences per evaluation forward pass."""
    lora_r: int = 0
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_value: bool = True
    quantize: str = "none"
    lora_merge: bool = True
    """With LoRA: the final model is also written merged, from a merged copy of each model."""
    checkpointing: bool = False
    shared_value: bool = False
    """PPO: one backbone with the LM head and a scalar value head."""
    value_init: str = "policy"
    """PPO: 'policy', 'reward' or 'auto' (`model.value_init`): which model the value model
    copies."""
    kl_reference: bool = True
    """RL: the run compares the policy to a frozen reference (critic-free kl_penalty=none
    does not)."""
    reference: str = "none"
    """DPO: how each step gets the reference's log-probs: 'precompute' (a table made once
    before training), 'on_the_fly' (a forward every micro-batch) or 'none' (reference-free)."""
    reference_model: str | None = None
    """DPO: model.reference (None: the policy as loaded)."""
    trust_remote_code: bool = False

    @property
    def is_rl(self) -> bool:
        return self.stage in RL_STAGES


def resolve_precision(mixed_precision: str, device: str) -> str:
    """`run.mixed_precision` as the run resolves it: 'auto' is bf16 on a GPU, fp32 on a CPU
    (the plan assumes a GPU with bf16)."""
    if mixed_precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return "fp32" if mixed_precision == "no" else mixed_precision


def workload_from_config(stage: str, cfg, processes: int = 1, device: str = "cpu") -> Workload:
    """The workload of a loaded stage config (`rlhf.config.load_config`) on `processes`
    processes; a batch that does not split over them is refused by the config's own check."""
    common = {"stage": stage, "processes": processes, "device": device,
              "precision": resolve_precision(cfg.run.mixed_precision, device),
              "lora_r": cfg.lora.r, "lora_targets": tuple(cfg.lora.target_modules),
              "quantize": cfg.lora.quantize, "lora_merge": cfg.lora.merge,
              "checkpointing": cfg.train.gradient_checkpointing}
    if stage in RL_STAGES:
        return _rl_workload(stage, cfg, processes, common)
    micro, _ = cfg.train.micro_batches_per_step(processes)
    per_process = cfg.train.batch_size // processes
    responses = 2 if stage in PAIR_STAGES else 1  # a pair: chosen and rejected in one pass
    dpo = {}
    if stage == "dpo":
        dpo = {"reference": cfg.dpo.reference_logprobs if cfg.dpo.needs_reference else "none",
               "reference_model": cfg.model.reference}
    return Workload(
        **common, trained=cfg.model.name_or_path, reward=None,
        micro_rows=responses * micro, micro_divides=responses * per_process,
        seq_len=cfg.data.max_length,
        logit_positions=0 if stage == "reward" else cfg.data.max_length,
        eval_rows=responses * cfg.train.eval_batch_size,
        trust_remote_code=cfg.model.trust_remote_code, **dpo)


def _rl_workload(stage: str, cfg, processes: int, common: dict) -> Workload:
    per_process, per_minibatch, micro = cfg.batch_split(processes)
    ppo = stage == "ppo"
    rollout = min(cfg.train.rollout_batch_size or per_process, per_process)
    return Workload(
        **common, trained=cfg.model.policy,
        reward=None if is_reward_function(cfg.model.reward) else cfg.model.reward,
        micro_rows=micro, micro_divides=per_minibatch,
        seq_len=cfg.data.max_prompt_tokens + cfg.generate.max_new_tokens,
        logit_positions=cfg.generate.max_new_tokens,
        rollout_rows=rollout,
        reward_rows=min(rollout, max(8, cfg.train.batch_size)),
        prompt_tokens=cfg.data.max_prompt_tokens,
        new_tokens=cfg.generate.max_new_tokens, reward_max_length=cfg.model.reward_max_length,
        lora_value=cfg.lora.value if ppo else True,
        shared_value=ppo and cfg.model.value == "shared",
        value_init=cfg.model.value_init if ppo else "policy",
        kl_reference=ppo or cfg.algo.kl_penalty != "none",
        trust_remote_code=cfg.model.trust_remote_code)
