"""Memory plans: a run's peak memory per model and in total, predicted from its config before
any weight is loaded, and the options that make it fit a budget (`rlhf plan`).

`shapes` reads each model's size from its config (built on the meta device), `lora` counts
adapters by peft's rules, `arithmetic` holds the byte counts of each component, `workload` turns
a stage config into plain numbers, `plan` adds them up per model and per pass, `advice`
tries the options against a budget, `report` prints, `inputs` parses `--memory` and finds the
stage, `command` is what the CLI and a starting run call.
"""

from rlhf.planning.command import plan_config, plan_lines, plan_report
from rlhf.planning.workload import STAGE_NAMES

__all__ = ["STAGE_NAMES", "plan_config", "plan_lines", "plan_report"]
