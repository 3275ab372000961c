"""A gold reward for the synthetic "descriptiveness" scenes: the ground truth of issue 17's
over-optimisation benchmark (after Gao et al. 2022, "Scaling Laws for Reward Model
Overoptimization").

Gao et al. label preferences with a large "gold" reward model, train smaller proxy reward
models on those labels, optimise a policy against a proxy and watch the gold score rise, then
fall, as the policy drifts (KL) from where it started. Here the gold is a documented rule that
grades a continuation of a `rlhf.data.synthetic` scene opening the way the task's imagined
labeller would: vivid, relevant, well-formed text of a sensible length. It is deterministic,
pure Python and continuous (many levels, not the two of `rules.vivid_word_fraction`), so a
proxy can be checked against it. `gold_parts` shows how a score is made.

    total = vivid + relevance - repetition - nonwords - broken - length - density

Components and constants (each penalty is >= 0). On `descriptiveness_pairs(2000, seed=0)` a
plain continuation scores 0.04 to 0.20 and a vivid one 0.67 to 1.01 (the vivid one wins in
every pair; 71 distinct values over the 4,000 texts); word salad and empty text go below 0.

- vivid = 1.0 * (1 - exp(-n / 3)), n = the DISTINCT vivid features: each vivid adjective,
  vivid verb or texture word counts 1, each sensory phrase (smell, sound, light: a whole image)
  1.5. Diminishing returns: one adjective is worth 0.28, ten are worth 0.96 (3.4 times, not
  10); a repeated feature is worth nothing more. k = 3 puts the synthetic vivid continuations
  (n = 2.5 to 5) on the steep-but-bending part of the curve, so one more feature still pays a
  little and a pile pays little.
- relevance = 0.3 * (1 - exp(-m)), m = how many of the scene's spots the response mentions
  (the prompt's subject looked up in `PLACES`): 0.19 for one, 0.26 for two. 0 when the prompt
  is not a known scene. Smaller than vivid: staying in the scene is expected, not admired.
- repetition = 0.5 * (1 - distinct words / words) + 1.0 * (1 - distinct trigrams / trigrams)
  + 0.5 per sentence that repeats an earlier one (at most 2). The first term is never 0 in
  natural text ("the", "and" recur): it is gentle (0 to 0.15 on the synthetic texts) and
  makes the score continuous; trigram and sentence repeats do not occur in the templates, so
  they only hit text that loops, as degenerate samples do.
- nonwords = 2.0 * the fraction of whitespace-separated pieces (outer punctuation stripped)
  that are not words of the synthetic task's vocabulary (every word of its lists and
  templates). Large: gibberish must never beat a plain sentence.
- broken = 0.3 if the text does not end with . ! or ? (a closing quote may follow), + 0.3 *
  the fraction of sentences not starting with a capital, + 0.3 * the fraction of fragments
  (sentences under 3 words), + 0.2 if brackets or double quotes are unbalanced.
- length = 1.0 * (6 - words) / 6 below 6 words (the shortest template has 6; the empty
  response gets the whole 1.0), + 0.5 * (words - 40) / 40 above 40 words, capped at 0.5.
- density = 1.0 * (share - 0.35) / 0.65 when the share of single vivid words (adjectives,
  verbs, textures) among all words exceeds 0.35 (the templates stay under 0.25): stacking
  adjectives with nothing to hang them on reads worse, not better. This is what makes
  over-optimising a proxy that learned "vivid words are good" visible as a falling gold score.

The empty response scores -1.3 (too short, no final punctuation), never an error.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass

from rlhf.data import synthetic

VIVID_SCALE, VIVID_K, PHRASE_WEIGHT = 1.0, 3.0, 1.5
RELEVANCE_SCALE = 0.3
WORD_REPEAT, TRIGRAM_REPEAT, SENTENCE_REPEAT, MAX_SENTENCE_REPEATS = 0.5, 1.0, 0.5, 2
NONWORD = 2.0
NO_FINAL_STOP, NOT_CAPITALISED, FRAGMENT, UNBALANCED = 0.3, 0.3, 0.3, 0.2
FRAGMENT_WORDS = 3
SHORT, SHORT_WORDS, LONG, LONG_WORDS = 1.0, 6, 0.5, 40
DENSITY, DENSITY_FREE = 1.0, 0.35

OUTER_PUNCTUATION = ".,;:!?\"'()"
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]*\s+")
FINAL_STOP = re.compile(r"[.!?][\"')]*$")
TEMPLATE_SLOT = re.compile(r"\{\w+\}")


@dataclass(frozen=True)
class GoldParts:
    """One response's gold score and how it is made: two rewards, five penalties (each >= 0)."""

    vivid: float
    """Distinct vivid features through 1 - exp(-n / k): diminishing returns."""
    relevance: float
    """Mentions of the prompt's scene (its spots); 0 for an unknown scene."""
    repetition: float
    """Repeated words, trigrams and sentences."""
    nonwords: float
    """Pieces that are not words of the task's vocabulary."""
    broken: float
    """No final punctuation, uncapitalised sentences, fragments, unbalanced quotes/brackets."""
    length: float
    """Too short (under 6 words, the empty response most) or rambling (over 40)."""
    density: float
    """Single vivid words stacked beyond a natural share of the text."""
    total: float
    """vivid + relevance - repetition - nonwords - broken - length - density."""


