"""`pip install .` then `rlhf demo --quick` from another directory: the package carries what it
needs (the demo's configs, the report's CSS) and never reads the source checkout; and the
reduced demo shows what the demo must show (the command exits 2 when it does not: see
`rlhf.demo.DemoResult.failures`). One run serves both checks: the quick demo is the suite's
longest test.

The fresh environment gets its dependencies (torch, transformers, ...) from the test's own
environment through a path file, so nothing is downloaded; `rlhf` itself is built from the
checkout into a wheel and installed for real. The test checks that the `rlhf` it runs is the
installed copy, not the checkout's `src/`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from rlhf.demo import MIN_DISTINCT_FRACTION, MIN_GOLD_GAIN_IN_STD

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def site_packages(environment: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(environment),
                                                    "platbase": str(environment)}))


def test_installed_package_runs_the_reduced_demo_from_another_directory(tmp_path: Path) -> None:
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=False)
    # Dependencies from this environment: its site-packages as a plain path entry (a line of a
    # .pth file is added to sys.path, the .pth files inside it, the checkout's editable
    # install among them, are not processed).
    (site_packages(fresh) / "dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    python = fresh / "bin" / "python"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-build-isolation", "--no-cache-dir", str(ROOT)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    where = subprocess.run([str(python), "-c", "import rlhf; print(rlhf.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.returncode == 0 and Path(where.stdout.strip()).is_relative_to(fresh), where
    demo = subprocess.run([str(fresh / "bin" / "rlhf"), "demo", "--quick", "--output-dir",
                           "demo"], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=900)
    assert demo.returncode == 0, demo.stderr[-3000:]
    out = elsewhere / "demo"
    assert (out / "ppo" / "report.html").is_file() and (out / "before_after.jsonl").is_file()
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["gold_gain_in_reference_std"] >= MIN_GOLD_GAIN_IN_STD
    assert summary["distinct_fraction"] >= MIN_DISTINCT_FRACTION
    html = (out / "report.html").read_text(encoding="utf-8")
    for section in ('id="sft"', 'id="reward"', 'id="ppo"', 'id="dpo"', 'id="before-after-dpo"'):
        assert section in html
    images = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', html)
    assert images and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "gold gain" in html and "eval/reward" in html  # gold in the summary and the curves
