"""rlhf.rl.gold_labels and `rlhf label-pairs`: two answers per prompt from a policy, scored by
the gold reward, labelled by a Bradley-Terry draw, written as a train-reward preference file."""

import json
import math

import pytest

import rlhf.rl.gold_labels as gold_labels
from rlhf.cli import main
from rlhf.data.preferences import load_preferences
from rlhf.data.prompts import load_prompts
from rlhf.errors import UserError
from rlhf.models import load_policy
from rlhf.reward.gold import gold_descriptiveness
from rlhf.rl.gold_labels import label_pairs

FIELDS = {"prompt", "chosen", "rejected", "chosen_gold", "rejected_gold", "p_chosen"}
FAST = {"temperature": 1.0, "max_new_tokens": 6, "batch_size": 4, "seed": 0}


@pytest.fixture(scope="module")
def tiny():
    """builtin:tiny-gpt2 and three builtin:descriptiveness prompts (ids, text)."""
    policy, tokenizer = load_policy("builtin:tiny-gpt2")
    policy.eval()
    prompts, prompt_ids = load_prompts("builtin:descriptiveness", template="prompt",
                                       tokenizer=tokenizer, max_prompt_tokens=64)
    return policy, tokenizer, prompt_ids[:3], list(prompts.prompts[:3])


def labelled(tiny, **options):
    policy, tokenizer, ids, texts = tiny
    return label_pairs(policy, tokenizer, ids, texts, gold_descriptiveness,
                       **({"pairs": 3, "bt_temperature": 0.1} | FAST | options))


@pytest.fixture(scope="module")
def default_rows(tiny):
    """Three pairs sampled from the tiny policy with FAST's options (sampling is the slow
    part of these tests: every run of the policy is shared where it can be)."""
    return labelled(tiny)


def test_rows_hold_gold_scores_consistent_with_the_label(tiny, default_rows) -> None:
    rows, counts = default_rows
    assert counts["pairs"] == len(rows) == 3 and counts["requested"] == 3
    assert counts["drawn"] == 3 + counts["identical_skipped"]
    for row in rows:
        assert set(row) == FIELDS and row["prompt"] in tiny[3]
        assert row["chosen"] != row["rejected"]
        [gold_chosen, gold_rejected] = gold_descriptiveness([row["prompt"]] * 2,
                                                            [row["chosen"], row["rejected"]])
        assert (row["chosen_gold"], row["rejected_gold"]) == (gold_chosen, gold_rejected)
        margin = (gold_chosen - gold_rejected) / 0.1
        assert row["p_chosen"] == pytest.approx(1 / (1 + math.exp(-margin)))
    assert counts["flipped"] == sum(r["chosen_gold"] < r["rejected_gold"] for r in rows)


def test_same_seed_same_rows_whatever_the_batch_size(tiny, default_rows) -> None:
    rows, _ = default_rows
    assert labelled(tiny, batch_size=2)[0] == rows  # each pair is seeded by its index
    assert labelled(tiny, seed=1)[0] != rows


def fake_pairs(policy, tokenizer, prompt_ids, indices, **_):
    """Pairs 0, 2, 4, ... are two identical answers; odd pairs differ in length."""
    return [(f"Answer {i}.", f"Answer {i}.") if i % 2 == 0 else (f"Answer {i}.", "No.")
            for i in indices]


def by_length(prompts, responses):
    return [float(len(response)) for response in responses]


def test_identical_answers_are_counted_and_replaced(tiny, monkeypatch) -> None:
    monkeypatch.setattr(gold_labels, "sample_pair_texts", fake_pairs)
    policy, tokenizer, ids, texts = tiny
    for batch_size in (1, 2, 7):
        rows, counts = label_pairs(policy, tokenizer, ids, texts, by_length, pairs=3,
                                   temperature=1.0, bt_temperature=1e-9, max_new_tokens=4,
                                   batch_size=batch_size, seed=0)
        assert counts | {"flip_rate": 0} == {"pairs": 3, "requested": 3, "drawn": 6,
                                             "identical_skipped": 3, "flipped": 0,
                                             "flip_rate": 0, "ties": 0}
        assert [(r["chosen"], r["rejected"]) for r in rows] == [
            ("Answer 1.", "No."), ("Answer 3.", "No."), ("Answer 5.", "No.")]
        assert [r["prompt"] for r in rows] == [texts[1], texts[0], texts[2]]  # i mod 3


