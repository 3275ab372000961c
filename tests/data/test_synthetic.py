"""The synthetic descriptiveness task: deterministic, varied, and not solvable by length alone."""

import re

from rlhf.data.synthetic import descriptiveness_corpus, descriptiveness_pairs

WORD = re.compile(r"[a-z]+")


def test_pairs_are_deterministic_per_seed() -> None:
    assert descriptiveness_pairs(50, seed=3) == descriptiveness_pairs(50, seed=3)
    assert descriptiveness_pairs(50, seed=3) != descriptiveness_pairs(50, seed=4)
    assert descriptiveness_corpus(20, seed=1) == descriptiveness_corpus(20, seed=1)


def test_pairs_are_varied_and_well_formed() -> None:
    pairs = descriptiveness_pairs(2000, seed=0)
    assert all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    assert len({p["prompt"] for p in pairs}) >= 300
    assert len({p["chosen"] for p in pairs}) >= 300 and len({p["rejected"] for p in pairs}) >= 300
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    assert all(p["prompt"].startswith("The ") and p["prompt"].endswith(".") for p in pairs)
    assert not any(re.search(r"\ba [aeiou]", p["chosen"] + p["rejected"]) for p in pairs)


def test_chosen_is_vivid_but_not_simply_longer() -> None:
    pairs = descriptiveness_pairs(2000, seed=0)
    longer = sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs) / len(pairs)
    assert 0.5 < longer < 0.9
    shared = sum(bool(set(WORD.findall(p["chosen"].lower()))
                      & set(WORD.findall(p["rejected"].lower())) - {"a", "the"})
                 for p in pairs)
    assert shared == len(pairs)  # same thing, same place: only the style differs
    chosen = {w for p in pairs for w in WORD.findall(p["chosen"].lower())}
    rejected = {w for p in pairs for w in WORD.findall(p["rejected"].lower())}
    assert {"crimson", "glittering", "lavender"} <= chosen - rejected


def test_corpus_mixes_plain_and_vivid_text() -> None:
    texts = descriptiveness_corpus(400, seed=0)
    assert len(texts) == 400 and all(isinstance(t, str) and t.startswith("The ") for t in texts)
    assert any("smell" in t or "scent" in t for t in texts)
    assert any("There was a" in t for t in texts)
