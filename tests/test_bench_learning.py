"""`benchmarks/learning.py --quick` (the gold-reward benchmark of issue 17, one proxy, one seed,
PPO and best-of-n) runs end to end and writes finite points, a table and a plot. Extended: it
takes a minute or two, beyond `make test`'s budget."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.extended

ROOT = Path(__file__).resolve().parents[1]


def _numbers(value):
    """Every float in a nested structure of dicts and lists."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, float):
        yield value


def test_quick_learning_benchmark_writes_finite_points(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--quick",
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("learning_points.json", "learning_table.md", "ppo.png"):
        assert (out / name).is_file(), name
    assert (out / "ppo.png").read_bytes().startswith(b"\x89PNG")
    data = json.loads((out / "learning_points.json").read_text())
    runs = data["runs"]
    assert [run["method"] for run in runs] == ["ppo"]
    points = runs[0]["points"]
    assert len(points) >= 2 and points[0]["step"] == 0 and points[0]["kl"] == 0.0
    best_of_n = data["best_of_n"]["250"]
    assert [p["n"] for p in best_of_n] == [1, 2, 4, 8]
    for value in _numbers(data):
        assert math.isfinite(value)
    for point in points + best_of_n:
        assert {"sqrt_kl", "gold", "proxy"} <= set(point)
    table = (out / "learning_table.md").read_text()
    assert "| ppo | 250 |" in table and "| best_of_n | 250 |" in table