def test_labels_follow_the_gold_at_low_noise_and_are_coin_flips_at_high(tiny,
                                                                        monkeypatch) -> None:
    monkeypatch.setattr(gold_labels, "sample_pair_texts",
                        lambda p, t, ids, indices, **_: [("Long answer.", "No.")
                                                         for _ in indices])
    policy, tokenizer, ids, texts = tiny
    options = {"pairs": 400, "temperature": 1.0, "max_new_tokens": 4, "batch_size": 400,
               "seed": 0}
    sure, counts = label_pairs(policy, tokenizer, ids, texts, by_length, bt_temperature=1e-9,
                               **options)
    assert counts["flipped"] == 0 and all(r["chosen"] == "Long answer." for r in sure)
    assert all(r["p_chosen"] == 1.0 for r in sure)
    _, counts = label_pairs(policy, tokenizer, ids, texts, by_length, bt_temperature=1e9,
                            **options)
    assert 0.4 < counts["flip_rate"] < 0.6  # 400 fair coins: std 0.025
    _, counts = label_pairs(policy, tokenizer, ids, texts, by_length, bt_temperature=9.0,
                            **options)  # a 9-character margin: P(flip) = sigmoid(-1) = 0.27
    assert counts["flip_rate"] == pytest.approx(1 / (1 + math.e), abs=0.07)


def test_all_identical_answers_leave_nothing_to_label(tiny, monkeypatch) -> None:
    monkeypatch.setattr(gold_labels, "sample_pair_texts",
                        lambda p, t, ids, indices, **_: [("Same.", "Same.") for _ in indices])
    rows, counts = labelled(tiny, pairs=2)
    assert rows == [] and counts["identical_skipped"] == counts["drawn"] == 8


def test_label_pairs_command_writes_a_preference_file(tmp_path, capsys) -> None:
    output = tmp_path / "pairs.jsonl"
    assert main(["label-pairs", "--policy", "builtin:tiny-gpt2", "--prompts",
                 "builtin:descriptiveness", "--output", str(output), "--pairs", "4",
                 "--max-new-tokens", "6", "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 4 gold-labelled pairs -> {output}" in printed
    assert "identical answers" in printed and "labels against the gold order" in printed
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 4 and all(set(row) == FIELDS for row in rows)
    train, test = load_preferences(str(output))  # extra columns are ignored
    assert len(train) + len(test) == 4 and not train.listwise
    assert train.counts["dropped_identical"] == 0
    assert {(p, tuple(r)) for p, r in zip(train.prompts, train.responses, strict=True)} <= {
        (row["prompt"], (row["chosen"], row["rejected"])) for row in rows}


@pytest.mark.parametrize(("flag", "value", "named"), [
    ("--bt-temperature", "0", "--bt-temperature"),
    ("--temperature", "0", "--temperature"),
    ("--output", "/nonexistent-folder/pairs.jsonl", "--output"),
    ("--reward", "rlhf.reward.gold:no_such_function", "no_such_function"),
])
def test_bad_arguments_are_named(tmp_path, capsys, flag, value, named) -> None:
    arguments = {"--policy": "builtin:tiny-gpt2", "--prompts": "builtin:descriptiveness",
                 "--output": str(tmp_path / "pairs.jsonl"), "--pairs": "2"} | {flag: value}
    assert main(["label-pairs", *[x for item in arguments.items() for x in item]]) == 2
    error = capsys.readouterr().err
    assert named in error and "Traceback" not in error
    assert not (tmp_path / "pairs.jsonl").exists()


def test_no_pair_to_write_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gold_labels, "sample_pair_texts",
                        lambda p, t, ids, indices, **_: [("Same.", "Same.") for _ in indices])
    with pytest.raises(UserError, match="identical"):
        gold_labels.label_pairs_file(
            "builtin:tiny-gpt2", "builtin:descriptiveness", str(tmp_path / "out.jsonl"),
            pairs=2, temperature=1.0, bt_temperature=0.1, max_new_tokens=4,
            max_prompt_tokens=64, template="prompt", batch_size=2, seed=0)
    assert not (tmp_path / "out.jsonl").exists()