def gold_descriptiveness(prompts: list[str], responses: list[str]) -> list[float]:
    """The gold score of each (prompt, response): `model.reward: rlhf.reward.gold:
    gold_descriptiveness` in an RL config, `--reward` of `rlhf label-pairs`."""
    return [gold_parts(prompt, response).total
            for prompt, response in zip(prompts, responses, strict=True)]


def gold_parts(prompt: str, response: str) -> GoldParts:
    """Every component of one response's gold score (see the module docstring)."""
    pieces = response.split()
    words = [piece.strip(OUTER_PUNCTUATION).lower() for piece in pieces]
    words = [word for word in words if word]
    singles, n_features = vivid_features(response)
    vivid = VIVID_SCALE * (1 - math.exp(-n_features / VIVID_K))
    relevance = RELEVANCE_SCALE * (1 - math.exp(-len(scene_mentions(prompt, response))))
    vocabulary = task_vocabulary()
    unknown = sum(piece.strip(OUTER_PUNCTUATION).lower() not in vocabulary for piece in pieces)
    nonwords = NONWORD * unknown / len(pieces) if pieces else 0.0
    density = 0.0
    if words and singles / len(words) > DENSITY_FREE:
        density = DENSITY * (singles / len(words) - DENSITY_FREE) / (1 - DENSITY_FREE)
    penalties = {"repetition": repetition_penalty(response, words),
                 "nonwords": nonwords, "broken": broken_penalty(response),
                 "length": length_penalty(len(words)), "density": density}
    total = vivid + relevance - sum(penalties.values())
    return GoldParts(vivid=vivid, relevance=relevance, total=round(total, 12), **penalties)


@functools.lru_cache(maxsize=1)
def task_vocabulary() -> frozenset[str]:
    """Every word of the synthetic task's word lists and templates, lower case (built once).

    The lists are the whole language of the task: any continuation `descriptiveness_pairs`
    or `descriptiveness_corpus` makes uses only these words (plus "an", from the article
    fix-up), so a word outside them is a non-word for this task.
    """
    texts = [*synthetic.GENERIC_PREDICATES, *synthetic.NAMES, *synthetic.ACTIONS,
             *synthetic.THINGS, *synthetic.PLAIN_ADJECTIVES, *synthetic.VIVID_ADJECTIVES,
             *synthetic.VIVID_VERBS, *synthetic.SMELLS, *synthetic.SOUNDS, *synthetic.LIGHTS,
             *synthetic.TEXTURES, *synthetic.PLAIN_TEMPLATES, *synthetic.VIVID_TEMPLATES, "an"]
    for subject, predicate, spots in synthetic.PLACES:
        texts += [subject, predicate, *spots]
    words = (piece.strip(OUTER_PUNCTUATION).lower()
             for text in texts for piece in TEMPLATE_SLOT.sub(" ", text).split())
    return frozenset(word for word in words if word)


