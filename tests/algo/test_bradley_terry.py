"""rlhf.algo.bradley_terry: P(a wins) = sigmoid((a - b) / T) (Bradley & Terry 1952), and labels
drawn from it (Gao et al. 2022's noisy gold labels)."""

import math

import pytest
import torch

from rlhf.algo.bradley_terry import preference_probability, sample_preferences


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("a", "b", "temperature", "expected"), [
    (1.0, 0.0, 1.0, 1 / (1 + math.exp(-1))),    # 0.7310586
    (1.0, 0.0, 0.5, 1 / (1 + math.exp(-2))),    # 0.8807971
    (0.0, 1.0, 2.0, 1 / (1 + math.exp(0.5))),   # 0.3775407
    (0.3, 0.3, 0.1, 0.5),                       # a tie is a coin flip
    (-1.2, -1.5, 0.1, 1 / (1 + math.exp(-3))),  # only the difference counts
])
def test_hand_computed_probabilities(a, b, temperature, expected) -> None:
    p = preference_probability(torch.tensor([a], dtype=torch.float64),
                               torch.tensor([b], dtype=torch.float64), temperature)
    assert p.item() == pytest.approx(expected, abs=1e-12)


def test_probabilities_are_symmetric_and_inputs_untouched() -> None:
    a, b = torch.tensor([0.2, -1.0, 3.0]), torch.tensor([0.0, 0.5, 2.0])
    saved = a.clone(), b.clone()
    p_ab, p_ba = preference_probability(a, b, 0.7), preference_probability(b, a, 0.7)
    assert torch.allclose(p_ab + p_ba, torch.ones(3, dtype=p_ab.dtype))
    assert torch.equal(a, saved[0]) and torch.equal(b, saved[1])


def test_label_frequency_matches_the_probability() -> None:
    # 20,000 draws per pair: the frequency's std is at most 0.0035, so 0.015 is over 4 std.
    n = 20_000
    a = torch.tensor([0.0, 0.5, 1.0, 2.0]).repeat_interleave(n)
    b = torch.full_like(a, 0.5)
    labels = sample_preferences(a, b, 0.5, generator(1))
    assert labels.dtype == torch.bool and labels.shape == a.shape
    frequency = labels.view(4, n).double().mean(dim=1)
    expected = preference_probability(a.view(4, n)[:, 0], b.view(4, n)[:, 0], 0.5)
    assert torch.allclose(frequency, expected, atol=0.015)


def test_temperature_towards_zero_gives_the_deterministic_order() -> None:
    a = torch.tensor([0.10, 0.20, -3.0, 5.0, 0.0])
    b = torch.tensor([0.09, 0.21, -4.0, 6.0, 1e-3])
    for seed in range(5):
        labels = sample_preferences(a, b, 1e-9, generator(seed))
        assert labels.tolist() == (a > b).tolist()


def test_labels_depend_only_on_the_generator() -> None:
    a, b = torch.zeros(100), torch.zeros(100)
    state = torch.get_rng_state()
    first = sample_preferences(a, b, 1.0, generator(3))
    assert torch.equal(first, sample_preferences(a, b, 1.0, generator(3)))
    assert not torch.equal(first, sample_preferences(a, b, 1.0, generator(4)))
    assert torch.equal(state, torch.get_rng_state())  # the global stream is untouched


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, math.inf, math.nan, None, "hot"])
def test_bad_temperature_raises(temperature) -> None:
    with pytest.raises(ValueError, match="temperature"):
        preference_probability(torch.zeros(1), torch.zeros(1), temperature)
    with pytest.raises(ValueError, match="temperature"):
        sample_preferences(torch.zeros(1), torch.zeros(1), temperature, generator())
