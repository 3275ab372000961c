"""Best-of-n sampling: draw n responses from the policy, keep the one the reward scores highest.

It is the RLHF baseline that needs no training (Stiennon et al. 2020, "Learning to summarize
from human feedback"; Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization"), and
the KL it spends is known in closed form, so it can be plotted on the same KL axis as PPO.
"""

from __future__ import annotations

import math
import operator

import torch


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base policy) in nats as Stiennon et al. 2020 and Gao et al. 2022 give
    it: log n - (n - 1) / n (0 for n = 1, growing like log n).

    It is an upper bound on the true KL (Beirami et al. 2024, "Theoretical guarantees on the
    best-of-n alignment policy"), reached only when every single response has vanishing
    probability (a continuous distribution: then F(best) ~ Beta(n, 1) and the KL is
    log n + (n - 1) E[log F] = log n - (n - 1) / n). A policy that puts real mass on some
    responses draws them repeatedly, which makes the true KL smaller. For a language model
    whose sampled responses rarely repeat the bound is tight.
    """
    try:
        count = operator.index(n)  # a whole number: 4 or numpy's int64, not 4.0 or True
    except TypeError:
        raise ValueError(f"best-of-n needs a whole number n >= 1, got {n!r}") from None
    if isinstance(n, bool) or count < 1:
        raise ValueError(f"best-of-n needs a whole number n >= 1, got {n!r}")
    return math.log(count) - (count - 1) / count


def best_of_n(scores: torch.Tensor) -> torch.Tensor:
    """(P,) long: for each prompt (row) of `scores` (P, n), the index of its best candidate.

    Ties go to the lowest index (argmax returns the first maximum), so the choice is
    deterministic. A non-finite score (NaN, +inf or -inf: a broken reward) is never picked
    over a finite one: NaN compares false with everything, so without this guard argmax would
    return it, and a +inf is more likely a bug than the best response. A row whose scores are
    all non-finite has no best candidate: ValueError naming the row.
    """
    if scores.dim() != 2 or scores.shape[1] == 0:
        raise ValueError(f"best_of_n needs (prompts, n >= 1) scores, got shape "
                         f"{tuple(scores.shape)}")
    if not scores.is_floating_point():
        return scores.argmax(dim=1)  # (P,) integers are all finite
    finite = torch.isfinite(scores)  # (P, n)
    hopeless = ~finite.any(dim=1)  # (P,)
    if bool(hopeless.any()):
        row = int(hopeless.nonzero()[0])
        raise ValueError(f"row {row}: all {scores.shape[1]} candidate scores are NaN or "
                         "infinite; check the reward")
    return scores.masked_fill(~finite, -math.inf).argmax(dim=1)  # (P,)
