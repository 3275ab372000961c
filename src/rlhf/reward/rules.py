"""Rule-based rewards: Python functions `(prompts, responses) -> list[float]` usable as
`model.reward: rlhf.reward.rules:NAME`. They make PPO runnable and testable with no reward
model at all, and show how to plug in your own.
"""

from __future__ import annotations

import functools
import re

from rlhf.data.synthetic import descriptiveness_pairs

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@functools.lru_cache(maxsize=1)
def vivid_words() -> frozenset[str]:
    """Words the synthetic task's preferred (vivid) continuations use and plain ones never do."""
    pairs = descriptiveness_pairs(2000, seed=0)
    chosen = {w for p in pairs for w in WORD.findall(p["chosen"].lower())}
    rejected = {w for p in pairs for w in WORD.findall(p["rejected"].lower())}
    return frozenset(chosen - rejected)


def vivid_word_fraction(prompts: list[str], responses: list[str]) -> list[float]:
    """Share of a response's words that are vivid, descriptive words (0 for no words)."""
    vivid = vivid_words()
    scores = []
    for response in responses:
        words = WORD.findall(response.lower())
        scores.append(sum(w in vivid for w in words) / len(words) if words else 0.0)
    return scores


def response_length(prompts: list[str], responses: list[str]) -> list[float]:
    """Number of characters of the response: a trivial reward for smoke tests."""
    return [float(len(r)) for r in responses]
