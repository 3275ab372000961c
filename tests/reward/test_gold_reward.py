"""rlhf.reward.gold: the gold reward of the synthetic descriptiveness task grades continuously,
prefers the vivid continuation, pays less and less for more vivid words, and punishes
repetition, gibberish, broken sentences and length extremes (issue 17)."""

import math
import random

import pytest

from rlhf.data.synthetic import VIVID_ADJECTIVES, descriptiveness_pairs
from rlhf.reward.gold import GoldParts, gold_descriptiveness, gold_parts, task_vocabulary
from rlhf.reward.scorers import load_function_scorer

HARBOUR = "The harbour was quiet before dawn."
RELEVANT = 0.3 * (1 - math.exp(-1))  # one of the scene's spots mentioned


@pytest.fixture(scope="module")
def pairs() -> list[dict[str, str]]:
    return descriptiveness_pairs(2000, seed=0)


@pytest.fixture(scope="module")
def gold_pairs(pairs) -> tuple[list[float], list[float]]:
    prompts = [p["prompt"] for p in pairs]
    return (gold_descriptiveness(prompts, [p["chosen"] for p in pairs]),
            gold_descriptiveness(prompts, [p["rejected"] for p in pairs]))


def test_the_vivid_continuation_wins_almost_always(gold_pairs) -> None:
    chosen, rejected = gold_pairs
    fraction = sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)
    assert fraction >= 0.95  # measured: 1.0 on these 2,000 pairs


def test_scores_take_many_values_not_two(gold_pairs) -> None:
    chosen, rejected = gold_pairs
    assert len(set(chosen + rejected)) > 50  # measured: 71
    assert len(set(chosen)) > 20 and len(set(rejected)) > 5


def test_hand_computed_vivid_sentence() -> None:
    parts = gold_parts(HARBOUR, "A weathered boat glinted beside the pier.")
    # two distinct vivid words (weathered, glinted); "pier" is a harbour spot; 7 clean words
    assert parts.vivid == pytest.approx(1 - math.exp(-2 / 3))
    assert parts.relevance == pytest.approx(RELEVANT)
    assert (parts.repetition, parts.nonwords, parts.broken, parts.length, parts.density) == (
        0, 0, 0, 0, 0)
    assert parts.total == pytest.approx(0.486583 + 0.189636, abs=1e-6)


def test_hand_computed_broken_plain_sentence() -> None:
    parts = gold_parts(HARBOUR, "there was a cat near the pier")
    assert parts.vivid == 0 and parts.relevance == pytest.approx(RELEVANT)
    assert parts.broken == pytest.approx(0.3 + 0.3)  # no final stop; no capital (1 of 1)
    assert parts.total == pytest.approx(RELEVANT - 0.6)


def test_hand_computed_stacked_repeats_off_scene() -> None:
    parts = gold_parts("Hello there.", "Amber amber amber.")
    assert parts.vivid == pytest.approx(1 - math.exp(-1 / 3))  # one distinct feature
    assert parts.relevance == 0  # not a known scene
    assert parts.repetition == pytest.approx(0.5 * (1 - 1 / 3))  # 1 distinct word of 3
    assert parts.length == pytest.approx((6 - 3) / 6)
    assert parts.density == pytest.approx(1.0)  # every word a vivid word
    assert parts.total == pytest.approx(parts.vivid - parts.repetition - 0.5 - 1.0)


def test_parts_add_up_and_are_frozen(pairs) -> None:
    for pair in pairs[:50]:
        parts = gold_parts(pair["prompt"], pair["chosen"])
        assert parts.total == pytest.approx(
            parts.vivid + parts.relevance - parts.repetition - parts.nonwords - parts.broken
            - parts.length - parts.density)
    with pytest.raises(AttributeError):
        parts.total = 1.0  # type: ignore[misc]
    assert isinstance(parts, GoldParts)


