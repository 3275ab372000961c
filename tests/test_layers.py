"""The house's rules, checked on the source: who may import whom, and how large things grow.

Layers, lowest first (docs/design.md): a module imports only from layers below its own, or
from its own package. `algo/` is pure torch; `config/` only the standard library, OmegaConf
and `errors`; `report/` draws from files and never imports torch or the training code; no
stage imports `report/` (the command that runs a stage writes its report afterwards).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rlhf"
LAYERS = [
    {"errors"},
    {"algo", "config", "seeding", "precision"},
    {"data"},
    {"builtin_models", "adapters", "planning"},
    {"models", "saving", "trainable"},
    {"engine", "reward", "value_models"},
    {"rl"},
    {"stages", "report"},
    {"commands", "demo"},
    {"cli_arguments"},
    {"cli_tools"},
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ONLY = {  # a package -> the only modules outside itself it may import
    "algo": {"torch"},
    "config": {"omegaconf", "rlhf.errors"},
    "report": {"matplotlib", "numpy", "yaml", "rlhf.errors"},
}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def unit(path: Path) -> str:
    """The layer name of a source file: its top-level package or module under rlhf/."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a file, relative imports resolved."""
    found = []
    package = ".".join(("rlhf", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.append((node.lineno, base))
    return found


def test_every_source_file_belongs_to_a_layer() -> None:
    units = {unit(path) for path in modules()} - {"__init__"}
    assert units <= set(RANK), f"add to LAYERS in tests/test_layers.py: {units - set(RANK)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path) -> None:
    own = unit(path)
    for line, module in imports(path):
        where = f"{path.relative_to(SRC)}:{line} imports {module}"
        top = module.split(".")[0]
        if own in ONLY and top != "rlhf" and top not in STDLIB:
            assert any(module == m or module.startswith(m + ".") for m in ONLY[own]), where
        if top != "rlhf" or module == "rlhf":
            continue
        target = module.split(".")[1]
        if own in ONLY:
            assert target == own or module in ONLY[own] or any(
                module.startswith(m + ".") for m in ONLY[own]), where
        if target != own and own != "__init__":
            assert RANK[target] < RANK[own], f"{where}: a layer above or beside its own"


def test_no_stage_imports_the_report_or_another_stage() -> None:
    for path in (SRC / "stages").rglob("*.py"):
        stage = "rlhf." + ".".join(path.relative_to(SRC).with_suffix("").parts[:2])
        for line, module in imports(path):
            assert not module.startswith("rlhf.report"), f"{path}:{line} imports {module}"
            if module.startswith("rlhf.stages."):
                assert module.startswith(stage), f"{path}:{line}: another stage, {module}"


def test_sizes() -> None:
    """No library file over 400 lines, no function over 60 (docstring included)."""
    too_long = []
    for path in modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: "
                                    f"{length} lines")
    assert not too_long, too_long


def test_the_rule_catches_an_upward_import(tmp_path: Path, monkeypatch) -> None:
    """The check itself can fail: a data module importing a stage is caught."""
    fake = tmp_path / "rlhf"
    (fake / "data").mkdir(parents=True)
    bad = fake / "data" / "bad.py"
    bad.write_text("from rlhf.stages.sft import train_sft\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    with pytest.raises(AssertionError, match="a layer above or beside its own"):
        test_imports_follow_the_layers(bad)
