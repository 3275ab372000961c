"""End to end: DPO and its variants on the tiny config (marked slow)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import rlhf.stages.dpo.train as dpo_train
from rlhf.config import DPOConfig, load_config
from rlhf.report import report_run
from rlhf.stages.dpo.reference import REFERENCE_FILE
from rlhf.stages.dpo.train import train_dpo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "dpo" / "tiny.yaml"
SHORT = ["data.max_samples=64", "train.batch_size=8", "train.eval_batch_size=64",
         "run.eval_every=0", "run.save_every=0"]


def tiny(out: Path, *overrides: str) -> DPOConfig:
    return load_config(DPOConfig, TINY, [f"run.output_dir={out}", "run.progress=false",
                                         *overrides])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").open()]


def test_tiny_dpo_learns_the_preferences_and_logs_documented_metrics(tmp_path: Path) -> None:
    out = tmp_path / "run"
    final = train_dpo(tiny(out, "data.max_samples=320", "run.eval_every=0"))
    report_run(out)  # what `rlhf train-dpo` does after the stage
    rows = records(out)
    start = next(r for r in rows if r["step"] == 0 and "eval/loss" in r)
    assert start["eval/loss"] == pytest.approx(0.6931, abs=1e-3)  # policy = reference
    assert start["eval/accuracy"] == 0.0  # ties count as wrong
    assert final["eval/accuracy"] > 0.9 and final["eval/margin_mean"] > 0.5, final
    documented = (ROOT / "docs" / "metrics.md").read_text().split("## DPO")[1]
    for key in {k for r in rows for k in r} - {"step", "train/epoch"}:
        assert f"`{key}`" in documented or key.startswith("train/") and key.split("/")[1] in (
            "grad_norm", "lr", "skipped_batches", "overflow_steps"), key
    for name in ("report.html", "loss.png", "accuracy.png", "scores.png", REFERENCE_FILE):
        assert (out / name).is_file(), name
    AutoModelForCausalLM.from_pretrained(out / "model")


@pytest.mark.parametrize("loss", ["robust", "ipo", "simpo"])
def test_each_variant_trains(loss: str, tmp_path: Path) -> None:
    extra = ["dpo.label_smoothing=0.1"] if loss == "robust" else []
    final = train_dpo(tiny(tmp_path / loss, *SHORT, f"dpo.loss={loss}", *extra))
    assert final["eval/accuracy"] > 0.5, final
    assert (REFERENCE_FILE in {p.name for p in (tmp_path / loss).iterdir()}) == (loss != "simpo")


def test_precomputed_and_on_the_fly_references_agree(tmp_path: Path) -> None:
    settings = [*SHORT, "train.max_steps=4"]
    train_dpo(tiny(tmp_path / "pre", *settings))
    train_dpo(tiny(tmp_path / "live", *settings, "dpo.reference_logprobs=on_the_fly"))
    assert not (tmp_path / "live" / REFERENCE_FILE).exists()
    a, b = records(tmp_path / "pre"), records(tmp_path / "live")
    for x, y in zip(a, b, strict=True):
        # While the policy equals the reference (step 1; step 2 after a zero-lr warmup step)
        # every margin is 0 up to float noise, which differs between the table's batches and
        # the step's and decides the strict "chosen higher".
        noise_only = {"train/accuracy"} if abs(x.get("train/margin_mean", 1.0)) < 1e-5 else set()
        for key in x.keys() - {"train/grad_norm"} - noise_only:
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-4), (x["step"], key)


def test_resume_reads_the_stored_reference_and_gives_identical_weights(
        cut_and_resumed, monkeypatch) -> None:
    settings = ["data.max_samples=48", "train.batch_size=8", "train.epochs=2",
                "run.save_every=4", "run.keep_last=10", "run.eval_every=5", "lora.r=4",
                "train.eval_batch_size=64"]

    def train(out: Path, *extra: str) -> None:
        if extra:  # the resumed run must not recompute the reference's log-probs
            monkeypatch.setattr(dpo_train, "compute_table", _never)
        train_dpo(tiny(out, *settings, *extra))

    full, cut = cut_and_resumed(train, step=8, saved=["model", "model-adapter"])
    for weights in ("model/model.safetensors", "model-adapter/adapter_model.safetensors"):
        a, b = load_file(full / weights), load_file(cut / weights)
        for key in a:
            assert torch.equal(a[key], b[key]), (weights, key)
    assert (full / "metrics.jsonl").read_text() == (cut / "metrics.jsonl").read_text()


def _never(*args, **kwargs):
    raise AssertionError("the reference log-probs were computed again on resume")


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    common = [*SHORT, "train.max_steps=1", "data.group_by_length=false"]
    train_dpo(tiny(tmp_path / "one", *common, "train.micro_batch_size=8"))
    train_dpo(tiny(tmp_path / "four", *common, "train.micro_batch_size=2"))
    a = load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = load_file(tmp_path / "four" / "model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