def test_repeating_the_vivid_phrase_three_times_scores_lower(pairs) -> None:
    response = "A weathered boat glinted beside the pier, and the air smelled of lavender."
    repeated = response[:-1] + ", lavender, lavender, lavender."
    assert gold_parts(HARBOUR, repeated).total < gold_parts(HARBOUR, response).total
    for pair in pairs[:200]:
        chosen = pair["chosen"]
        looped = chosen[:-1] + ", " + ", ".join([chosen.split()[-1].rstrip(".")] * 3) + "."
        again = " ".join([chosen] * 3)
        score = gold_descriptiveness([pair["prompt"]] * 3, [chosen, looped, again])
        assert score[1] < score[0] and score[2] < score[0]


def test_random_letters_score_below_a_plain_sentence() -> None:
    rng = random.Random(0)
    plain = gold_parts(HARBOUR, "There was a cat near the pier.").total
    for _ in range(20):
        gibberish = " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                                     for _ in range(rng.randint(2, 9)))
                             for _ in range(rng.randint(5, 20))) + "."
        assert gold_parts(HARBOUR, gibberish).total < plain


def test_piling_up_vivid_adjectives_has_diminishing_returns() -> None:
    base = gold_parts(HARBOUR, "A boat stood by the pier in the morning.")
    one = gold_parts(HARBOUR, "A weathered boat stood by the pier in the morning.")
    ten = gold_parts(HARBOUR, "A " + ", ".join(VIVID_ADJECTIVES[:10])
                     + " boat stood by the pier in the morning.")
    assert one.total > base.total
    assert ten.total - base.total < 10 * (one.total - base.total)
    assert ten.vivid < 10 * one.vivid
    steps = [gold_parts(HARBOUR, " ".join(VIVID_ADJECTIVES[:k]) + " boat by the pier.").vivid
             for k in range(8)]
    gains = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert all(g > 0 for g in gains) and all(b < a for a, b in zip(gains, gains[1:],
                                                                    strict=False))


def test_repeating_a_vivid_word_adds_no_feature() -> None:
    once = gold_parts(HARBOUR, "A golden boat rocked by the pier.")
    twice = gold_parts(HARBOUR, "A golden boat rocked by the golden pier.")
    assert twice.vivid == once.vivid and twice.total < once.total


def test_missing_final_punctuation_scores_lower(pairs) -> None:
    for pair in pairs[:200]:
        for response in (pair["chosen"], pair["rejected"]):
            cut = response.rstrip(".")
            assert gold_parts(pair["prompt"], cut).total < gold_parts(pair["prompt"],
                                                                       response).total


def test_empty_and_blank_responses_score_low_without_error(gold_pairs) -> None:
    lowest = min(min(gold_pairs[0]), min(gold_pairs[1]))
    for response in ("", "   ", "\n"):
        assert gold_parts(HARBOUR, response).total == pytest.approx(-1.3)
        assert gold_parts(HARBOUR, response).total < lowest


def test_relevance_needs_the_prompts_scene() -> None:
    response = "A weathered boat glinted beside the pier."
    assert gold_parts("Something else entirely.", response).relevance == 0
    assert gold_parts("The beach stretched for miles.", response).relevance == 0  # not its spot
    rendered = f"### Instruction:\n{HARBOUR}\n\n### Response:\n"
    assert gold_parts(rendered, response).relevance == pytest.approx(RELEVANT)
    two = gold_parts(HARBOUR, "A weathered boat glinted by the pier and the nets.")
    assert two.relevance == pytest.approx(0.3 * (1 - math.exp(-2)))


def test_vocabulary_covers_the_synthetic_corpus(pairs) -> None:
    vocabulary = task_vocabulary()
    for pair in pairs[:300]:
        for text in pair.values():
            assert gold_parts(pair["prompt"], text).nonwords == 0, text
    assert "moss-covered" in vocabulary and "an" in vocabulary and "xyzzy" not in vocabulary


def test_usable_as_a_reward_function_name() -> None:
    scorer = load_function_scorer("rlhf.reward.gold:gold_descriptiveness")
    scores = scorer([HARBOUR, HARBOUR], ["A weathered boat glinted beside the pier.", ""])
    assert scores.tolist() == pytest.approx([0.676219, -1.3], abs=1e-6)
