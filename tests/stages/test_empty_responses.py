"""A run does not stop at a preference row whose response is empty (UltraFeedback-binarized has
rows whose rejected assistant message is ""): train-reward and eval-reward keep and count them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf.cli import main
from rlhf.config import RewardConfig, load_config
from rlhf.stages.reward import train_reward

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parents[2] / "configs" / "reward" / "tiny.yaml"


def ultrafeedback_rows(n: int) -> list[dict]:
    """UltraFeedback-binarized rows: a prompt string, chosen/rejected message lists; every
    fourth rejected answer is empty, and one chosen answer too."""
    rows = []
    for i in range(n):
        user = {"role": "user", "content": f"Describe scene {i}."}
        rejected = "" if i % 4 == 0 else f"There was a scene {i}."
        chosen = "" if i == 1 else f"Gulls wheeled over the silver water of scene {i}."
        rows.append({"prompt": user["content"],
                     "chosen": [user, {"role": "assistant", "content": chosen}],
                     "rejected": [user, {"role": "assistant", "content": rejected}]})
    return rows


def test_train_and_eval_reward_keep_rows_with_an_empty_response(tmp_path: Path,
                                                                capsys) -> None:
    path = tmp_path / "ultrafeedback.jsonl"
    rows = ultrafeedback_rows(40)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "run"
    cfg = load_config(RewardConfig, TINY, [f"run.output_dir={out}", "run.progress=false",
                                           f"data.path={path}", "data.test_fraction=0.2",
                                           "train.epochs=1", "run.eval_every=0"])
    metrics = train_reward(cfg)
    assert metrics["eval/examples"] == 8
    announced = capsys.readouterr().out
    train_empty = int(announced.split("train_empty_responses=")[1].split(",")[0])
    assert 0 < train_empty <= 11  # 10 empty rejected + 1 empty chosen, some held out
    saved = json.loads((out / "model" / "config.json").read_text())
    # RoBERTa's pairs end with its own EOS (</s>): the rule appends nothing, and says so.
    assert saved["rlhf_append_eos"] is True and saved["rlhf_template"] == "pair"

    assert main(["eval-reward", "--reward-model", str(out / "model"), "--data",
                 str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 40 and result["empty_responses"] == 11
