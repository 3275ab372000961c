"""Noisy preference labels from scores under the Bradley-Terry model.

Bradley & Terry (1952, "Rank Analysis of Incomplete Block Designs: I. The Method of Paired
Comparisons") model the chance that a is preferred to b as sigmoid(r_a - r_b); a reward model's
pairwise loss is that model's negative log-likelihood. Gao et al. (2022, "Scaling Laws for
Reward Model Overoptimization") label pairs with a gold reward this way: drawing the label
from the probability, instead of taking the higher score, gives the label noise that human
labellers have, so a proxy reward model trained on the labels is an imperfect stand-in for
the gold, as real reward models are. The temperature sets how noisy: near 0 the higher score
always wins, large the label is a coin flip.
"""

from __future__ import annotations

import math

import torch


def preference_probability(score_a: torch.Tensor, score_b: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """P(a preferred to b) = sigmoid((a - b) / temperature), elementwise, (B,) from (B,) scores.

    `temperature` must be a finite number > 0 (ValueError otherwise): the scores' scale at
    which a difference of one temperature gives 73 % / 27 %.
    """
    try:
        valid = math.isfinite(float(temperature)) and float(temperature) > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    score_a, score_b = torch.as_tensor(score_a), torch.as_tensor(score_b)
    return torch.sigmoid((score_a.double() - score_b.double()) / float(temperature))  # (B,)


def sample_preferences(score_a: torch.Tensor, score_b: torch.Tensor, temperature: float,
                       generator: torch.Generator) -> torch.Tensor:
    """(B,) bool, True where a is preferred: one Bernoulli draw per pair from
    `preference_probability` (Gao et al. 2022's noisy gold labels). The draws come from
    `generator` only, so the labels depend on its seed and nothing else."""
    probability = preference_probability(score_a, score_b, temperature)  # (B,)
    uniform = torch.rand(probability.shape, generator=generator, dtype=torch.float64,
                         device=generator.device)  # (B,)
    return uniform.to(probability.device) < probability
