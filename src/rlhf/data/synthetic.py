"""A synthetic "descriptiveness" preference task that mirrors the reference workload.

OpenAI's lm-human-preferences descriptiveness task (Ziegler et al. 2019) asked people to prefer
the more vividly descriptive of two continuations of a story opening. The real labels cannot be
downloaded on build machines, so this module makes a stand-in from templates and word lists:
each prompt opens a scene ("The old lighthouse stood at the edge of the cliff."), `rejected`
continues it plainly and `chosen` continues it with colour, light, sound and smell.

The two continuations talk about the same thing in the same place (shared nouns), and length is
a weak cue only: some vivid continuations are short and dense and some plain ones ramble, so a
reward model has to learn which words describe, not just count tokens.

`descriptiveness_pairs` feeds `load_rows("builtin:descriptiveness")` (see `rlhf.data.sources`);
`descriptiveness_corpus` trains the built-in models' tokenizer. Both depend only on `seed`.

`arithmetic_problems` feeds `load_rows("builtin:arithmetic")`: one-digit sums and differences
("Q: 3 + 4 = ? A:") whose answers a rule can check (`rlhf.reward.rules:arithmetic_answer`), so
a verifiable-reward run (GRPO on maths, in miniature) needs no download either.
"""

from __future__ import annotations

import random
import re

# (scene subject, the predicate that suits it best, spots inside the scene)
PLACES: list[tuple[str, str, list[str]]] = [
    ("The old lighthouse", "stood at the edge of the cliff", ["stairs", "lamp", "door", "rocks"]),
    ("The harbour", "was quiet before dawn", ["pier", "boats", "nets", "water"]),
    ("The village market", "filled the square every Saturday", ["stalls", "fountain", "carts",
                                                                "crates"]),
    ("The abandoned train station", "had been closed for years", ["platform", "tracks", "clock",
                                                                  "benches"]),
    ("The farmhouse kitchen", "was the warmest room in the house", ["stove", "table", "window",
                                                                    "shelves"]),
    ("The forest path", "wound between the hills", ["trees", "stream", "stones", "ferns"]),
    ("The little bookshop", "sat on a narrow street", ["shelves", "counter", "window", "stairs"]),
    ("The mountain cabin", "was a day's walk from the road", ["porch", "fireplace", "roof",
                                                              "woodpile"]),
    ("The garden behind the house", "had grown wild over the summer", ["roses", "wall", "path",
                                                                       "pond"]),
    ("The city square", "was crowded at noon", ["statue", "fountain", "steps", "cafe"]),
    ("The river bank", "was where the children played", ["reeds", "water", "bridge", "mud"]),
    ("The school hall", "smelled of floor polish", ["stage", "chairs", "piano", "windows"]),
    ("The museum", "opened its doors at nine", ["paintings", "columns", "stairs", "floor"]),
    ("The bakery on the corner", "opened before sunrise", ["ovens", "counter", "window",
                                                           "shelves"]),
    ("The hotel lobby", "had seen better days", ["carpet", "desk", "chandelier", "sofa"]),
    ("The old church", "stood at the top of the hill", ["bell", "pews", "windows", "graveyard"]),
    ("The beach", "stretched for miles", ["dunes", "waves", "sand", "rocks"]),
    ("The meadow", "lay beyond the last farm", ["grass", "flowers", "fence", "oak"]),
    ("The attic", "had not been opened in years", ["boxes", "rafters", "trunk", "window"]),
    ("The cafe", "was nearly empty", ["tables", "counter", "window", "terrace"]),
    ("The fishing village", "clung to the side of the bay", ["cottages", "nets", "boats",
                                                             "harbour wall"]),
    ("The courtyard", "was hidden behind the gate", ["well", "arches", "ivy", "cobbles"]),
    ("The desert camp", "was set up near the dunes", ["tents", "fire", "camels", "sand"]),
    ("The orchard", "ran down to the river", ["apple trees", "ladders", "baskets", "grass"]),
    ("The workshop", "was full of half-finished chairs", ["bench", "tools", "shavings",
                                                          "window"]),
    ("The night train", "rolled through the valley", ["carriage", "window", "seats", "corridor"]),
    ("The castle ruins", "overlooked the valley", ["walls", "tower", "gate", "moat"]),
    ("The greenhouse", "was warm even in winter", ["plants", "glass", "pots", "benches"]),
    ("The snowy street", "was silent after midnight", ["lamps", "doorways", "cars", "fences"]),
    ("The island", "could only be reached by boat", ["cliffs", "beach", "pier", "lighthouse"]),
]

