"""hold_out, cap and train_and_test: one split for every kind of example."""

import pytest

from rlhf.data import preferences, sft
from rlhf.data.preferences import normalize_rows
from rlhf.data.sft import SFTData
from rlhf.data.splits import cap, hold_out, train_and_test
from rlhf.errors import UserError


def pairs(n: int) -> list[dict]:
    return [{"prompt": f"prompt {i}", "chosen": f"a vivid answer {i}",
             "rejected": f"a plain answer {i}"} for i in range(n)]


def split_pairs(data, test_fraction: float, seed: int):
    return hold_out(data, test_fraction, seed, subset=preferences.subset,
                    dropped="dropped_identical")


def test_hold_out_is_seeded_and_disjoint() -> None:
    data = normalize_rows(pairs(50), source="mem")
    train, test = split_pairs(data, 0.2, seed=3)
    assert (len(train), len(test)) == (40, 10)
    assert sorted(train.prompts + test.prompts) == sorted(data.prompts)
    again = split_pairs(data, 0.2, seed=3)
    assert again[1].prompts == test.prompts and again[0].prompts == train.prompts
    assert split_pairs(data, 0.2, seed=4)[1].prompts != test.prompts
    assert train.counts["held_out"] == 10 and test.counts["rows"] == 10
    tiny = normalize_rows(pairs(2), source="mem")
    assert [len(part) for part in split_pairs(tiny, 0.01, seed=0)] == [1, 1]
    with pytest.raises(UserError, match="at least 2 are needed"):
        split_pairs(preferences.subset(tiny, [0]), 0.5, seed=0)


def test_counts_of_both_parts_for_each_kind_of_example() -> None:
    data = normalize_rows(pairs(10), source="mem")
    train, test = split_pairs(data, 0.2, seed=0)
    assert train.counts == {"rows": 10, "dropped_identical": 0, "empty_responses": 0,
                            "held_out": 2}
    assert test.counts == {"rows": 2, "dropped_identical": 0}
    examples = SFTData(prompts=list("abcd"), responses=list("efgh"), chat=[False] * 4,
                       counts={"rows": 5, "dropped_empty": 1})
    train, test = hold_out(examples, 0.5, 0, subset=sft.subset, dropped="dropped_empty")
    assert train.counts == {"rows": 5, "dropped_empty": 1, "held_out": 2}
    assert test.counts == {"rows": 2, "dropped_empty": 0}
    assert examples.counts == {"rows": 5, "dropped_empty": 1}  # the input is left alone


def test_cap_keeps_the_first_examples_and_counts_the_rest() -> None:
    data = normalize_rows(pairs(5), source="mem")
    assert cap(data, None, subset=preferences.subset) is data
    assert cap(data, 5, subset=preferences.subset) is data
    capped = cap(data, 2, subset=preferences.subset)
    assert capped.prompts == data.prompts[:2] and capped.counts["dropped_max_samples"] == 3
    assert "dropped_max_samples" not in data.counts


def test_train_and_test_holds_out_only_without_a_test_part() -> None:
    data, given = normalize_rows(pairs(20), source="mem"), normalize_rows(pairs(3), source="m")
    options = {"test_fraction": 0.25, "seed": 1, "subset": preferences.subset,
               "dropped": "dropped_identical"}
    train, test = train_and_test(data, None, max_samples=None, **options)
    assert (len(train), len(test)) == (15, 5)
    assert train_and_test(data, given, max_samples=None, **options) == (data, given)
    train, test = train_and_test(data, given, max_samples=2, **options)
    assert (len(train), len(test)) == (2, 2) and test.counts["dropped_max_samples"] == 1
