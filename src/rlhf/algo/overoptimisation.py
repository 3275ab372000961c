"""Over-optimisation: the training (proxy) reward keeps rising while a held-out evaluation
(gold) reward of the same responses has turned down.

Gao et al. (2022, "Scaling Laws for Reward Model Overoptimization") show the gold reward of a
policy optimised against a proxy reward model first rises with sqrt(KL to the initial policy),
peaks, then falls while the proxy keeps rising: the policy has found what the proxy rewards
and the gold does not. A run cannot see the peak until it is past, so the alarm asks: has the
gold stayed below its best for `patience` evaluations, while the proxy now stands above its
value at that best? Pure Python on the evaluation history, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence


def past_the_peak(proxy: Sequence[float], gold: Sequence[float], patience: int) -> bool:
    """True when the last `patience` evaluations all came after the gold reward's best one
    (its first best, so a plateau counts from where it began) and the proxy reward of the
    latest evaluation is above the proxy's value at that best."""
    if len(proxy) != len(gold):
        raise ValueError(f"one proxy and one gold value per evaluation; got {len(proxy)} and "
                         f"{len(gold)}")
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    if len(gold) <= patience:
        return False
    best = max(range(len(gold)), key=lambda index: (gold[index], -index))
    return len(gold) - 1 - best >= patience and proxy[-1] > proxy[best]
