"""SFT data: every layout, response-only masks checked token by token, truncation, bad input."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from rlhf.data.sft import (
    SFTData,
    collate_sft,
    fit_example,
    load_sft,
    load_sft_rows,
    loss_tokens,
    normalize_sft_rows,
    tokenize_sft,
    with_eos,
)
from rlhf.data.synthetic import descriptiveness_pairs
from rlhf.errors import UserError

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
WORDS = ["<eos>", "<pad>", "<s>", "[UNK]", "a", "b", "c", "d", "e", "f", "g"]
ID = {word: index for index, word in enumerate(WORDS)}
EOS, PAD, BOS = ID["<eos>"], ID["<pad>"], ID["<s>"]


def word_tokenizer(*, pad_is_eos: bool, bos: bool = False) -> PreTrainedTokenizerFast:
    """Whitespace words -> fixed ids, so masks can be checked id by id. With `bos`, the
    tokenizer adds <s> in front of every text it encodes with special tokens (like Llama)."""
    backend = Tokenizer(models.WordLevel(ID, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", BOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<eos>", unk_token="[UNK]",
        pad_token="<eos>" if pad_is_eos else "<pad>", bos_token="<s>" if bos else None)


def chat_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = word_tokenizer(pad_is_eos=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def sft(prompts: list[str], responses: list[str]) -> SFTData:
    return SFTData(prompts=prompts, responses=responses, chat=[False] * len(prompts))


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


# -- layouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["response", "completion", "chosen"])
def test_prompt_and_response_columns(column: str) -> None:
    rows = [{"prompt": f"p{i}", column: f"r{i}", "rejected": "worse"} for i in range(3)]
    data = normalize_sft_rows(rows, source="mem")
    assert data.prompts == ["p0", "p1", "p2"] and data.responses == ["r0", "r1", "r2"]
    assert data.chat == [False] * 3 and data.counts == {"rows": 3, "dropped_empty": 0}


def test_response_column_can_be_mapped() -> None:
    rows = [{"question": "q", "chosen": "vivid", "rejected": "plain"}]
    data = normalize_sft_rows(rows, source="mem",
                              columns={"prompt": "question", "response": "rejected"})
    assert (data.prompts, data.responses) == (["q"], ["plain"])


def test_builtin_source_trains_on_the_plain_continuation_unless_told_otherwise() -> None:
    train, test, source = load_sft_rows("builtin:descriptiveness-sft")
    assert source == "builtin:descriptiveness-sft" and len(train) == 2000 and len(test) == 400
    pair = descriptiveness_pairs(1, seed=0)[0]
    plain = normalize_sft_rows(train[:1], source=source)
    assert (plain.prompts, plain.responses) == ([pair["prompt"]], [pair["rejected"]])
    vivid = normalize_sft_rows(train[:1], source=source, columns={"response": "chosen"})
    assert vivid.responses == [pair["chosen"]]


def test_preference_data_trains_on_chosen() -> None:
    train, _ = load_sft("builtin:descriptiveness", max_samples=2)
    pairs = descriptiveness_pairs(2, seed=0)
    assert train.responses == [p["chosen"] for p in pairs]


def test_implicit_pairs_split_the_shared_dialogue() -> None:
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help?\n\nAssistant: Sure."
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help?\n\nAssistant: No."
    silent = {"chosen": "\n\nHuman: Hi\n\nAssistant:",  # the assistant said nothing
              "rejected": "\n\nHuman: Hi\n\nAssistant: Hi"}
    data = normalize_sft_rows([{"chosen": chosen, "rejected": rejected}, silent], source="mem")
    assert data.prompts == ["\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Help?\n\nAssistant:"]
    assert data.responses == [" Sure."]
    assert data.counts == {"rows": 2, "dropped_empty": 1}


CONVERSATION = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"},
                {"role": "assistant", "content": "see you"}, {"role": "user", "content": "ok"}]


def test_messages_without_chat_template_split_at_the_last_assistant_message() -> None:
    data = normalize_sft_rows([{"messages": CONVERSATION}], source="mem")
    assert data.prompts == ["system: be kind\nuser: hi\nassistant: hello\nuser: bye\n"]
    assert data.responses == ["assistant: see you\n"]  # the trailing user turn is not trained
    assert data.chat == [False]


def test_messages_with_chat_template() -> None:
    data = normalize_sft_rows([{"messages": CONVERSATION[:3]}], source="mem",
                              tokenizer=chat_tokenizer())
    assert data.prompts == ["<|system|>be kind<|end|>\n<|user|>hi<|end|>\n<|assistant|>"]
    assert data.responses == ["hello<|end|>\n"] and data.chat == [True]


def test_conversational_prompt_completion() -> None:
    rows = [{"prompt": [{"role": "user", "content": "hi"}],
             "completion": [{"role": "assistant", "content": "hello"}]},
            {"prompt": "hi", "completion": [{"role": "assistant", "content": "hello"}]}]
    data = normalize_sft_rows(rows, source="mem", tokenizer=chat_tokenizer())
    assert data.prompts == ["<|user|>hi<|end|>\n<|assistant|>"] * 2
    assert data.responses == ["hello<|end|>\n"] * 2


def test_chat_prompts_are_encoded_without_adding_special_tokens_again() -> None:
    tokenizer = word_tokenizer(pad_is_eos=False, bos=True)
    data = SFTData(prompts=["a b", "<s> a b"], responses=["c", "c"], chat=[False, True])
    tok = tokenize_sft(data, tokenizer, max_length=16)
    assert tok.input_ids == [[BOS, ID["a"], ID["b"], ID["c"], EOS]] * 2
    assert tok.prompt_lengths == [3, 3]


# -- tokens and masks ------------------------------------------------------------------------


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_response_mask_token_by_token(pad_is_eos: bool) -> None:
    tokenizer = word_tokenizer(pad_is_eos=pad_is_eos)
    pad = EOS if pad_is_eos else PAD
    tok = tokenize_sft(sft(["a b c", "a"], ["d e", "f"]), tokenizer, max_length=32)
    assert tok.input_ids == [[ID["a"], ID["b"], ID["c"], ID["d"], ID["e"], EOS],
                             [ID["a"], ID["f"], EOS]]
    assert tok.prompt_lengths == [3, 1]
    batch = collate_sft(tok, [0, 1], tokenizer.pad_token_id)
    assert batch["input_ids"].tolist() == [[ID["a"], ID["b"], ID["c"], ID["d"], ID["e"], EOS],
                                           [ID["a"], ID["f"], EOS, pad, pad, pad]]
    assert batch["attention_mask"].tolist() == [[True] * 6, [True] * 3 + [False] * 3]
    # prompt False; response and its EOS True; padding False even where pad id == EOS id
    assert batch["response_mask"].tolist() == [[False, False, False, True, True, True],
                                               [False, True, True, False, False, False]]
    assert batch["response_mask"].dtype == torch.bool
    assert loss_tokens(tok, [0, 1]) == 3 + 2


def test_response_that_already_ends_a_turn_with_eos_gets_no_second_eos() -> None:
    assert with_eos([4, 5], EOS) == [4, 5, EOS]
    assert with_eos([4, EOS, 5, EOS, 6], EOS) == [4, EOS, 5, EOS]  # e.g. a template's "\n"


def test_empty_prompt_starts_from_bos() -> None:
    tokenizer = word_tokenizer(pad_is_eos=True)
    tokenizer.bos_token = "<s>"
    tok = tokenize_sft(sft([""], ["d"]), tokenizer, max_length=8)
    assert tok.input_ids == [[BOS, ID["d"], EOS]] and tok.prompt_lengths == [1]


def test_tokenizer_without_eos_is_refused() -> None:
    tokenizer = word_tokenizer(pad_is_eos=False)
    tokenizer.eos_token = None
    with pytest.raises(UserError, match="no EOS token"):
        tokenize_sft(sft(["a"], ["b"]), tokenizer, max_length=8)


# -- truncation ------------------------------------------------------------------------------


def test_long_prompt_loses_its_start() -> None:
    ids, n_prompt, prompt_cut, response_cut = fit_example([1, 2, 3, 4, 5], [6, 7, EOS], 6)
    assert ids == [3, 4, 5, 6, 7, EOS] and n_prompt == 3
    assert prompt_cut and not response_cut


def test_too_long_response_keeps_one_prompt_token_and_loses_its_end() -> None:
    ids, n_prompt, prompt_cut, response_cut = fit_example([1, 2, 3], [6, 7, 8, 9, EOS], 4)
    assert ids == [3, 6, 7, 8] and n_prompt == 1 and prompt_cut and response_cut  # no EOS


def test_short_examples_are_untouched() -> None:
    assert fit_example([1, 2], [3, EOS], 4) == ([1, 2, 3, EOS], 2, False, False)


def test_tokenize_counts_truncations() -> None:
    tokenizer = word_tokenizer(pad_is_eos=True)
    data = sft(["a b c d e f g", "a", "a b"], ["a b", "a b c d e f g a b c", "c"])
    tok = tokenize_sft(data, tokenizer, max_length=8)
    assert [len(ids) for ids in tok.input_ids] == [8, 8, 4]
    assert tok.input_ids[0][-3:] == [ID["a"], ID["b"], EOS]
    assert tok.input_ids[1][-1] != EOS
    assert (tok.prompt_truncated, tok.response_truncated) == (1, 1)


# -- loading, splitting, errors ----------------------------------------------------------------


def test_seeded_hold_out_without_a_test_split(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sft.jsonl",
                       [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(20)])
    train, test = load_sft(path, test_fraction=0.25, seed=3)
    again, _ = load_sft(path, test_fraction=0.25, seed=3)
    assert len(train) == 15 and len(test) == 5 and train.prompts == again.prompts
    assert not set(train.prompts) & set(test.prompts)
    assert train.counts["held_out"] == 5


def test_test_split_and_max_samples(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"prompt": f"p{i}", "response": "r"} for i in range(9)])
    write_jsonl(folder / "test.jsonl", [{"prompt": f"t{i}", "response": "r"} for i in range(4)])
    train, test = load_sft(str(folder), max_samples=3)
    assert train.prompts == ["p0", "p1", "p2"] and test.prompts == ["t0", "t1", "t2"]
    assert train.counts["dropped_max_samples"] == 6


def test_missing_response_column_lists_the_columns_found(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "answer": "a"}])
    with pytest.raises(UserError) as error:
        load_sft(path)
    message = str(error.value)
    assert path in message and "'prompt', 'answer'" in message
    assert "data.columns.response=" in message


def test_missing_prompt_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"response": "a"}])
    with pytest.raises(UserError, match=r"missing column\(s\) 'prompt'.*'response'"):
        load_sft(path)
    with pytest.raises(UserError, match="missing column"):
        normalize_sft_rows([{"q": "p", "response": "a"}], source="mem",
                           columns={"prompt": "question"})


def test_non_string_response_names_the_line_and_column(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "response": "a"}, {"prompt": "p", "response": 7}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(UserError, match=r"bad\.jsonl: line 2: column 'response' is an int"):
        load_sft(path)


def test_non_string_prompt_and_null_values(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="row 1: column 'prompt' is missing"):
        normalize_sft_rows([{"prompt": None, "response": "a"}], source="mem")


def test_empty_responses_are_dropped_and_counted_in_every_layout(tmp_path: Path) -> None:
    # An empty response teaches nothing to imitate: the example is dropped and counted, the run
    # goes on (as for HH-style rows whose assistant said nothing).
    rows = [{"prompt": "p", "response": "  "}, {"prompt": "q", "response": "a"},
            {"prompt": "r", "response": ""}]
    path = write_jsonl(tmp_path / "some-empty.jsonl", rows * 2)
    train, test = load_sft(path, test_fraction=0.5)
    assert train.responses + test.responses == ["a", "a"]
    assert train.counts["dropped_empty"] == 4
    implicit = [{"chosen": "", "rejected": "The sea."}, {"chosen": "The sea.", "rejected": ""}]
    data = normalize_sft_rows(implicit, source="mem")
    assert data.responses == ["The sea."] and data.counts == {"rows": 2, "dropped_empty": 1}
    empty_turn = {"messages": [{"role": "user", "content": "hi"},
                               {"role": "assistant", "content": " "}]}
    for tokenizer in (None, chat_tokenizer()):
        data = normalize_sft_rows([empty_turn, {"messages": CONVERSATION}], source="mem",
                                  tokenizer=tokenizer)
        assert len(data) == 1 and data.counts == {"rows": 2, "dropped_empty": 1}
    all_empty = write_jsonl(tmp_path / "all-empty.jsonl", [rows[0], rows[2]])
    with pytest.raises(UserError, match=r"no usable SFT examples .*2 with an empty response"):
        load_sft(all_empty)


def test_missing_or_non_string_response_is_still_an_error() -> None:
    with pytest.raises(UserError, match=r"row 1: column 'response' is missing \(null\)"):
        normalize_sft_rows([{"prompt": "p", "response": None}], source="mem")
    with pytest.raises(UserError, match=r"row 1: column 'rejected' is an int"):
        normalize_sft_rows([{"chosen": "", "rejected": 3}], source="mem")
    with pytest.raises(UserError, match="column 'messages' is an empty list of messages"):
        normalize_sft_rows([{"messages": []}], source="mem")


def test_conversation_errors() -> None:
    with pytest.raises(UserError, match="no message with role 'assistant'"):
        normalize_sft_rows([{"messages": [{"role": "user", "content": "hi"}]}], source="mem")
    with pytest.raises(UserError, match="row 1: column 'messages' must be text or a list"):
        normalize_sft_rows([{"messages": [{"role": "user"}]}], source="mem")


def test_row_without_the_column_and_unknown_mapping() -> None:
    rows = [{"prompt": "p", "response": "a"}, {"prompt": "p"}]
    with pytest.raises(UserError, match="row 2 has no 'response' column"):
        normalize_sft_rows(rows, source="mem")
    with pytest.raises(UserError, match="unknown name"):
        normalize_sft_rows(rows, source="mem", columns={"chosen": "x"})


def test_too_few_rows_to_hold_out(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "p", "response": "a"}])
    with pytest.raises(UserError, match="at least 2"):
        load_sft(path)
