"""The reduced demo: the same code path as `rlhf demo`, smaller sizes (marked slow)."""

import base64
import re
from pathlib import Path

import pytest

from rlhf.demo import (
    MIN_DISTINCT_FRACTION,
    MIN_GOLD_GAIN_IN_STD,
    MIN_REWARD_ACCURACY,
    run_demo,
)

pytestmark = pytest.mark.slow


def test_reduced_demo_shows_what_the_demo_must_show(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", quick=True)
    assert result.failures() == []
    assert result.reward_accuracy >= MIN_REWARD_ACCURACY
    assert result.gold_gain_in_std >= MIN_GOLD_GAIN_IN_STD
    assert result.kl_mean < result.kl_target
    assert result.distinct_fraction >= MIN_DISTINCT_FRACTION
    html = result.report.read_text(encoding="utf-8")
    for section in ('id="sft"', 'id="reward"', 'id="ppo"', 'id="dpo"', 'id="before-after-dpo"'):
        assert section in html
    images = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', html)
    assert images and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert (tmp_path / "demo" / "before_after.jsonl").is_file()
    assert "gold gain" in html and "eval/reward" in html  # gold in the summary and the curves
