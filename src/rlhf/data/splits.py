"""Train and test parts of any kind of example: a seeded held-out fraction, then a size cap.

Preference and SFT data are split the same way: the source's own test split when it has one,
else a seeded `test_fraction` of the training examples (at least one, leaving at least one),
each part keeping the original order; then `max_samples` keeps the first examples of each part
(like `Dataset.select(range(n))`). The counts say what happened: the training part's
`held_out`, a capped part's `dropped_max_samples`, and a held-out part's own `rows` with, as 0,
the counter of rows dropped while normalising (those rows were dropped before the split and
are counted in the training part).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from rlhf.errors import UserError


class Examples(Protocol):
    """What splitting needs of a kind of examples: a size and its counts."""

    counts: dict[str, int]

    def __len__(self) -> int: ...


E = TypeVar("E", bound=Examples)
# The examples at the given indices, in that order, with the counts copied (not recomputed).
Subset = Callable[[E, Iterable[int]], E]


def held_out_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) example indices: a seeded `test_fraction` held out (at least one, leaving
    at least one), each part in the original order; the same seed holds out the same ones."""
    if n < 2:
        raise UserError(f"only {n} usable example(s): at least 2 are needed to hold out a test "
                        "set; add rows or give the data a test split")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[n_test:]), sorted(order[:n_test])


def hold_out(data: E, test_fraction: float, seed: int, *, subset: Subset[E],
             dropped: str) -> tuple[E, E]:
    """Hold out a seeded `test_fraction` of the examples (at least one, leaving at least one).

    Both parts keep the original order of their examples; the same seed always holds out the
    same examples. `dropped` names the counter of rows that normalising dropped
    ("dropped_identical", "dropped_empty"): the held-out part reports it as 0.
    """
    train_indices, test_indices = held_out_indices(len(data), test_fraction, seed)
    train, test = subset(data, train_indices), subset(data, test_indices)
    train.counts["held_out"] = len(test_indices)
    test.counts = {"rows": len(test_indices), dropped: 0}
    return train, test


def cap(data: E, max_samples: int | None, *, subset: Subset[E]) -> E:
    """The first `max_samples` examples (like `Dataset.select(range(n))`)."""
    if max_samples is None or len(data) <= max_samples:
        return data
    capped = subset(data, range(max_samples))
    capped.counts["dropped_max_samples"] = len(data) - max_samples
    return capped


def train_and_test(train: E, test: E | None, *, test_fraction: float, seed: int,
                   max_samples: int | None, subset: Subset[E], dropped: str) -> tuple[E, E]:
    """(train, test): `test` as given, or held out of `train` when it is None (see
    `hold_out`); then each part capped to its first `max_samples` examples."""
    if test is None:
        train, test = hold_out(train, test_fraction, seed, subset=subset, dropped=dropped)
    return cap(train, max_samples, subset=subset), cap(test, max_samples, subset=subset)