@functools.lru_cache(maxsize=1)
def _feature_patterns() -> tuple[re.Pattern, frozenset[str]]:
    """(one regex matching any sensory phrase, the set of single vivid words)."""
    phrases = sorted({*synthetic.SMELLS, *synthetic.SOUNDS, *synthetic.LIGHTS}, key=len,
                     reverse=True)  # longest first: "the amber glow of the lanterns" wins
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, phrases)) + r")(?![\w-])")
    singles = frozenset(w.lower() for w in (*synthetic.VIVID_ADJECTIVES, *synthetic.VIVID_VERBS,
                                            *synthetic.TEXTURES))
    return pattern, singles


def vivid_features(response: str) -> tuple[int, float]:
    """(single vivid words in the text, counting repeats; the weighted number of DISTINCT
    vivid features). Phrases are matched first and taken out, so the "amber" inside "the
    amber glow of the lanterns" is part of one light image, not a second feature."""
    pattern, singles = _feature_patterns()
    text = response.lower()
    phrases = set(pattern.findall(text))
    rest = [piece.strip(OUTER_PUNCTUATION) for piece in pattern.sub(" ", text).split()]
    vivid_words = [word for word in rest if word in singles]
    return len(vivid_words), len(set(vivid_words)) + PHRASE_WEIGHT * len(phrases)


def _scene_spots(prompt: str) -> list[str]:
    """The spots of the scene the prompt opens: the longest PLACES subject found in it (a
    rendered prompt may wrap the opening in a template), or none for an unknown scene."""
    lowered = prompt.lower()
    found = [(len(subject), spots) for subject, _, spots in synthetic.PLACES
             if subject.lower() in lowered]
    return max(found, key=lambda item: item[0])[1] if found else []


def scene_mentions(prompt: str, response: str) -> set[str]:
    """The prompt's scene spots that the response names (whole words, any case)."""
    text = response.lower()
    return {spot for spot in _scene_spots(prompt)
            if re.search(r"(?<![\w-])" + re.escape(spot) + r"(?![\w-])", text)}


def repetition_penalty(response: str, words: list[str]) -> float:
    """Repeated words (gentle, always a little), trigrams and whole sentences (harsh)."""
    if not words:
        return 0.0
    penalty = WORD_REPEAT * (1 - len(set(words)) / len(words))
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if trigrams:
        penalty += TRIGRAM_REPEAT * (1 - len(set(trigrams)) / len(trigrams))
    sentences = [" ".join(s.lower().split()).strip(OUTER_PUNCTUATION) for s in _sentences(response)]
    repeats = sum(count - 1 for sentence, count in Counter(sentences).items() if sentence)
    return penalty + SENTENCE_REPEAT * min(repeats, MAX_SENTENCE_REPEATS)


def _sentences(response: str) -> list[str]:
    """The text cut after each . ! or ? (and any closing quote or bracket) before a space."""
    return [s for s in SENTENCE_END.split(response.strip()) if s.strip()]


def broken_penalty(response: str) -> float:
    """Missing final punctuation, sentences without a capital, fragments, unbalanced marks."""
    text = response.strip()
    penalty = 0.0 if FINAL_STOP.search(text) else NO_FINAL_STOP
    sentences = _sentences(text)
    if sentences:
        lower = sum(not s.lstrip("\"'(")[:1].isupper() for s in sentences)
        fragments = sum(len(s.split()) < FRAGMENT_WORDS for s in sentences)
        penalty += (NOT_CAPITALISED * lower + FRAGMENT * fragments) / len(sentences)
    if text.count("(") != text.count(")") or text.count('"') % 2:
        penalty += UNBALANCED
    return penalty


def length_penalty(n_words: int) -> float:
    """Linear below SHORT_WORDS (the empty response: all of SHORT), and above LONG_WORDS up to
    LONG: a scene continuation is a sentence or two."""
    if n_words < SHORT_WORDS:
        return SHORT * (SHORT_WORDS - n_words) / SHORT_WORDS
    return LONG * min(1.0, max(0, n_words - LONG_WORDS) / LONG_WORDS)
