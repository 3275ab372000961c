"""`rlhf plan` and the lines a run prints when it starts: a loaded config in, text out."""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.config import load_config
from rlhf.config.docs import STAGES
from rlhf.errors import UserError, first_line
from rlhf.planning.advice import advise
from rlhf.planning.inputs import detect_stage, parse_memory
from rlhf.planning.plan import MemoryPlan, memory_plan, read_shapes
from rlhf.planning.report import advice_text, plan_text, summary_lines
from rlhf.planning.workload import STAGE_NAMES, workload_from_config


def default_device() -> str:
    """'cuda' where torch sees a GPU, else 'cpu' (what a run on this machine would use)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_planned(stage: str) -> None:
    if stage not in STAGE_NAMES:
        raise UserError(f"rlhf plan does not cover the {stage} stage yet; it covers "
                        f"{', '.join(STAGE_NAMES)}")


def plan_config(stage: str, cfg, num_processes: int = 1, device: str | None = None
                ) -> MemoryPlan:
    """The memory plan of a loaded `stage` config on `num_processes` processes on `device`
    ('cpu', 'cuda' or a torch device such as 'cuda:0'; None: this machine's)."""
    _check_planned(stage)
    device = (device or default_device()).split(":")[0]
    workload = workload_from_config(stage, cfg, num_processes, device)
    return memory_plan(workload, read_shapes(workload))


def plan_lines(stage: str, cfg, num_processes: int = 1, device: str | None = None
               ) -> list[str]:
    """A few lines for the start of a run: the predicted peak per process and its parts, and
    the models. A plan that cannot be made (a model config that cannot be read, a model family
    the shapes do not know) says so in one line: a prediction never stops the run it is for."""
    try:
        return summary_lines(plan_config(stage, cfg, num_processes, device))
    except Exception as error:  # noqa: BLE001 (advice only; the run reports real errors)
        return [f"[plan] no memory plan: {first_line(error)}"]


def plan_report(path: str | Path | None, overrides: list[str] = (), *, stage: str | None = None,
                memory: str | None = None, device: str | None = None,
                num_processes: int = 1) -> str:
    """What `rlhf plan` prints: the plan of the config at `path` with `overrides` for
    `stage` (detected from the keys when None) and, given a `memory` budget such as '24GB',
    the options that make it fit."""
    budget = parse_memory(memory) if memory is not None else None  # a typo fails first
    stage = stage or detect_stage(path, list(overrides))
    _check_planned(stage)
    cfg = load_config(STAGES[stage], path, list(overrides))
    device = (device or default_device()).split(":")[0]
    workload = workload_from_config(stage, cfg, num_processes, device)
    shapes = read_shapes(workload)
    plan = memory_plan(workload, shapes)
    lines = plan_text(plan)
    if budget is not None:
        lines += ["", *advice_text(advise(workload, shapes, budget))]
    return "\n".join(lines) + "\n"
