"""Prompt sets for PPO: row normalisation and loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rlhf.data.prompt_templates import render_dolly
from rlhf.data.prompts import PromptSet, load_prompts, normalize_prompt_rows
from rlhf.errors import UserError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
DOLLY_DIR = SHARED / "dolly-15k-prompts-oneill"
GPT2_DIR = SHARED / "gpt2-tokenizer"
MARKER = "### Response:\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_bpe) -> PreTrainedTokenizerFast:
    return tiny_bpe()


# -- normalising rows --------------------------------------------------------------------------


def test_dolly_rows_are_normalized_and_empty_instructions_dropped() -> None:
    rows = [{"instruction": "Say hi.", "context": None},
            {"instruction": "  ", "context": "ignored"},
            {"instruction": None, "context": "ignored"},
            {"instruction": "Sum it up.", "context": "A long story."}]
    prompt_set = normalize_prompt_rows(rows, source="x.jsonl", template="dolly", columns=None)
    assert isinstance(prompt_set, PromptSet) and len(prompt_set) == 2
    assert prompt_set.raw == [{"instruction": "Say hi.", "context": ""},
                              {"instruction": "Sum it up.", "context": "A long story."}]
    assert prompt_set.prompts[1] == render_dolly("Sum it up.", "A long story.", context_chars=500)
    assert prompt_set.counts == {"rows": 4, "dropped_empty": 2, "kept": 2, "sampled_out": 0,
                                 "shortened": 0}


def test_context_column_is_optional() -> None:
    prompt_set = normalize_prompt_rows([{"instruction": "Say hi."}], source="x", template="dolly",
                                       columns=None)
    assert prompt_set.prompts == ["### Instruction:\nSay hi.\n\n### Response:\n"]


def _argilla(value: str | None) -> dict:
    values = [] if value is None else [value]
    return {"value": values, "status": ["submitted"] * len(values), "user_id": ["u"] * len(values)}


def test_argilla_curated_layout_prefers_new_then_original() -> None:
    rows = [
        {"original-instruction": "old q", "original-context": "old c",
         "new-instruction": _argilla("new q"), "new-context": _argilla("new c")},
        {"original-instruction": "only original", "original-context": "",
         "new-instruction": None, "new-context": _argilla(None)},
    ]
    prompt_set = normalize_prompt_rows(rows, source="argilla", template="dolly", columns=None)
    assert prompt_set.raw == [{"instruction": "new q", "context": "new c"},
                              {"instruction": "only original", "context": ""}]


def test_column_mapping() -> None:
    rows = [{"question": "Why?", "passage": "Because."}]
    prompt_set = normalize_prompt_rows(
        rows, source="x", template="dolly",
        columns={"instruction": "question", "context": "passage"})
    assert prompt_set.raw == [{"instruction": "Why?", "context": "Because."}]
    plain = normalize_prompt_rows([{"text": "Once upon"}], source="x", template="prompt",
                                  columns={"prompt": "text"})
    assert plain.prompts == ["Once upon"] and plain.raw == [{"prompt": "Once upon"}]


def test_missing_column_names_found_columns_and_the_setting() -> None:
    with pytest.raises(UserError) as error:
        normalize_prompt_rows([{"question": "Why?", "answer": "So."}], source="qa.jsonl",
                              template="dolly", columns=None)
    message = str(error.value)
    assert "qa.jsonl" in message and "question, answer" in message
    assert "data.columns.instruction=" in message
    with pytest.raises(UserError, match="data.columns.prompt="):
        normalize_prompt_rows([{"text": "x"}], source="x", template="prompt", columns=None)
    with pytest.raises(UserError, match="'query'.*columns found: text"):
        normalize_prompt_rows([{"text": "x"}], source="x", template="prompt",
                              columns={"prompt": "query"})


def test_non_string_cell_names_the_row_and_column() -> None:
    rows = [{"instruction": "fine"}, {"instruction": ["not", "text"]}]
    with pytest.raises(UserError, match=r"x\.jsonl: row 2: column 'instruction' holds list"):
        normalize_prompt_rows(rows, source="x.jsonl", template="dolly", columns=None)


def test_unknown_template_and_column_key() -> None:
    with pytest.raises(UserError, match="data.template='alpaca'"):
        normalize_prompt_rows([{"prompt": "x"}], source="x", template="alpaca", columns=None)
    with pytest.raises(UserError, match="data.columns.question"):
        normalize_prompt_rows([{"prompt": "x"}], source="x", template="prompt",
                              columns={"question": "prompt"})


def test_chat_template_renders_messages_and_plain_prompts(tokenizer) -> None:
    rows = [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hi?"},
                          {"role": "assistant", "content": "the dataset's answer"}]},
            {"messages": []}]
    prompt_set = normalize_prompt_rows(rows, source="x", template="chat", columns=None,
                                       tokenizer=tokenizer)
    # The trailing assistant turn is the data's answer: the policy writes its own.
    assert prompt_set.prompts == ["<|system|>Be brief.<eos><|user|>Hi?<eos><|assistant|>"]
    assert prompt_set.raw[0]["prompt"] == "Hi?"
    assert prompt_set.counts["dropped_empty"] == 1
    plain = normalize_prompt_rows([{"prompt": "Hello"}], source="x", template="chat",
                                  columns=None, tokenizer=tokenizer)
    assert plain.prompts == ["<|user|>Hello<eos><|assistant|>"]


def test_chat_template_missing_is_a_user_error(tiny_bpe) -> None:
    bare = tiny_bpe()
    bare.chat_template = None
    with pytest.raises(UserError, match="chat template"):
        normalize_prompt_rows([{"prompt": "Hello"}], source="x", template="chat", columns=None,
                              tokenizer=bare)


def test_malformed_messages_name_the_row(tokenizer) -> None:
    rows = [{"messages": [{"role": "user", "content": 3}]}]
    with pytest.raises(UserError, match="row 1: column 'messages'"):
        normalize_prompt_rows(rows, source="x", template="chat", columns=None,
                              tokenizer=tokenizer)


# -- loading -----------------------------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def test_load_prompts_from_jsonl_fits_and_subsamples(tmp_path: Path, tokenizer) -> None:
    rows = [{"instruction": f"Question {i}?", "context": "the cat sat on the mat " * (i % 3 * 10)}
            for i in range(40)]
    path = _write_jsonl(tmp_path / "prompts.jsonl", rows)
    prompt_set, ids = load_prompts(path, tokenizer=tokenizer, max_prompt_tokens=40)
    assert len(prompt_set) == len(ids) == 40
    assert all(len(row) <= 40 for row in ids)
    assert prompt_set.counts["shortened"] == sum(i % 3 != 0 for i in range(40))
    assert [tokenizer.decode(row) for row in ids] == prompt_set.prompts
    first, _ = load_prompts(path, tokenizer=tokenizer, max_prompt_tokens=40, max_samples=7,
                            seed=3)
    again, _ = load_prompts(path, tokenizer=tokenizer, max_prompt_tokens=40, max_samples=7,
                            seed=3)
    assert first.raw == again.raw and len(first) == 7 and first.counts["sampled_out"] == 33
    numbers = [int(raw["instruction"].split()[1][:-1]) for raw in first.raw]
    assert numbers == sorted(numbers)


def test_load_prompts_builtin_plain_prompts(tokenizer) -> None:
    prompt_set, ids = load_prompts("builtin:descriptiveness", template="prompt",
                                   tokenizer=tokenizer, max_prompt_tokens=32, max_samples=5)
    assert len(prompt_set) == 5 and all(raw["prompt"] for raw in prompt_set.raw)


def test_empty_prompt_file_is_a_user_error(tmp_path: Path, tokenizer) -> None:
    path = _write_jsonl(tmp_path / "empty.jsonl", [{"instruction": " "}, {"instruction": ""}])
    with pytest.raises(UserError, match="no prompts: all 2 rows"):
        load_prompts(path, tokenizer=tokenizer, max_prompt_tokens=40)


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = ["instruction,context"] + [f'"{a}","{b}"' for a, b in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_folder_of_csv_shards_in_natural_order_with_exact_cells(tmp_path: Path,
                                                                tokenizer) -> None:
    _write_csv(tmp_path / "output1001to2000.csv", [("second", "")])
    _write_csv(tmp_path / "output1to1000.csv", [("first", "n/a")])
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    prompt_set, _ = load_prompts(str(tmp_path), tokenizer=tokenizer, max_prompt_tokens=64)
    assert prompt_set.raw == [{"instruction": "first", "context": "n/a"},
                              {"instruction": "second", "context": ""}]
    with pytest.raises(UserError, match="data.split=train"):
        load_prompts(str(tmp_path), split="test", tokenizer=tokenizer, max_prompt_tokens=64)


def test_csv_shard_errors_name_the_shard(tmp_path: Path, tokenizer) -> None:
    _write_csv(tmp_path / "a1.csv", [("fine", "")])
    (tmp_path / "a2.csv").write_text('question\n"q"\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"a2\.csv.*columns found: question"):
        load_prompts(str(tmp_path), tokenizer=tokenizer, max_prompt_tokens=64)


@pytest.mark.skipif(not (DOLLY_DIR.is_dir() and GPT2_DIR.is_dir()),
                    reason="needs ../shared/data dolly CSVs and GPT-2 tokenizer")
def test_real_dolly_prompts_fit_and_keep_the_response_marker() -> None:
    gpt2 = AutoTokenizer.from_pretrained(str(GPT2_DIR))
    prompt_set, ids = load_prompts(str(DOLLY_DIR), tokenizer=gpt2, max_prompt_tokens=50)
    assert len(prompt_set) == len(ids) == 14_994
    assert prompt_set.raw[0]["instruction"] == "Which is a species of fish? Tope or Rope"
    assert max(map(len, ids)) <= 50
    decoded = gpt2.batch_decode(ids)
    assert all(text.endswith("\n\n" + MARKER) and text.startswith("### Instruction:\n")
               for text in decoded)
    assert decoded == prompt_set.prompts
    # The README measured 34.5 % of these prompts as longer than 50 tokens.
    assert 0.30 < prompt_set.counts["shortened"] / len(ids) < 0.38
    plain = [render_dolly(**raw, context_chars=500) for raw in prompt_set.raw]
    kept = [i for i, text in enumerate(prompt_set.prompts) if text == plain[i]]
    assert len(kept) == len(ids) - prompt_set.counts["shortened"]
    assert [ids[i] for i in kept] == gpt2([plain[i] for i in kept])["input_ids"]
