"""Rule-based rewards: Python functions `(prompts, responses) -> list[float]` usable as
`model.reward: rlhf.reward.rules:NAME`. They make PPO runnable and testable with no reward
model at all, and show how to plug in your own.
"""

from __future__ import annotations

import functools
import re

from rlhf.data.synthetic import arithmetic_prompt, descriptiveness_pairs
from rlhf.errors import UserError

WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
ARITHMETIC_PROBLEM = re.compile(r"Q: (\d+) ([+-]) (\d+) = \? A:")
INTEGER = re.compile(r"-?\d+")
CORRECT_SCORE, FORMAT_SCORE = 1.0, 0.1


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


class NotArithmeticPromptError(UserError, ValueError):
    """A prompt `arithmetic_answer` cannot read. A ValueError for callers in Python, and a
    UserError so that the CLI prints the message on one line instead of a traceback."""


def arithmetic_answer(prompts: list[str], responses: list[str]) -> list[float]:
    """Verifiable reward for `builtin:arithmetic` prompts ("Q: 3 + 4 = ? A:").

    A rule, not a model, checks the answer, after DeepSeek-R1's accuracy and format rewards
    (Guo et al. 2025). Per response:

    - 1.0: the first integer in the response (sign included) equals the answer, wherever it
      is ("7", " 7 apples" and " I think 7" all score 1.0 for 3 + 4);
    - 0.1: the response starts, after whitespace, with an integer that is wrong: the format
      reward, which lets a tiny random policy first learn to answer with a number at all;
    - 0.0: anything else (no number, or text before a wrong number).

    A prompt in any other format raises `NotArithmeticPromptError` (a ValueError) naming it:
    the data is not what this reward checks.
    """
    return [_arithmetic_score(_arithmetic_solution(prompt), response)
            for prompt, response in zip(prompts, responses, strict=True)]


def _arithmetic_solution(prompt: str) -> int:
    """The answer to a prompt of `rlhf.data.synthetic.arithmetic_prompt`'s format."""
    match = ARITHMETIC_PROBLEM.fullmatch(prompt.strip())
    if match is None:
        shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        raise NotArithmeticPromptError(
            f"arithmetic_answer: prompt {shown!r} is not an arithmetic problem like "
            f"{arithmetic_prompt(3, '+', 4)!r}; use data.path builtin:arithmetic (with "
            "data.template prompt) or prompts in that format")
    left, operator, right = int(match[1]), match[2], int(match[3])
    return left + right if operator == "+" else left - right


def _arithmetic_score(solution: int, response: str) -> float:
    """1.0 correct, 0.1 a wrong integer up front, 0.0 otherwise (see arithmetic_answer)."""
    first = INTEGER.search(response)
    if first is not None and int(first[0]) == solution:
        return CORRECT_SCORE
    return FORMAT_SCORE if INTEGER.match(response.lstrip()) else 0.0
