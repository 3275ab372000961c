"""normalize_rows and load_preferences: every layout and every bad row."""

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from rlhf.data.preferences import (
    PreferenceData,
    load_preferences,
    normalize_rows,
    split_shared_prompt,
)
from rlhf.data.sources import load_rows
from rlhf.errors import UserError

HH = Path(__file__).resolve().parents[3] / "shared/data/hh-rlhf-harmless-base-test/test.jsonl.gz"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def pairs(n: int) -> list[dict]:
    return [{"prompt": f"prompt {i}", "chosen": f"a vivid answer {i}",
             "rejected": f"a plain answer {i}"} for i in range(n)]


def chat_tokenizer(template: str = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A tiny tokenizer that only carries a chat template (its vocabulary does not matter)."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tokenizer.chat_template = template
    return tokenizer


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_explicit_pairs() -> None:
    data = normalize_rows(pairs(3), source="mem")
    assert len(data) == 3 and not data.listwise and data.margins is None
    assert data.prompts[1] == "prompt 1"
    assert data.responses[1] == ["a vivid answer 1", "a plain answer 1"]
    assert data.best == [0, 0, 0]
    assert data.counts == {"rows": 3, "dropped_identical": 0, "empty_responses": 0}


def test_implicit_prompt_hh_style() -> None:
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help me?\n\nAssistant: Sure, gladly."
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help me?\n\nAssistant: No."
    data = normalize_rows([{"chosen": chosen, "rejected": rejected}], source="mem")
    assert data.prompts == ["\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help me?\n\nAssistant:"]
    assert data.responses == [[" Sure, gladly.", " No."]]


def test_implicit_prompt_without_marker_cuts_at_a_word_boundary() -> None:
    assert split_shared_prompt("The cat sat. It purred", "The cat sat. It slept") == (
        "The cat sat. It ", "purred", "slept")
    assert split_shared_prompt("Once upon\na time", "Once upon\nan hour") == (
        "Once upon\n", "a time", "an hour")
    assert split_shared_prompt("yes", "yeah") == ("", "yes", "yeah")


def test_conversational_without_chat_template_uses_plain_rendering() -> None:
    user = {"role": "user", "content": "Describe the sea."}
    row = {"chosen": [user, {"role": "assistant", "content": "Silver waves."}],
           "rejected": [user, {"role": "assistant", "content": "Water."}]}
    data = normalize_rows([row], source="mem")
    assert data.prompts == ["user: Describe the sea.\n"]
    assert data.responses == [["assistant: Silver waves.\n", "assistant: Water.\n"]]


def test_conversational_with_chat_template() -> None:
    system = {"role": "system", "content": "Be vivid."}
    user = {"role": "user", "content": "Describe the sea."}
    row = {"chosen": [system, user, {"role": "assistant", "content": "Silver waves."}],
           "rejected": [system, user, {"role": "assistant", "content": "Water."}]}
    data = normalize_rows([row], source="mem", tokenizer=chat_tokenizer())
    assert data.prompts == ["<|system|>Be vivid.<|end|>\n<|user|>Describe the sea.<|end|>\n"
                            "<|assistant|>"]
    assert data.responses == [["Silver waves.<|end|>\n", "Water.<|end|>\n"]]


def test_conversational_with_explicit_prompt_list_and_string() -> None:
    answer = [{"role": "assistant", "content": "Bright."}]
    other = [{"role": "assistant", "content": "Dull."}]
    listed = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": answer, "rejected": other}
    text = {"prompt": "Hi", "chosen": answer, "rejected": other}
    data = normalize_rows([listed, text], source="mem", tokenizer=chat_tokenizer())
    assert data.prompts == ["<|user|>Hi<|end|>\n<|assistant|>"] * 2
    assert data.responses[0] == ["Bright.<|end|>\n", "Dull.<|end|>\n"]


def test_chat_template_whose_prompt_is_not_a_prefix_falls_back_to_shared_start() -> None:
    # The generation prompt adds a newline that a finished assistant turn does not have.
    template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}|{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    user = {"role": "user", "content": "Hi"}
    row = {"chosen": [user, {"role": "assistant", "content": "Bright."}],
           "rejected": [user, {"role": "assistant", "content": "Dull."}]}
    data = normalize_rows([row], source="mem", tokenizer=chat_tokenizer(template))
    assert data.prompts == ["<|user|>Hi|<|assistant|>"]
    assert data.responses == [["Bright.|", "Dull.|"]]


def test_margin_column_numbers_and_numeric_strings() -> None:
    rows = pairs(2)
    rows[0]["margin"], rows[1]["margin"] = 2, "0.5"
    assert normalize_rows(rows, source="mem").margins == [2.0, 0.5]
    rows[1]["margin"] = "lots"
    with pytest.raises(UserError, match=r"mem: row 2: column 'margin' is 'lots', not a finite"):
        normalize_rows(rows, source="mem")


def test_lm_human_preferences_listwise() -> None:
    rows = [{"query": f"q{i}", **{f"sample{j}": f"s{i}{j}" for j in range(4)}, "best": i % 4}
            for i in range(5)]
    rows[3]["best"] = "3"  # CSV cells are strings
    data = normalize_rows(rows, source="mem")
    assert data.listwise and len(data) == 5
    assert data.responses[2] == ["s20", "s21", "s22", "s23"]
    assert data.best == [0, 1, 2, 3, 0]
    rows[1]["best"] = 4
    with pytest.raises(UserError, match=r"mem: row 2: 'best' is 4; .* integer from 0 to 3"):
        normalize_rows(rows, source="mem")


def test_listwise_with_all_samples_identical_is_dropped() -> None:
    rows = [{"query": "q", "sample0": "same", "sample1": "same", "best": 1},
            {"query": "q", "sample0": "a", "sample1": "b", "best": 1}]
    data = normalize_rows(rows, source="mem")
    assert len(data) == 1 and data.counts["dropped_identical"] == 1


def test_columns_mapping() -> None:
    rows = [{"question": "q", "good": "vivid", "bad": "plain", "strength": 1.5}]
    data = normalize_rows(rows, source="mem", columns={
        "prompt": "question", "chosen": "good", "rejected": "bad", "margin": "strength"})
    assert data.prompts == ["q"] and data.responses == [["vivid", "plain"]]
    assert data.margins == [1.5]
    with pytest.raises(UserError, match="unknown name.*'?answer'?.*can be mapped are"):
        normalize_rows(rows, source="mem", columns={"answer": "good"})


def test_missing_columns_lists_found_ones_and_the_mapping_hint() -> None:
    rows = [{"question": "q", "good": "vivid", "bad": "plain"}]
    with pytest.raises(UserError) as error:
        normalize_rows(rows, source="data.jsonl")
    message = str(error.value)
    assert message.startswith("data.jsonl: missing column(s) 'chosen', 'rejected'")
    assert "columns found: 'question', 'good', 'bad'" in message
    assert "data.columns.chosen=<name> data.columns.rejected=<name>" in message
    with pytest.raises(UserError, match=r"missing column\(s\) 'prompt'.*data.columns.prompt="):
        normalize_rows(rows, source="mem", columns={"prompt": "query", "chosen": "good",
                                                    "rejected": "bad"})


def test_row_missing_a_column_is_named(tmp_path: Path) -> None:
    rows = pairs(3)
    del rows[2]["rejected"]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    train, _, source = load_rows(path)
    with pytest.raises(UserError, match=rf"^{path}: line 3 has no 'rejected' column"):
        normalize_rows(train, source=source)


def test_non_string_value_names_row_and_column(tmp_path: Path) -> None:
    rows = pairs(4)
    rows[2]["chosen"] = 42
    rows[3]["prompt"] = None
    with pytest.raises(UserError, match=r"^mem: row 3: column 'chosen' is an int, not text"):
        normalize_rows(rows, source="mem")
    path = write_jsonl(tmp_path / "pairs.jsonl", rows[3:])
    train, _, source = load_rows(path)
    with pytest.raises(UserError, match=r"line 1: column 'prompt' is missing \(null\)"):
        normalize_rows(train, source=source)


def test_bad_chat_message_names_row() -> None:
    rows = [{"chosen": [{"role": "user"}], "rejected": [{"role": "user", "content": "x"}]}]
    with pytest.raises(UserError, match=r"mem: row 1: column 'chosen' must be text or a list"):
        normalize_rows(rows, source="mem")


# An empty response is a legitimate (bad) answer, in every layout: the row is kept and counted
# (UltraFeedback-binarized has rows whose rejected assistant message is ""). Only a missing or
# non-string value is an error.


def test_explicit_pair_with_an_empty_response_is_kept_and_counted() -> None:
    rows = pairs(4)
    rows[1]["rejected"] = "   "
    rows[2]["chosen"] = ""
    data = normalize_rows(rows, source="mem")
    assert len(data) == 4 and data.responses[1] == ["a vivid answer 1", "   "]
    assert data.responses[2] == ["", "a plain answer 2"]
    assert data.counts == {"rows": 4, "dropped_identical": 0, "empty_responses": 2}
    rows[3]["chosen"] = rows[3]["rejected"] = ""  # identical: still dropped, still counted
    data = normalize_rows(rows, source="mem")
    assert len(data) == 3 and data.counts["dropped_identical"] == 1


def test_implicit_pair_with_an_empty_cell_is_kept_and_counted() -> None:
    rows = [{"chosen": "The harbour was quiet. Gulls wheeled.", "rejected": ""},
            {"chosen": "", "rejected": "The sea."}]
    data = normalize_rows(rows, source="mem")
    assert data.prompts == ["", ""]
    assert data.responses == [["The harbour was quiet. Gulls wheeled.", ""], ["", "The sea."]]
    assert data.counts["empty_responses"] == 2


def test_conversation_with_an_empty_assistant_message_is_kept_and_counted() -> None:
    # UltraFeedback-binarized: a prompt string and chosen/rejected message lists whose last
    # assistant message may be "".
    user = {"role": "user", "content": "Describe the sea."}
    row = {"prompt": "Describe the sea.",
           "chosen": [user, {"role": "assistant", "content": "Grey and vast."}],
           "rejected": [user, {"role": "assistant", "content": ""}]}
    implicit = {"chosen": row["rejected"], "rejected": row["chosen"]}  # no prompt column
    for tokenizer in (None, chat_tokenizer()):
        data = normalize_rows([row], source="mem", tokenizer=tokenizer)
        assert len(data) == 1 and data.counts["empty_responses"] == 1
        data = normalize_rows([implicit], source="mem", tokenizer=tokenizer)
        assert len(data) == 1 and data.counts["empty_responses"] == 1
    for layout in (row, implicit):  # the user turn is the prompt, not part of the responses
        data = normalize_rows([layout], source="mem", tokenizer=chat_tokenizer())
        assert data.prompts == ["<|user|>Describe the sea.<|end|>\n<|assistant|>"]
        assert sorted(data.responses[0]) == ["<|end|>\n", "Grey and vast.<|end|>\n"]
    data = normalize_rows([row], source="mem")
    assert data.prompts == ["user: Describe the sea.\n"]
    assert data.responses == [["assistant: Grey and vast.\n", "assistant: \n"]]


def test_listwise_with_an_empty_sample_is_kept_and_counted() -> None:
    rows = [{"query": "q", "sample0": " a", "sample1": "", "sample2": " c", "best": 0},
            {"query": "q", "sample0": "", "sample1": "", "sample2": "", "best": 1}]
    data = normalize_rows(rows, source="mem")
    assert data.responses == [[" a", "", " c"]]
    assert data.counts == {"rows": 2, "dropped_identical": 1, "empty_responses": 1}


def test_missing_or_non_string_responses_are_still_errors() -> None:
    rows = pairs(3)
    rows[1]["rejected"] = None
    with pytest.raises(UserError, match=r"^mem: row 2: column 'rejected' is missing \(null\)"):
        normalize_rows(rows, source="mem")
    rows[1]["rejected"] = 3
    with pytest.raises(UserError, match=r"^mem: row 2: column 'rejected' is an int, not text"):
        normalize_rows(rows, source="mem")
    listwise = [{"query": "q", "sample0": "a", "sample1": None, "best": 0}]
    with pytest.raises(UserError, match=r"row 1: column 'sample1' is missing"):
        normalize_rows(listwise, source="mem")
    messages = {"prompt": "p", "chosen": [], "rejected": [{"role": "user", "content": "x"}]}
    with pytest.raises(UserError, match="column 'chosen' is an empty list of messages"):
        normalize_rows([messages], source="mem")


def test_identical_pairs_are_dropped_and_counted() -> None:
    rows = pairs(4)
    rows[1]["rejected"] = rows[1]["chosen"]
    rows[3]["rejected"] = rows[3]["chosen"]
    data = normalize_rows(rows, source="mem")
    assert data.prompts == ["prompt 0", "prompt 2"]
    assert data.counts["dropped_identical"] == 2 and data.counts["rows"] == 4


def test_real_hh_rlhf_harmless_test_file() -> None:
    train, test, source = load_rows(str(HH))
    data = normalize_rows(train, source=source)
    assert len(train) == 2312 and test is None
    assert len(data) == 2312 and data.counts["dropped_identical"] == 0
    assert all(prompt.endswith("\n\nAssistant:") for prompt in data.prompts)
    assert all(p + r[0] == row["chosen"] and p + r[1] == row["rejected"]
               for p, r, row in zip(data.prompts, data.responses, train, strict=True))
    assert any("’" in r[0] for r in data.responses)  # unicode kept as is
    # In 4 rows the preferred assistant turn is empty: kept and counted, not an error.
    assert data.counts["empty_responses"] == 4


def test_load_preferences_holds_out_a_fraction_and_caps(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs(100))
    train, test = load_preferences(path, test_fraction=0.1, seed=0)
    assert (len(train), len(test)) == (90, 10)
    capped_train, capped_test = load_preferences(path, test_fraction=0.1, seed=0, max_samples=5)
    assert capped_train.prompts == train.prompts[:5] and capped_test.prompts == test.prompts[:5]
    assert capped_train.counts["dropped_max_samples"] == 85


def test_load_preferences_uses_the_test_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", pairs(8))
    write_jsonl(tmp_path / "test.jsonl", pairs(3))
    train, test = load_preferences(str(tmp_path))
    assert (len(train), len(test)) == (8, 3)


def test_load_preferences_builtin() -> None:
    train, test = load_preferences("builtin:descriptiveness")
    assert (len(train), len(test)) == (2000, 400)
    assert isinstance(train, PreferenceData)


def test_load_preferences_with_no_usable_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "x",
                                                  "rejected": "x"}])
    with pytest.raises(UserError, match=r"no usable preference examples .*1 with identical"):
        load_preferences(path)
