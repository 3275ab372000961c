"""Best-of-n: the analytic KL on hand-computed values and against the exact KL of a discrete
distribution, and the choice of the best candidate (ties, NaN, a plain-loop reference)."""

import math

import pytest
import torch

from rlhf.algo.best_of_n import best_of_n, best_of_n_kl


@pytest.mark.parametrize(("n", "expected"), [
    (1, 0.0),                              # log 1 - 0
    (2, 0.6931471805599453 - 0.5),         # log 2 - 1/2
    (4, 1.3862943611198906 - 0.75),        # log 4 - 3/4
    (16, 2.772588722239781 - 0.9375),      # log 16 - 15/16
])
def test_kl_on_hand_computed_values(n: int, expected: float) -> None:
    assert best_of_n_kl(n) == pytest.approx(expected, abs=1e-12)


def test_kl_grows_with_n_and_stays_below_log_n() -> None:
    values = [best_of_n_kl(n) for n in range(1, 200)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert all(kl <= math.log(n) for n, kl in zip(range(1, 200), values, strict=True))


@pytest.mark.parametrize("n", [0, -3, 2.0, 1.5, True, "4", None])
def test_kl_refuses_what_is_not_a_whole_number_of_at_least_one(n) -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        best_of_n_kl(n)


def flat_dirichlet(size: int, seed: int) -> torch.Tensor:
    """A seeded draw from Dirichlet(1, ..., 1): normalised exponentials (no global RNG)."""
    uniform = torch.rand(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    weights = -uniform.log()  # (K,) Exp(1)
    return weights / weights.sum()


def exact_best_of_n_kl(probs: torch.Tensor, n: int) -> float:
    """KL(best-of-n || p) by enumeration for outcomes listed in increasing score order: the
    best of n draws is outcome i with probability F(i)^n - F(i-1)^n."""
    cdf = torch.cumsum(probs, 0)  # (K,)
    below = torch.cat([cdf.new_zeros(1), cdf[:-1]])  # (K,)
    best = cdf ** n - below ** n  # (K,)
    return float((best * (best / probs).log()).sum())


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_formula_bounds_the_exact_kl_of_a_50_outcome_distribution_and_is_close(n: int) -> None:
    uniform = torch.full((50,), 1 / 50, dtype=torch.float64)
    spread = flat_dirichlet(50, seed=n)
    for probs in (uniform, spread):
        exact = exact_best_of_n_kl(probs, n)
        assert exact <= best_of_n_kl(n) + 1e-12
        assert exact == pytest.approx(best_of_n_kl(n), rel=0.02, abs=1e-12)


def test_formula_is_loose_when_one_outcome_holds_half_the_mass() -> None:
    probs = torch.cat([torch.full((49,), 0.5 / 49, dtype=torch.float64),
                       torch.tensor([0.5], dtype=torch.float64)])  # the best is likely anyway
    assert exact_best_of_n_kl(probs, 16) < 0.5 * best_of_n_kl(16)


def test_sampled_best_of_n_follows_the_enumerated_distribution() -> None:
    """best_of_n over draws of a categorical picks outcome i as often as F(i)^n - F(i-1)^n."""
    generator = torch.Generator().manual_seed(0)
    probs = flat_dirichlet(10, seed=0).float()
    scores_of_outcome = torch.arange(10, dtype=torch.float32)  # distinct, increasing
    draws = torch.multinomial(probs, 4 * 40_000, replacement=True,
                              generator=generator).view(40_000, 4)  # (P, n)
    chosen = draws.gather(1, best_of_n(scores_of_outcome[draws])[:, None])[:, 0]  # (P,)
    frequency = torch.bincount(chosen, minlength=10).double() / len(chosen)
    cdf = torch.cumsum(probs.double(), 0)
    expected = cdf ** 4 - torch.cat([cdf.new_zeros(1), cdf[:-1]]) ** 4
    assert torch.allclose(frequency, expected, atol=0.01)


def test_best_is_the_highest_score_per_row() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.3], [2.0, -1.0, 1.0]])
    assert best_of_n(scores).tolist() == [1, 0]


def test_ties_go_to_the_lowest_index() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 2.0, 2.0]])
    assert best_of_n(scores).tolist() == [1, 0, 2]


def test_non_finite_scores_lose_to_finite_ones() -> None:
    nan, inf = math.nan, math.inf
    scores = torch.tensor([[nan, -5.0, -6.0], [-1.0, nan, -2.0], [inf, 0.5, nan],
                           [-inf, -1e30, nan]])
    assert best_of_n(scores).tolist() == [1, 0, 1, 1]


def test_a_row_of_only_non_finite_scores_is_named() -> None:
    scores = torch.tensor([[1.0, 2.0], [math.nan, math.inf], [math.nan, math.nan]])
    with pytest.raises(ValueError, match="row 1"):
        best_of_n(scores)


def test_matches_a_plain_loop_and_leaves_its_input_alone() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (64, 5), generator=generator).float()  # many ties
    scores[torch.rand(64, 5, generator=generator) < 0.2] = math.nan
    scores[0] = 1.0  # keep every row with a finite score
    scores[:, 0] = torch.where(scores[:, 0].isnan(), 0.0, scores[:, 0])
    before = scores.clone()
    expected = []
    for row in scores.tolist():
        best = None
        for index, value in enumerate(row):
            if math.isfinite(value) and (best is None or value > row[best]):
                best = index
        expected.append(best)
    assert best_of_n(scores).tolist() == expected
    assert torch.equal(scores.isnan(), before.isnan())
    assert torch.equal(scores.nan_to_num(), before.nan_to_num())


def test_integer_scores_and_shapes() -> None:
    assert best_of_n(torch.tensor([[1, 3, 3]])).tolist() == [1]
    assert best_of_n(torch.zeros(0, 4)).shape == (0,)
    for bad in (torch.zeros(4), torch.zeros(2, 0), torch.zeros(2, 2, 2)):
        with pytest.raises(ValueError, match="shape"):
            best_of_n(bad)
