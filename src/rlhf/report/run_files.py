"""Reading a run directory: metrics.jsonl, samples.jsonl, eval_scores.json, config.yaml and
saved model configs; which stage wrote it; a pipeline's stage runs in order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlhf.errors import UserError

STAGE_ORDER = ("sft", "reward", "ppo", "critic_free", "dpo", "run")
SAMPLING_STAGES = ("ppo", "critic_free")
"""Stages that sample responses from a policy: a score headline and a samples.jsonl section."""


@dataclass
class StageRun:
    """One run directory and what it is."""

    stage: str
    path: Path
    records: list[dict]


def is_number(value) -> bool:
    """A logged numeric value (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_jsonl(path: Path) -> list[dict]:
    """Every JSON object of a JSONL file; a bad line is a UserError naming file and line."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number} is not valid JSON ({error.msg}); fix or "
                                "delete that line and run `rlhf report` again") from None
            if isinstance(row, dict):
                rows.append(row)
    return rows


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Every line of a run's metrics.jsonl, in order (what the PNG files are drawn from)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_config(run_dir: Path) -> dict:
    """config.yaml as a dict ({} when missing or unreadable: the report still shows the text)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def model_architectures(folder: Path) -> list[str]:
    """The `architectures` of a saved model folder's config.json ([] when unreadable)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(a) for a in config.get("architectures") or []]


def read_eval_scores(run_dir: Path) -> dict[str, list[float]]:
    """eval_scores.json of a reward run ({} when missing or not a dict of score lists)."""
    path = run_dir / "eval_scores.json"
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(scores, dict):
        return {}
    return {str(label): [float(v) for v in values if is_number(v)]
            for label, values in scores.items() if isinstance(values, list) and values}


def detect_stage(run_dir: str | Path, records: list[dict] | None = None) -> str:
    """'critic_free', 'dpo', 'ppo', 'reward', 'sft' or 'run' (generic), from the run's config,
    files and metrics. Critic-free runs are told apart first: they also write samples.jsonl and
    policy/, so the PPO test alone would claim them; DPO runs before reward runs, whose
    eval_scores.json they share."""
    run_dir = Path(run_dir)
    records = read_jsonl(run_dir / "metrics.jsonl") if records is None else records
    config = read_config(run_dir)
    keys = {key for record in records for key in record}
    if "algo" in config or any(key.startswith("group/") for key in keys):
        return "critic_free"
    if "dpo" in config or any(key.endswith("/chosen_reward") for key in keys):
        return "dpo"
    if ("ppo" in config or (run_dir / "samples.jsonl").is_file()
            or (run_dir / "policy").is_dir() or "objective/score" in keys):
        return "ppo"
    architectures = model_architectures(run_dir / "model")
    if ((run_dir / "eval_scores.json").is_file()
            or any(a.endswith("ForSequenceClassification") for a in architectures)
            or any(key.endswith(("/margin_mean", "/chosen_mean")) for key in keys)):
        return "reward"
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures):
        return "sft"
    return _stage_from_name(run_dir.name)


def _stage_from_name(name: str) -> str:
    """The stage a folder is named after (`critic-free` too), else 'run': the last resort
    for a run that has logged nothing telling yet."""
    name = name.replace("-", "_")
    return name if name in STAGE_ORDER else "run"


def find_stage_runs(run_dir: str | Path) -> list[StageRun]:
    """The run itself, or a pipeline's stage runs in pipeline order; UserError when neither."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"run directory {run_dir} does not exist; give the run.output_dir of "
                        "a training run or the output folder of `rlhf demo`")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; give the run directory that holds "
                        "metrics.jsonl")
    if (run_dir / "metrics.jsonl").is_file():
        records = read_jsonl(run_dir / "metrics.jsonl")
        return [StageRun(detect_stage(run_dir, records), run_dir, records)]
    stages = []
    for child in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if (child / "metrics.jsonl").is_file():
            records = read_jsonl(child / "metrics.jsonl")
            stages.append(StageRun(detect_stage(child, records), child, records))
    if not stages:
        raise UserError(f"{run_dir} holds no metrics.jsonl and no stage folders with one "
                        "(e.g. RUN/reward/metrics.jsonl); give a directory written by "
                        "`rlhf train-*` or `rlhf demo`")
    return sorted(stages, key=lambda s: (STAGE_ORDER.index(s.stage), s.path.name))


def read_demo_summary(root: Path) -> object:
    """demo_summary.json of a pipeline folder as loaded ({} when missing or unreadable)."""
    try:
        return json.loads((root / "demo_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
