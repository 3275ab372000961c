"""Metric sinks besides metrics.jsonl (`run.report_to`): TensorBoard and W&B through
accelerate's trackers, each writing inside the run directory."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.tracking import TensorBoardTracker, WandBTracker
from omegaconf import OmegaConf

from rlhf.errors import UserError, first_line


def make_trackers(sinks: list[str], output_dir: Path, stage: str) -> list:
    """accelerate trackers for run.report_to, each writing inside the run directory:
    TensorBoard event files in RUN/tensorboard/, the W&B run folder in RUN/wandb/.

    Made here rather than named ("tensorboard") so that each gets its own place and name:
    accelerate would give both the one project name, a TensorBoard folder and a W&B project.
    The W&B run is named after the run directory, in project $WANDB_PROJECT (else "rlhf"),
    with the stage as its job type.
    """
    made = []
    for sink in sinks:
        if sink == "tensorboard":
            made.append(TensorBoardTracker("tensorboard", str(output_dir)))  # RUN/tensorboard
        else:
            made.append(WandBTracker(os.environ.get("WANDB_PROJECT") or "rlhf",
                                     dir=str(output_dir), name=output_dir.resolve().name,
                                     job_type=stage))
    return made


def start_trackers(accelerator: Accelerator, config: Any) -> None:
    """Start the trackers and give each the resolved config in the form it can show: W&B the
    nested config; TensorBoard's hparams only flat scalars (it rejects lists and mappings),
    written beside the metrics so that TensorBoard shows one run, not a second timestamped one.
    """
    try:
        accelerator.init_trackers("rlhf")
    except Exception as error:  # W&B's own errors (no API key, ...) are the user's to fix
        if type(error).__module__.split(".")[0] != "wandb":
            raise
        raise UserError(f"run.report_to: W&B could not start ({first_line(error)}); run "
                        "`wandb login`, or set WANDB_MODE=offline to keep the run on disk "
                        "(RUN/wandb/, upload later with `wandb sync`)") from None
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_hparams(flat_config(config), {}, run_name=".")
        else:
            tracker.store_init_configuration(OmegaConf.to_container(OmegaConf.structured(config)))


def check_sinks_installed(sinks: list[str]) -> None:
    """A missing tracker package is a set-up mistake the user can fix, said before any work."""
    for sink in sinks:
        module = {"tensorboard": "tensorboard", "wandb": "wandb"}[sink]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"run.report_to includes '{sink}' but the package is not installed; "
                            f"pip install 'rlhf[{sink}]' or remove it from run.report_to")


def flat_config(config: Any) -> dict[str, Any]:
    """Config as flat scalars for trackers (TensorBoard hparams reject nested values)."""
    flat = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix.rstrip(".")] = node if isinstance(node, (int, float, str, bool)) \
                else str(node)

    walk("", OmegaConf.to_container(OmegaConf.structured(config)))
    return flat
