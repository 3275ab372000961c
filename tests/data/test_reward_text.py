"""encode_prompt_response and tokenize_preferences: the ids the reward model reads."""

from pathlib import Path

import pytest
from transformers import ByT5Tokenizer

from rlhf.data.preferences import PreferenceData, normalize_rows
from rlhf.data.reward_text import encode_prompt_response, tokenize_preferences
from rlhf.data.sources import load_rows
from rlhf.errors import UserError

HH = Path(__file__).resolve().parents[3] / "shared/data/hh-rlhf-harmless-base-test/test.jsonl.gz"


@pytest.fixture(scope="module")
def hh() -> PreferenceData:
    rows, _, source = load_rows(str(HH))
    return normalize_rows(rows[:60], source=source)


def left_truncated(tokenizer, prompt: str, response: str, max_length: int) -> list[int]:
    """What the tokenizer itself gives when it cuts only the prompt, from the left."""
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        return tokenizer(prompt, response, truncation="only_first",
                         max_length=max_length)["input_ids"]
    finally:
        tokenizer.truncation_side = side


def test_roberta_fixture_has_its_special_tokens(roberta_tokenizer) -> None:
    assert (roberta_tokenizer.bos_token_id, roberta_tokenizer.pad_token_id,
            roberta_tokenizer.eos_token_id) == (0, 1, 2)
    assert roberta_tokenizer(["a b"], ["hello world"])["input_ids"] == [
        [0, 102, 741, 2, 2, 42891, 232, 2]]


def test_pair_template_equals_the_tokenizers_sentence_pair_encoding(roberta_tokenizer,
                                                                     hh) -> None:
    responses = [r[0] for r in hh.responses]
    ids, truncated = encode_prompt_response(roberta_tokenizer, hh.prompts, responses,
                                            template="pair", max_length=4096)
    assert not any(truncated)
    for prompt, response, row in zip(hh.prompts, responses, ids, strict=True):
        assert row == roberta_tokenizer(prompt, response)["input_ids"]
        assert row[0] == 0 and row[-1] == 2 and [2, 2] == row[row.index(2):row.index(2) + 2]


def test_long_prompts_lose_their_start_and_keep_the_response(roberta_tokenizer, hh) -> None:
    responses = [r[1] for r in hh.responses]
    max_length = 96
    ids, truncated = encode_prompt_response(roberta_tokenizer, hh.prompts, responses,
                                            template="pair", max_length=max_length)
    checked = 0
    for prompt, response, row, cut in zip(hh.prompts, responses, ids, truncated, strict=True):
        full = roberta_tokenizer(prompt, response)["input_ids"]
        response_ids = roberta_tokenizer(response, add_special_tokens=False)["input_ids"]
        assert cut == (len(full) > max_length)
        assert len(row) == min(len(full), max_length)
        if len(response_ids) + 5 <= max_length:  # the response fits with some prompt
            assert row[-len(response_ids) - 1:] == response_ids + [2]
            assert row == left_truncated(roberta_tokenizer, prompt, response, max_length)
            assert row[-len(response_ids) - 3:-len(response_ids) - 1] == [2, 2]
            checked += cut
    assert checked >= 10  # many rows really were cut


def test_response_too_long_for_max_length_keeps_its_start(roberta_tokenizer) -> None:
    prompt, response = "A short prompt.", " word" * 50
    response_ids = roberta_tokenizer(response, add_special_tokens=False)["input_ids"]
    with pytest.raises(Exception, match="Sequence to truncate too short"):
        left_truncated(roberta_tokenizer, prompt, response, 20)  # why the fallback exists
    ids, truncated = encode_prompt_response(roberta_tokenizer, [prompt, "p"], [response, "r"],
                                            template="pair", max_length=20)
    assert truncated == [True, False]
    assert ids[0] == [0, 2, 2] + response_ids[:16] + [2]
    assert ids[1] == roberta_tokenizer("p", "r")["input_ids"]


def test_concat_template(roberta_tokenizer, gpt2_tokenizer) -> None:
    prompts, responses = ["The harbour was quiet.", "one two three four five six"], [
        "Gulls wheeled overhead.", "seven"]
    ids, truncated = encode_prompt_response(roberta_tokenizer, prompts, responses,
                                            template="concat", separator=" || ",
                                            max_length=64)
    assert truncated == [False, False]
    assert ids[0] == roberta_tokenizer("The harbour was quiet. || Gulls wheeled overhead."
                                       )["input_ids"]
    ids, truncated = encode_prompt_response(gpt2_tokenizer, prompts, responses,
                                            template="concat", max_length=4)
    assert truncated == [True, True]
    assert ids[1] == gpt2_tokenizer("one two three four five six\nseven")["input_ids"][-4:]
    side = gpt2_tokenizer.truncation_side
    gpt2_tokenizer.truncation_side = "left"
    try:
        assert ids[0] == gpt2_tokenizer(prompts[0] + "\n" + responses[0], truncation=True,
                                        max_length=4)["input_ids"]
    finally:
        gpt2_tokenizer.truncation_side = side


