"""The plan as text: the per-model table, the passes, the peak, the advice, and the few lines a
run prints when it starts (`plan_lines`)."""

from __future__ import annotations

from pathlib import Path

from rlhf.planning.advice import Advice
from rlhf.planning.plan import MemoryPlan
from rlhf.planning.workload import Workload

COLUMNS = ("model", "name", "params", "trainable", "weights", "gradients", "optimizer",
           "activations", "no-grad pass")


def format_bytes(n: float) -> str:
    """'512 MiB', '6.51 GiB'."""
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    return f"{n / 2**20:.0f} MiB"


def format_count(n: int) -> str:
    """'124.4M', '1.20B', '16.4k', '0'."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.{2 if suffix == 'B' else 1}f}{suffix}"
    return str(n)


def _short(name: str) -> str:
    """A local path by its last component; hub and builtin names as they are."""
    return Path(name).name if name.startswith((".", "/", "~")) else name


def describe_workload(workload: Workload) -> str:
    """One line: stage, processes, device, precision, batch and lengths."""
    head = (f"{workload.stage}, {workload.processes} process"
            f"{'es' if workload.processes > 1 else ''}, {workload.device}, "
            f"{workload.precision}; per process: micro-batch {workload.micro_rows} x "
            f"{workload.seq_len} tokens")
    if workload.is_rl:
        head += (f", rollout batch {workload.rollout_rows} ({workload.prompt_tokens} prompt + "
                 f"{workload.new_tokens} new tokens)")
    options = [f"LoRA r={workload.lora_r}" + (" 4-bit" if workload.quantize == "4bit" else "")
               ] if workload.lora_r else []
    options += ["gradient checkpointing"] if workload.checkpointing else []
    options += ["shared value head"] if workload.shared_value else []
    return head + (f"; {', '.join(options)}" if options else "")


def plan_table(plan: MemoryPlan) -> list[str]:
    """The per-model table (markdown), the process baseline and the totals."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for m in plan.models:
        cells = [m.role, _short(m.name) + (f" ({m.note})" if m.note else ""),
                 format_count(m.params), format_count(m.trainable), format_bytes(m.weights),
                 *(format_bytes(b) if b else "-" for b in (m.gradients, m.optimizer,
                                                          m.activations, m.forward))]
        lines.append("| " + " | ".join(cells) + " |")
    process = "CUDA context" if plan.workload.device == "cuda" else "Python, torch, transformers"
    lines.append(f"| process | {process} | | | {format_bytes(plan.baseline)} | | | | |")
    total = [sum(getattr(m, key) for m in plan.models)
             for key in ("params", "trainable", "weights", "gradients", "optimizer")]
    lines.append(f"| total | | {format_count(total[0])} | {format_count(total[1])} | "
                 f"{format_bytes(total[2] + plan.baseline)} | {format_bytes(total[3])} | "
                 f"{format_bytes(total[4])} | | |")
    return lines


def plan_text(plan: MemoryPlan) -> list[str]:
    """The whole plan: workload, table, passes and the peak."""
    lines = [f"memory plan: {describe_workload(plan.workload)}", "", *plan_table(plan), "",
             f"held for the whole run (baseline, weights, optimizer state): "
             f"{format_bytes(plan.held)}; then, one pass at a time:"]
    width = max(len(phase.name) for phase in plan.phases)
    for phase in plan.phases:
        mark = "  <- peak" if phase is plan.peak_phase else ""
        parts = ", ".join(f"{name} {format_bytes(size)}" for name, size in phase.parts)
        lines.append(f"  {phase.name:<{width}}  +{format_bytes(phase.bytes):>10}  "
                     f"{phase.what}{f' ({parts})' if parts else ''}{mark}")
    lines.append(f"predicted peak: {format_bytes(plan.peak)} per process "
                 f"({plan.peak_phase.name})")
    return lines


def advice_text(advice: Advice) -> list[str]:
    """The budget verdict and the options, each with its predicted peak."""
    budget, peak = format_bytes(advice.budget), advice.plan.peak
    if advice.fits:
        head = [f"fits in {budget}: peak {format_bytes(peak)}, "
                f"{format_bytes(advice.budget - peak)} to spare"]
    else:
        head = [f"does not fit in {budget}: peak {format_bytes(peak)}, "
                f"{format_bytes(peak - advice.budget)} over"]
    if advice.fits or not advice.options:
        return head
    lines = head + ["options, each alone (predicted peak):"]
    width = max(len(" ".join(o.overrides)) for o in advice.options)
    for option in advice.options:
        verdict = "fits" if option.peak <= advice.budget else "does not fit"
        lines.append(f"  {' '.join(option.overrides):<{width}}  {format_bytes(option.peak):>10}"
                     f"  {verdict}")
    if advice.combined is not None:
        together = " ".join(advice.combined.overrides)
        verdict = "fits" if advice.combined.peak <= advice.budget else \
            "still does not fit: more memory or more processes needed"
        lines.append(f"together: {together}  -> {format_bytes(advice.combined.peak)}, {verdict}")
    return lines


def summary_lines(plan: MemoryPlan) -> list[str]:
    """Two lines for the start of a run: the peak and its parts, and the models."""
    held_weights = sum(m.weights for m in plan.models)
    optimizer = sum(m.optimizer for m in plan.models)
    phase = plan.peak_phase
    first = (f"[plan] predicted peak memory {format_bytes(plan.peak)} per process "
             f"({plan.workload.device}, {plan.workload.precision}) during {phase.name}: "
             f"baseline {format_bytes(plan.baseline)} + weights {format_bytes(held_weights)} "
             f"+ optimizer {format_bytes(optimizer)} + {phase.name} {format_bytes(phase.bytes)}")
    models = ", ".join(f"{m.role} {format_count(m.params)}"
                       + (f" ({format_count(m.trainable)} trained)" if m.trainable else "")
                       for m in plan.models if m.params)
    return [first, f"[plan] models: {models}; details: rlhf plan --config FILE"]
