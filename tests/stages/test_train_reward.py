"""End to end: reward-model training on tiny models (marked slow: seconds to a minute each)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from rlhf.cli import main
from rlhf.config import RewardConfig, load_config
from rlhf.report import report_run
from rlhf.stages.reward import train_reward

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "reward" / "tiny.yaml"
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-base-test" / "test.jsonl.gz"


def tiny(out: Path, *overrides: str) -> RewardConfig:
    return load_config(RewardConfig, TINY, [f"run.output_dir={out}", "run.progress=false",
                                            *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "run"
    metrics = train_reward(tiny(out))
    report_run(out)  # what `rlhf train-reward` does after the stage
    return out, metrics


def test_tiny_config_learns_the_preference(trained) -> None:
    out, metrics = trained
    assert metrics["eval/accuracy"] >= 0.9
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "accuracy.png", "scores.png",
                 "eval_scores.json", "report.html"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert any("train/loss" in r for r in records) and any("eval/accuracy" in r for r in records)


def test_saved_model_loads_with_plain_transformers(trained) -> None:
    out, _ = trained
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_labels == 1
    assert model.config.rlhf_template == "pair"
    assert model.config.rlhf_score_std > 0


def test_eval_reward_and_score_commands(trained, tmp_path: Path, capsys) -> None:
    out, metrics = trained
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "The harbour was quiet.", "chosen": "Gulls wheeled over the silver, "
             "glittering water.", "rejected": "There were some birds."}] * 3
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["eval-reward", "--reward-model", str(out / "model"), "--data", str(data)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 3 and 0 <= result["accuracy"] <= 1

    assert main(["score", "--reward-model", str(out / "model"), "--prompt", rows[0]["prompt"],
                 "--response", rows[0]["chosen"]]) == 0
    single = float(capsys.readouterr().out)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"prompt": rows[0]["prompt"], "response": rows[0]["chosen"],
                                  "id": 7}) + "\n")
    assert main(["score", "--reward-model", str(out / "model"), "--input", str(inputs),
                 "--output", str(tmp_path / "out.jsonl")]) == 0
    scored = json.loads((tmp_path / "out.jsonl").read_text())
    assert scored["id"] == 7 and scored["score"] == pytest.approx(single, abs=1e-5)


def test_misspelt_key_exits_2_with_a_suggestion(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "rlhf.cli", "train-reward", "--config", str(TINY),
               f"run.output_dir={tmp_path}", "train.lerning_rate=1e-3"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert "did you mean 'train.learning_rate'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_resume_with_lora_from_a_midway_checkpoint_gives_identical_weights(
        cut_and_resumed) -> None:
    # LoRA adapters and gradient checkpointing: the checkpoints hold only the adapters (and the
    # reward head); the full-model resume is tested by test_kill_resume.py.
    settings = ["lora.r=4", "train.gradient_checkpointing=true", "data.max_samples=192", "train.epochs=2", "run.save_every=3",
                "run.keep_last=100", "run.eval_every=5"]
    # Died just after checkpoint 6 (mid-epoch 1 of 2: 12 steps per epoch).
    full, cut = cut_and_resumed(lambda out, *extra: train_reward(tiny(out, *settings, *extra)),
                                step=6, saved=["model", "model-adapter"])
    checkpointed = (cut / "checkpoint-6" / "model.safetensors").stat().st_size
    assert checkpointed < (full / "model" / "model.safetensors").stat().st_size / 5  # no base
    for weights in ("model/model.safetensors", "model-adapter/adapter_model.safetensors"):
        a, b = load_file(full / weights), load_file(cut / weights)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert (full / "metrics.jsonl").read_text() == (cut / "metrics.jsonl").read_text()


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    common = ["data.max_samples=64", "train.batch_size=8", "train.max_steps=1",
              "data.group_by_length=false"]
    train_reward(tiny(tmp_path / "one", *common, "train.micro_batch_size=8"))
    train_reward(tiny(tmp_path / "four", *common, "train.micro_batch_size=2"))
    a = load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = load_file(tmp_path / "four" / "model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


@pytest.mark.skipif(not HH.exists(), reason="needs ../shared/data")
def test_real_hh_rlhf_dialogues_train_with_truncation(tmp_path: Path, capsys) -> None:
    metrics = train_reward(tiny(tmp_path / "hh", f"data.path={HH}", "train.epochs=1",
                                "data.max_samples=400", "data.max_length=96"))
    assert 0 <= metrics["eval/accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "train_truncated=" in printed and "train_truncated=0," not in printed
    assert (tmp_path / "hh" / "model" / "model.safetensors").is_file()