def test_slow_tokenizer_gives_the_same_ids_as_its_own_encoding() -> None:
    tokenizer = ByT5Tokenizer()
    ids, truncated = encode_prompt_response(tokenizer, ["ab", "abcdef"], ["cd", "xyz"],
                                            template="pair", max_length=7)
    assert ids[0] == tokenizer("ab", "cd")["input_ids"]
    assert truncated == [False, True]
    assert ids[1] == left_truncated(tokenizer, "abcdef", "xyz", 7)
    ids, truncated = encode_prompt_response(tokenizer, ["abc"], ["d" * 10], template="pair",
                                            max_length=6)
    assert ids == [[tokenizer.eos_token_id] + [103] * 4 + [tokenizer.eos_token_id]]


def test_bad_template_and_impossible_max_length(roberta_tokenizer) -> None:
    with pytest.raises(UserError, match="unknown reward template 'chat'"):
        encode_prompt_response(roberta_tokenizer, ["p"], ["r"], template="chat", max_length=8)
    with pytest.raises(UserError, match="max_length 4 leaves no room"):
        encode_prompt_response(roberta_tokenizer, ["p p p"], ["r"], template="pair",
                               max_length=4)
    assert encode_prompt_response(roberta_tokenizer, [], [], template="pair",
                                  max_length=8) == ([], [])


def test_tokenize_preferences_pairs(roberta_tokenizer, hh) -> None:
    tokenized = tokenize_preferences(hh, roberta_tokenizer, template="pair", max_length=128)
    assert len(tokenized.input_ids) == len(hh) and not tokenized.listwise
    first = tokenized.input_ids[0]
    assert len(first) == 2
    assert first[0] == encode_prompt_response(
        roberta_tokenizer, hh.prompts[:1], hh.responses[0][:1], template="pair",
        max_length=128)[0][0]
    flags = [any(len(roberta_tokenizer(p, r)["input_ids"]) > 128 for r in responses)
             for p, responses in zip(hh.prompts, hh.responses, strict=True)]
    assert tokenized.truncated == sum(flags) > 0
    assert max(len(ids) for example in tokenized.input_ids for ids in example) == 128


def test_tokenize_preferences_listwise_with_margins(gpt2_tokenizer) -> None:
    rows = [{"query": f"q{i}", **{f"sample{j}": f" s{j}" for j in range(4)}, "best": 2}
            for i in range(3)]
    data = normalize_rows(rows, source="mem")
    tokenized = tokenize_preferences(data, gpt2_tokenizer, template="concat", max_length=16)
    assert tokenized.listwise and tokenized.best == [2, 2, 2] and tokenized.margins is None
    assert [len(example) for example in tokenized.input_ids] == [4, 4, 4]
    assert tokenized.input_ids[1][3] == gpt2_tokenizer("q1\n s3")["input_ids"]
    pairs = normalize_rows([{"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1}],
                           source="mem")
    assert tokenize_preferences(pairs, gpt2_tokenizer, template="concat",
                                max_length=16).margins == [1.0]


def test_empty_response_gives_a_valid_input(roberta_tokenizer, gpt2_tokenizer) -> None:
    # An empty response is kept as data (a legitimate, bad answer): its encoding is still a
    # well-formed input, and truncation still cuts only the prompt.
    prompt_ids = roberta_tokenizer("The harbour was quiet.", add_special_tokens=False)[
        "input_ids"]
    ids, truncated = encode_prompt_response(roberta_tokenizer, ["The harbour was quiet."], [""],
                                            template="pair", max_length=64)
    assert ids == [[0, *prompt_ids, 2, 2, 2]] and truncated == [False]  # <s>prompt</s></s></s>
    ids, truncated = encode_prompt_response(roberta_tokenizer, ["The harbour was quiet."], [""],
                                            template="pair", max_length=5)
    assert ids == [[0, *prompt_ids[-1:], 2, 2, 2]] and truncated == [True]
    ids, _ = encode_prompt_response(gpt2_tokenizer, ["The harbour was quiet."], [""],
                                    template="concat", max_length=64)
    assert ids == [gpt2_tokenizer("The harbour was quiet.\n")["input_ids"]]
    data = normalize_rows([{"prompt": "p", "chosen": "a", "rejected": ""}], source="mem")
    tokenized = tokenize_preferences(data, roberta_tokenizer, template="pair", max_length=16)
    assert tokenized.input_ids == [[roberta_tokenizer("p", "a")["input_ids"],
                                    [0, *roberta_tokenizer("p", add_special_tokens=False)[
                                        "input_ids"], 2, 2, 2]]]
