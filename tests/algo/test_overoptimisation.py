"""The over-optimisation alarm on synthetic evaluation series."""

from __future__ import annotations

import pytest

from rlhf.algo.overoptimisation import past_the_peak


def gao_curves(n: int, peak: float) -> tuple[list[float], list[float]]:
    """Gao et al.'s shapes against d = sqrt(KL): the proxy rises all along, the gold is
    d (alpha - beta d), peaking at d = alpha / (2 beta) = `peak`."""
    d = [0.25 * i for i in range(n)]
    proxy = [x * (2.0 - 0.05 * x) for x in d]
    gold = [x * (1.0 - x / (2 * peak)) for x in d]
    return proxy, gold


def test_quiet_while_the_gold_still_rises() -> None:
    proxy, gold = gao_curves(12, peak=10.0)  # the peak lies beyond the run
    assert not any(past_the_peak(proxy[:k], gold[:k], 3) for k in range(1, 13))


def test_fires_patience_evaluations_after_the_gold_peak() -> None:
    proxy, gold = gao_curves(16, peak=2.0)  # gold peaks at d = 2.0: evaluation 8
    assert max(range(16), key=gold.__getitem__) == 8
    fired = [k for k in range(1, 17) if past_the_peak(proxy[:k], gold[:k], 3)]
    assert fired[0] == 12  # evaluations 9, 10 and 11 below the best: seen after the 12th
    assert fired == list(range(12, 17))


def test_needs_the_proxy_to_have_risen() -> None:
    gold = [0.0, 1.0, 0.5, 0.4, 0.3]
    assert past_the_peak([0.0, 1.0, 1.1, 1.2, 1.3], gold, 3)
    assert not past_the_peak([0.0, 1.0, 0.9, 0.8, 0.7], gold, 3)  # both fell: no gaming
    assert not past_the_peak([0.0, 1.0, 1.1, 1.2, 1.3], gold, 4)  # not yet 4 below the best


def test_a_plateau_counts_from_its_start_and_noise_above_resets() -> None:
    assert past_the_peak([0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0], 3)  # flat gold, rising proxy
    assert not past_the_peak([0, 1, 2, 3], [1.0, 0.9, 1.2, 1.1], 3)  # a new best at index 2


@pytest.mark.parametrize("proxy, gold, patience", [([1.0], [1.0, 2.0], 1), ([1.0], [1.0], 0)])
def test_bad_input(proxy, gold, patience) -> None:
    with pytest.raises(ValueError):
        past_the_peak(proxy, gold, patience)