GENERIC_PREDICATES = [
    "was quiet that morning", "had not changed in years", "came into view as the sun went down",
    "was busier than usual", "was the last place we visited", "was empty when we arrived",
    "looked the same as I remembered", "was where the story began", "sat under a grey sky",
    "was cold after the rain", "was full of people", "was hidden behind the trees",
    "was the first thing she saw", "had a long history",
]

NAMES = ["Maria", "Tom", "Aisha", "Jonas", "Mei", "Samuel", "Elena", "Kofi", "Priya", "Lucas"]
ACTIONS = [
    "walked inside", "set down a heavy bag", "stopped at the door", "looked around",
    "took a deep breath", "sat down to rest", "waited for the others", "followed the path",
]
THINGS = [
    "cat", "bench", "lamp", "basket", "dog", "table", "bicycle", "boat", "fisherman", "woman",
    "child", "bird", "chair", "box", "flag", "clock", "cart", "coat", "jar", "rope",
]
PLAIN_ADJECTIVES = ["big", "small", "nice", "okay", "normal", "fine", "usual", "plain"]
VIVID_ADJECTIVES = [
    "weathered", "crimson", "glittering", "velvety", "moss-covered", "sun-bleached", "amber",
    "silvery", "crumbling", "gleaming", "rust-red", "fragrant", "misty", "copper", "ivory",
    "jagged", "emerald", "smoky", "golden", "frost-rimmed", "salt-stained", "lacquered",
    "dappled", "ink-dark", "honey-coloured", "sea-green", "scarlet", "shadowy",
]
VIVID_VERBS = [
    "glinted", "shimmered", "swayed", "gleamed", "flickered", "creaked", "trembled", "glowed",
    "shivered", "sparkled",
]
SMELLS = [
    "salt and woodsmoke", "fresh bread", "wet pine needles", "cinnamon and rain", "burnt sugar",
    "old paper and dust", "lavender", "seaweed", "strong coffee", "cut grass",
]
SOUNDS = [
    "the distant toll of a bell", "the hiss of the sea", "the murmur of voices",
    "the soft patter of rain", "the cry of gulls", "the crackle of a fire",
    "the rustle of leaves", "the slow tick of a clock",
]
LIGHTS = [
    "the amber glow of the lanterns", "the pale morning light", "the last crimson light",
    "the flickering candlelight", "the silver moonlight", "the dusty shafts of sunlight",
]
TEXTURES = ["rough", "polished", "velvety", "cracked", "glossy", "brittle"]

# Plain continuations: the same facts, no colour. Some are long and rambling on purpose.
PLAIN_TEMPLATES = [
    "There was a {thing} near the {spot}.",
    "A {thing} was by the {spot}. It was {plain}.",
    "{name} saw a {thing} next to the {spot}.",
    "The {spot} was {plain}. There was a {thing} there too.",
    "It was a normal day. A {thing} was near the {spot} and nothing much happened after that.",
    "We looked around for a while. There was a {thing}, and the {spot} was {plain}. "
    "It was all fine and we went on.",
    "The {thing} was by the {spot}.",
    "Someone had left a {thing} by the {spot}. It was {plain} and it was still there later.",
]

# Vivid continuations: adjectives and sensory detail. Some are short and dense on purpose.
VIVID_TEMPLATES = [
    "A {vadj} {thing} {verb} beside the {vadj2} {spot}, and the air smelled of {smell}.",
    "{light_cap} spilled across the {spot}, where a {vadj} {thing} {verb}.",
    "Near the {spot}, a {thing} {verb} in {light}.",
    "A {vadj} {thing} {verb} by the {spot} while {sound} drifted in.",
    "The scent of {smell} hung over the {vadj} {spot}.",
    "{name} noticed a {vadj} {thing} by the {spot}, its {texture} surface bright in {light}.",
    "{sound_cap} rose from the {spot}; a {vadj2} {thing} {verb}.",
    "Beside the {vadj} {spot}, a {thing} {verb} and {sound} filled the air with the smell "
    "of {smell}.",
]


