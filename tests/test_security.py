"""Security: nothing a user passes in is unpickled, remote code stays off unless a config turns
it on, and a run writes nowhere but its run.output_dir."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import torch

from rlhf.cli import main
from rlhf.config import PPOModelConfig, RewardModelConfig, SFTModelConfig

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "rlhf").rglob("*.py"))


def calls(name: str):
    """(file, call node) for every call of `name` in the package: a dotted name matches
    `x.torch.load` too; a bare one (`eval`) only the builtin, not `model.eval()`."""
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                target = ast.unparse(node.func)
                if target == name or ("." in name and target.endswith("." + name)):
                    yield path.name, node


def test_every_torch_load_is_weights_only() -> None:
    loads = list(calls("torch.load"))
    assert loads, "the checkpoint code loads optimizer state with torch.load"
    for filename, node in loads:
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert keywords.get("weights_only") == "True", f"{filename}: {ast.unparse(node)}"


@pytest.mark.parametrize("name", ["pickle.load", "pickle.loads", "joblib.load", "dill.load",
                                  "numpy.load", "np.load", "eval", "exec"])
def test_no_unpickling_or_eval_anywhere(name: str) -> None:
    assert not list(calls(name))


def test_trust_remote_code_is_never_hard_wired_on_and_defaults_off() -> None:
    for filename, node in calls("from_pretrained"):
        for keyword in node.keywords:
            if keyword.arg == "trust_remote_code":
                assert ast.unparse(keyword.value) != "True", filename
    for section in (RewardModelConfig, PPOModelConfig, SFTModelConfig):
        assert section.__dataclass_fields__["trust_remote_code"].default is False


@pytest.mark.slow
def test_a_crafted_optimizer_pickle_is_refused_without_running_it(tmp_path: Path,
                                                                  capfd) -> None:
    """A checkpoint whose optimizer file is a pickle that would run code on load."""
    out, marker = tmp_path / "run", tmp_path / "pwned"
    argv = ["train-reward", "--config", str(ROOT / "configs/reward/tiny.yaml"),
            f"run.output_dir={out}", "run.progress=false", "train.max_steps=2",
            "data.max_samples=100"]
    assert main(argv) == 0

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state": Payload()}, out / "checkpoint-2" / "optimizer-model.pt")
    capfd.readouterr()
    assert main([*argv, "run.resume=true"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint" in err[0] and "cannot be read" in err[0], err
    assert not marker.exists()


@pytest.mark.slow
def test_custom_model_code_is_not_run_without_trust_remote_code(tmp_path: Path,
                                                                capfd) -> None:
    """A model folder whose config points at its own Python code (auto_map)."""
    folder, marker = tmp_path / "custom", tmp_path / "pwned"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "sneaky", "auto_map": {"AutoConfig": "configuration_sneaky.SneakyConfig",
                                             "AutoModelForCausalLM": "modeling_sneaky.Sneaky"}}))
    code = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    (folder / "configuration_sneaky.py").write_text(code)
    (folder / "modeling_sneaky.py").write_text(code)
    capfd.readouterr()
    status = main(["train-sft", "--config", str(ROOT / "configs/sft/tiny.yaml"),
                   f"run.output_dir={tmp_path / 'run'}", f"model.name_or_path={folder}"])
    assert status == 2, capfd.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_writes_only_inside_its_output_dir(tmp_path: Path, monkeypatch) -> None:
    """Run from an empty working directory: afterwards, everything new is under output_dir."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    before = set(tmp_path.rglob("*"))
    argv = ["train-reward", "--config", str(ROOT / "configs/reward/tiny.yaml"),
            "run.output_dir=runs/r", "run.progress=false", "train.max_steps=2",
            "data.max_samples=100"]
    assert main(argv) == 0
    new = set(tmp_path.rglob("*")) - before
    output_dir = workdir / "runs" / "r"
    outside = [p for p in new if output_dir not in (p, *p.parents)
               and p not in (workdir / "runs",)]
    assert not outside, outside
    assert os.listdir(workdir) == ["runs"]
