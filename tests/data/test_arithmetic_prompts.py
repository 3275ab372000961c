"""builtin:arithmetic: seeded one-digit sums and differences in one parseable prompt format."""

import re

from rlhf.data.sources import load_rows
from rlhf.data.synthetic import arithmetic_problems

PROBLEM = re.compile(r"Q: (\d) ([+-]) (\d) = \? A:")


def test_problems_are_deterministic_per_seed() -> None:
    assert arithmetic_problems(50, seed=3) == arithmetic_problems(50, seed=3)
    assert arithmetic_problems(50, seed=3) != arithmetic_problems(50, seed=4)


def test_every_prompt_has_the_format_and_its_answer() -> None:
    rows = arithmetic_problems(2000, seed=0)
    operators = set()
    for row in rows:
        left, operator, right = PROBLEM.fullmatch(row["prompt"]).groups()
        operators.add(operator)
        expected = int(left) + int(right) if operator == "+" else int(left) - int(right)
        assert row["answer"] == expected
    assert operators == {"+", "-"}
    assert len({row["prompt"] for row in rows}) >= 150  # of 200 possible problems
    assert min(row["answer"] for row in rows) < 0 <= max(row["answer"] for row in rows) <= 18


def test_builtin_source_has_train_and_test_splits() -> None:
    train, test, description = load_rows("builtin:arithmetic")
    assert (len(train), len(test), description) == (2000, 400, "builtin:arithmetic")
    assert train == arithmetic_problems(2000, seed=0)
    assert test == arithmetic_problems(400, seed=1)
    assert load_rows("builtin:arithmetic", split="test", test_split=None)[0] == test