def _prompt(rng: random.Random) -> tuple[str, list[str]]:
    """A scene opening and the spots a continuation can mention."""
    subject, own_predicate, spots = rng.choice(PLACES)
    predicate = own_predicate if rng.random() < 0.4 else rng.choice(GENERIC_PREDICATES)
    prompt = f"{subject} {predicate}."
    if rng.random() < 0.5:
        prompt += f" {rng.choice(NAMES)} {rng.choice(ACTIONS)}."
    return prompt, spots


ARTICLE_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou])")


def _fill(template: str, rng: random.Random, thing: str, spot: str) -> str:
    """Fill one template; every slot is drawn even if unused so the stream stays aligned."""
    vadj, vadj2 = rng.sample(VIVID_ADJECTIVES, 2)
    light, sound = rng.choice(LIGHTS), rng.choice(SOUNDS)
    text = template.format(
        thing=thing, spot=spot, plain=rng.choice(PLAIN_ADJECTIVES), name=rng.choice(NAMES),
        vadj=vadj, vadj2=vadj2, verb=rng.choice(VIVID_VERBS), smell=rng.choice(SMELLS),
        light=light, light_cap=light[0].upper() + light[1:], sound=sound,
        sound_cap=sound[0].upper() + sound[1:], texture=rng.choice(TEXTURES))
    return ARTICLE_BEFORE_VOWEL.sub(lambda match: match.group(1) + "n ", text)


def _pair(rng: random.Random) -> dict[str, str]:
    prompt, spots = _prompt(rng)
    thing, spot = rng.choice(THINGS), rng.choice(spots)
    chosen = _fill(rng.choice(VIVID_TEMPLATES), rng, thing, spot)
    rejected = _fill(rng.choice(PLAIN_TEMPLATES), rng, thing, spot)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def descriptiveness_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """`n` rows {prompt, chosen, rejected}: chosen is the vivid continuation. Seeded."""
    rng = random.Random(seed)
    return [_pair(rng) for _ in range(n)]


def descriptiveness_corpus(n: int, seed: int) -> list[str]:
    """`n` texts (a scene opening followed by a plain or a vivid continuation), for training a
    tokenizer or a supervised warm-up. Seeded."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        pair = _pair(rng)
        continuation = pair["chosen"] if rng.random() < 0.5 else pair["rejected"]
        texts.append(f"{pair['prompt']} {continuation}")
    return texts


ARITHMETIC_OPERATORS = ("+", "-")
ARITHMETIC_MAX_OPERAND = 9


def arithmetic_prompt(left: int, operator: str, right: int) -> str:
    """The one prompt format `rlhf.reward.rules:arithmetic_answer` parses back."""
    return f"Q: {left} {operator} {right} = ? A:"


def arithmetic_problems(n: int, seed: int) -> list[dict[str, str | int]]:
    """`n` rows {prompt, answer}: a sum or difference of two numbers in 0..9 (so answers are
    short: -9..18, one or two digits and a sign), e.g. "Q: 3 - 7 = ? A:" with answer -4.

    There are only 200 distinct problems, so a 2,000-row split repeats them: the point is a
    reward a tiny policy can find within minutes, not a held-out maths benchmark. Seeded.
    """
    rng = random.Random(seed)
    rows: list[dict[str, str | int]] = []
    for _ in range(n):
        left = rng.randint(0, ARITHMETIC_MAX_OPERAND)
        right = rng.randint(0, ARITHMETIC_MAX_OPERAND)
        operator = rng.choice(ARITHMETIC_OPERATORS)
        answer = left + right if operator == "+" else left - right
        rows.append({"prompt": arithmetic_prompt(left, operator, right), "answer": answer})
    return rows
