"""End to end: SFT on the tiny config (marked slow: seconds each)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf.algo.sft import sft_loss
from rlhf.cli import main
from rlhf.config import PPOConfig, SFTConfig, load_config
from rlhf.data.batching import pad_sequences
from rlhf.data.sft import collate_sft, load_sft, tokenize_sft
from rlhf.data.synthetic import descriptiveness_pairs
from rlhf.models import load_policy
from rlhf.report import report_run
from rlhf.rl.generation import sample_responses
from rlhf.stages.ppo.train import train_ppo
from rlhf.stages.sft import next_token_logprobs, train_sft

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "sft" / "tiny.yaml"
TRAIN_KEYS = {"train/loss", "train/perplexity", "train/tokens", "train/grad_norm", "train/lr",
              "train/epoch", "train/skipped_batches", "train/overflow_steps"}
EVAL_KEYS = {"eval/loss", "eval/perplexity", "eval/tokens"}


def tiny(out: Path, *overrides: str) -> SFTConfig:
    return load_config(SFTConfig, TINY, [f"run.output_dir={out}", "run.progress=false",
                                         *overrides])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").open()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "run"
    metrics = train_sft(tiny(out))
    report_run(out)  # what `rlhf train-sft` does after the stage
    return out, metrics


def test_tiny_config_learns_to_continue_scenes(trained) -> None:
    out, final = trained
    evals = [r for r in records(out) if "eval/loss" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 250
    assert evals[-1]["eval/loss"] < 0.3 * evals[0]["eval/loss"]
    assert final["eval/loss"] == evals[-1]["eval/loss"] < 1.5
    assert final["eval/perplexity"] == pytest.approx(math.exp(final["eval/loss"]), rel=1e-9)
    train_lines = [r for r in records(out) if "train/loss" in r]
    assert len(train_lines) == 250 and set(train_lines[0]) == TRAIN_KEYS | {"step"}
    assert set(evals[0]) == EVAL_KEYS | {"step"}
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "report.html",
                 "checkpoint-250", "model/model.safetensors"):
        assert (out / name).exists(), name


def test_every_logged_metric_is_documented(trained) -> None:
    out, _ = trained
    documented = (ROOT / "docs" / "metrics.md").read_text().split("## SFT")[1]
    for key in {key for record in records(out) for key in record} - {"step"}:
        assert f"`{key}`" in documented, key


def test_saved_policy_loads_with_plain_transformers_and_writes_words(trained) -> None:
    out, _ = trained
    assert isinstance(AutoModelForCausalLM.from_pretrained(out / "model"), torch.nn.Module)
    assert AutoTokenizer.from_pretrained(out / "model").padding_side == "left"
    model, tokenizer = load_policy(str(out / "model"))
    prompts = [row["prompt"] for row in descriptiveness_pairs(8, seed=1)]  # held-out split
    ids, mask = pad_sequences([tokenizer(p)["input_ids"] for p in prompts],
                              tokenizer.pad_token_id, "left")
    responses = sample_responses(model.eval(), ids, mask, max_new_tokens=40, temperature=0,
                                 stop_token_ids=[tokenizer.eos_token_id],
                                 pad_id=tokenizer.pad_token_id).tolist()
    known = {word for row in descriptiveness_pairs(2000, seed=0) for text in row.values()
             for word in re.findall(r"[a-z'-]+", text.lower())}
    eos = tokenizer.eos_token_id
    assert sum(eos in row for row in responses) >= 7  # it learnt to stop
    for row in responses:
        text = tokenizer.decode(row[:row.index(eos)] if eos in row else row)
        words = re.findall(r"[a-z'-]+", text.lower())
        assert len(words) >= 3 and set(words) <= known, text


def test_saved_policy_is_a_ppo_policy(trained, tmp_path: Path) -> None:
    out, _ = trained
    cfg = load_config(PPOConfig, ROOT / "configs" / "ppo" / "tiny.yaml", [
        f"run.output_dir={tmp_path / 'ppo'}", "run.progress=false",
        f"model.policy={out / 'model'}", "ppo.total_episodes=32", "ppo.ppo_epochs=1",
        "ppo.normalization_samples=8", "run.save_every=0"])
    metrics = train_ppo(cfg)
    assert metrics and (tmp_path / "ppo" / "policy").is_dir()


def test_loss_is_cross_entropy_on_response_tokens_only() -> None:
    model, tokenizer = load_policy("builtin:tiny-gpt2")
    train, _ = load_sft("builtin:descriptiveness-sft", max_samples=6)
    tok = tokenize_sft(train, tokenizer, max_length=128)
    batch = collate_sft(tok, list(range(6)), tokenizer.pad_token_id)
    logprobs, mask = next_token_logprobs(model, batch, torch.device("cpu"))
    loss, stats = sft_loss(logprobs, mask)
    # Reference: Hugging Face-style labels, -100 on prompt and padding (pad id == EOS here).
    labels = batch["input_ids"].masked_fill(~batch["response_mask"], -100)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(),
                               ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    responses = [len(ids) - start for ids, start in zip(tok.input_ids, tok.prompt_lengths,
                                                        strict=True)]
    assert float(stats.tokens) == sum(responses)


def test_misspelt_key_exits_2_with_a_suggestion(tmp_path: Path, capsys) -> None:
    assert main(["train-sft", "--config", str(TINY), f"run.output_dir={tmp_path}",
                 "train.lerning_rate=1e-3"]) == 2
    assert "did you mean 'train.learning_rate'" in capsys.readouterr().err


def test_resume_with_lora_from_a_midway_checkpoint_gives_identical_weights(
        cut_and_resumed) -> None:
    # LoRA adapters and gradient checkpointing: the checkpoints hold only the adapters (and the
    # reward head); the full-model resume is tested by test_kill_resume.py.
    settings = ["lora.r=4", "train.gradient_checkpointing=true", "data.max_samples=192", "train.epochs=2", "run.save_every=3",
                "run.keep_last=100", "run.eval_every=5", "train.eval_batch_size=64"]
    # Died just after checkpoint 6 (mid-epoch 1 of 2: 12 steps per epoch).
    full, cut = cut_and_resumed(lambda out, *extra: train_sft(tiny(out, *settings, *extra)),
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
    train_sft(tiny(tmp_path / "one", *common, "train.micro_batch_size=8"))
    train_sft(tiny(tmp_path / "four", *common, "train.micro_batch_size=2"))
    a = load_file(tmp_path / "one" / "model" / "model.safetensors")
    b = load_file(tmp_path / "four" / "model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    one, four = records(tmp_path / "one")[1], records(tmp_path / "four")[1]
    assert one["train/tokens"] == four["train/tokens"]
    assert one["train/loss"] == pytest.approx(four["train/loss"], rel=1e-5)
