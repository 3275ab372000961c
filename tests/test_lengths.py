"""Length settings are checked against the positions of the model that reads them when the run
loads, with one line naming the key and the limit: before, a run crashed mid-way with an
IndexError from inside the model's embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from rlhf.builtin_models import build_builtin
from rlhf.cli import main
from rlhf.models import load_policy, load_reward_model, position_limit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rm") / "reward"
    model, tokenizer = build_builtin("builtin:tiny-roberta", AutoModelForSequenceClassification,
                                     seed=0, num_labels=1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_position_limits_of_decoders_and_roberta_encoders() -> None:
    assert position_limit(load_policy("builtin:tiny-gpt2")[0]) == 256  # n_positions
    # RoBERTa's table has 514 rows, but positions start after the pad index: 512 tokens.
    assert position_limit(load_reward_model("builtin:tiny-roberta")[0]) == 512


@pytest.mark.parametrize(("command", "overrides", "fragments"), [
    ("train-ppo", ["generate.max_new_tokens=250"],
     ["data.max_prompt_tokens + generate.max_new_tokens = 282", "256 positions",
      "builtin:tiny-gpt2"]),
    ("train-reward", ["data.max_length=600"], ["data.max_length = 600", "512 positions"]),
    ("train-sft", ["data.max_length=300"], ["data.max_length = 300", "256 positions"]),
    ("train-ppo", ["model.reward=REWARD", "model.reward_max_length=513"],
     ["model.reward_max_length = 513", "512 positions"]),
], ids=["ppo-prompt-plus-response", "reward-max-length", "sft-max-length", "ppo-reward-model"])
def test_a_length_beyond_the_models_positions_is_one_line_at_load(
        command: str, overrides: list[str], fragments: list[str], reward_folder: Path,
        tmp_path: Path, capsys) -> None:
    stage = {"train-ppo": "ppo", "train-reward": "reward", "train-sft": "sft"}[command]
    overrides = [o.replace("REWARD", str(reward_folder)) for o in overrides]
    code = main([command, "--config", str(ROOT / "configs" / stage / "tiny.yaml"),
                 f"run.output_dir={tmp_path / 'run'}", "run.progress=false", *overrides])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(fragment in err[0] for fragment in fragments), err[0]
    assert not (tmp_path / "run").exists()  # stopped before writing anything


def test_a_frozen_reward_model_reads_up_to_its_own_limit_unless_told(tmp_path: Path) -> None:
    """A reward model the user cannot change: unset, the limit is the model's (at most 512),
    so a short position table never crashes a run; set beyond it, one line names the option."""
    from rlhf.errors import UserError
    from rlhf.reward.scorers import RewardModelScorer

    model, tokenizer = load_reward_model("builtin:tiny-gpt2")  # 256 positions
    assert RewardModelScorer(model, tokenizer, template="concat").max_length == 256
    roberta, roberta_tokenizer = load_reward_model("builtin:tiny-roberta")  # 512
    assert RewardModelScorer(roberta, roberta_tokenizer, template="pair").max_length == 512
    with pytest.raises(UserError, match="--max-length = 300 is longer than the 256 positions"):
        RewardModelScorer(model, tokenizer, template="concat", max_length=300)
    long_text = "word " * 400
    scores = RewardModelScorer(model, tokenizer, template="concat")([long_text], [long_text])
    assert scores.shape == (1,)  # cut to fit instead of an IndexError
