"""Which options make a run fit a memory budget, each with its predicted peak.

Each option is a change a user makes with `key=value` overrides: gradient checkpointing, LoRA
(4-bit QLoRA on a GPU), PPO's shared value head, a smaller micro-batch or rollout batch, bf16
autocast on a GPU. Each is planned alone on the current workload; when none fits alone, the
options are combined greedily (the one that lowers the peak most first) until the run fits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rlhf.planning.plan import MemoryPlan, Shapes, memory_plan
from rlhf.planning.workload import PAIR_STAGES, Workload

LORA_RANK = 16
"""The rank the advice proposes (a common default; QLoRA used 64 on far larger models)."""


@dataclass(frozen=True)
class Option:
    """A change to the run: its overrides, the changed workload and its plan."""

    overrides: tuple[str, ...]
    workload: Workload
    plan: MemoryPlan

    @property
    def peak(self) -> int:
        return self.plan.peak


@dataclass(frozen=True)
class Advice:
    budget: int
    plan: MemoryPlan
    """The plan as configured."""
    options: tuple[Option, ...]
    """Each option alone, lowest peak first."""
    combined: Option | None
    """Options together when none fits alone (None when one does, or the run fits)."""

    @property
    def fits(self) -> bool:
        return self.plan.peak <= self.budget


def advise(workload: Workload, shapes: Shapes, budget: int) -> Advice:
    """The plan of `workload` against `budget` bytes, and the options that change it."""
    plan = memory_plan(workload, shapes)
    options = sorted((o for o in _options(workload, shapes, budget) if o.peak < plan.peak),
                     key=lambda option: option.peak)
    combined = None
    if plan.peak > budget and not any(o.peak <= budget for o in options):
        combined = _combine(workload, shapes, budget)
    return Advice(budget, plan, tuple(options), combined)


def _option(workload: Workload, shapes: Shapes, overrides: tuple[str, ...], **changes) -> Option:
    changed = replace(workload, **changes)
    return Option(overrides, changed, memory_plan(changed, shapes))


def _switches(workload: Workload) -> list[tuple[tuple[str, ...], dict]]:
    """(overrides, workload changes) of the on/off options that apply to this workload."""
    found = []
    if not workload.checkpointing:
        found.append((("train.gradient_checkpointing=true",), {"checkpointing": True}))
    if not workload.lora_r:
        found.append(((f"lora.r={LORA_RANK}",), {"lora_r": LORA_RANK}))
        if workload.device == "cuda":
            found.append(((f"lora.r={LORA_RANK}", "lora.quantize=4bit"),
                          {"lora_r": LORA_RANK, "quantize": "4bit"}))
    elif workload.quantize == "none" and workload.device == "cuda":
        found.append((("lora.quantize=4bit",), {"quantize": "4bit"}))
    if workload.stage == "ppo" and not workload.shared_value:
        found.append((("model.value=shared",), {"shared_value": True}))
    if workload.device == "cuda" and workload.precision == "fp32":
        found.append((("run.mixed_precision=bf16",), {"precision": "bf16"}))
    return found


def _sizes(workload: Workload) -> list[tuple[str, int, Callable[[int], dict]]]:
    """(key, candidate values largest first, workload change) of the batch-size options."""
    per_example = 2 if workload.stage in PAIR_STAGES else 1  # reward and DPO count pairs
    current = workload.micro_rows // per_example
    examples = workload.micro_divides // per_example
    micro = [n for n in range(current - 1, 0, -1) if examples % n == 0]
    found = [("train.micro_batch_size", micro, lambda n: {"micro_rows": n * per_example})]
    if workload.is_rl:
        rollout = list(range(workload.rollout_rows - 1, 0, -1))
        found.append(("train.rollout_batch_size", rollout,
                      lambda n: {"rollout_rows": n, "reward_rows": min(n, workload.reward_rows)}))
    return found


def _options(workload: Workload, shapes: Shapes, budget: int) -> list[Option]:
    """Each option alone; a batch size at the largest value that fits (else its smallest)."""
    options = [_option(workload, shapes, overrides, **changes)
               for overrides, changes in _switches(workload)]
    for key, values, change in _sizes(workload):
        chosen = None
        for value in values:
            chosen = _option(workload, shapes, (f"{key}={value}",), **change(value))
            if chosen.peak <= budget:
                break
        if chosen is not None:
            options.append(chosen)
    return options


def _combine(workload: Workload, shapes: Shapes, budget: int) -> Option | None:
    """Options applied one after another, the one that lowers the peak most first, until the
    run fits or nothing lowers it further."""
    current, overrides = workload, ()
    best = None
    while True:
        options = [o for o in _options(current, shapes, budget)
                   if best is None or o.peak < best.peak]
        if not options:
            return best
        step = min(options, key=lambda option: option.peak)
        overrides = _merged(overrides, step.overrides)
        current = step.workload
        best = Option(overrides, current, step.plan)
        if best.peak <= budget:
            return best


def _merged(overrides: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    """Overrides with `new` replacing earlier values of the same keys."""
    keys = {item.split("=", 1)[0] for item in new}
    return tuple(item for item in overrides if item.split("=", 1)[0] not in keys) + new
