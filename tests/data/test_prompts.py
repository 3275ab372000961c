"""Prompt sets for PPO: rendering, row normalisation, fitting to a token budget, batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rlhf.data.prompts import (
    PromptSet,
    fit_prompt,
    left_pad,
    load_prompts,
    normalise_prompt_rows,
    prompt_batches,
    render_dolly,
)
from rlhf.errors import UserError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
DOLLY_DIR = SHARED / "dolly-15k-prompts-oneill"
GPT2_DIR = SHARED / "gpt2-tokenizer"
MARKER = "### Response:\n"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = ["### Instruction:\nWhat is the capital of France?\n\n### Context:\nParis is the capital "
          "and largest city of France, on the Seine.\n\n### Response:\n",
          "Tell me about the cat that sat on the mat in the old house by the river."] * 5


def _tiny_tokenizer(bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in milliseconds; `bos` makes its normal call prepend <s>."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<eos>", "<s>", "<|user|>", "<|assistant|>", "<|system|>"]
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>",
                                        pad_token="<eos>", bos_token="<s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return _tiny_tokenizer()


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


# -- rendering ---------------------------------------------------------------------------------


def test_render_dolly_with_and_without_context() -> None:
    assert render_dolly("Name a fish.", "Tope and rope.", context_chars=500) == (
        "### Instruction:\nName a fish.\n\n### Context:\nTope and rope.\n\n### Response:\n")
    expected = "### Instruction:\nName a fish.\n\n### Response:\n"
    assert render_dolly("Name a fish.", "", context_chars=500) == expected
    assert render_dolly("Name a fish.", " \n ", context_chars=500) == expected
    assert render_dolly("Name a fish.", "Tope and rope.", context_chars=0) == expected


def test_render_dolly_cuts_context_to_context_chars() -> None:
    text = render_dolly("Q?", "abcdefghij", context_chars=4)
    assert text == "### Instruction:\nQ?\n\n### Context:\nabcd\n\n### Response:\n"


# -- normalising rows --------------------------------------------------------------------------


def test_dolly_rows_are_normalised_and_empty_instructions_dropped() -> None:
    rows = [{"instruction": "Say hi.", "context": None},
            {"instruction": "  ", "context": "ignored"},
            {"instruction": None, "context": "ignored"},
            {"instruction": "Sum it up.", "context": "A long story."}]
    prompt_set = normalise_prompt_rows(rows, source="x.jsonl", template="dolly", columns=None)
    assert isinstance(prompt_set, PromptSet) and len(prompt_set) == 2
    assert prompt_set.raw == [{"instruction": "Say hi.", "context": ""},
                              {"instruction": "Sum it up.", "context": "A long story."}]
    assert prompt_set.prompts[1] == render_dolly("Sum it up.", "A long story.", context_chars=500)
    assert prompt_set.counts == {"rows": 4, "dropped_empty": 2, "kept": 2, "sampled_out": 0,
                                 "shortened": 0}


def test_context_column_is_optional() -> None:
    prompt_set = normalise_prompt_rows([{"instruction": "Say hi."}], source="x", template="dolly",
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
    prompt_set = normalise_prompt_rows(rows, source="argilla", template="dolly", columns=None)
    assert prompt_set.raw == [{"instruction": "new q", "context": "new c"},
                              {"instruction": "only original", "context": ""}]


def test_column_mapping() -> None:
    rows = [{"question": "Why?", "passage": "Because."}]
    prompt_set = normalise_prompt_rows(
        rows, source="x", template="dolly",
        columns={"instruction": "question", "context": "passage"})
    assert prompt_set.raw == [{"instruction": "Why?", "context": "Because."}]
    plain = normalise_prompt_rows([{"text": "Once upon"}], source="x", template="prompt",
                                  columns={"prompt": "text"})
    assert plain.prompts == ["Once upon"] and plain.raw == [{"prompt": "Once upon"}]


def test_missing_column_names_found_columns_and_the_setting() -> None:
    with pytest.raises(UserError) as error:
        normalise_prompt_rows([{"question": "Why?", "answer": "So."}], source="qa.jsonl",
                              template="dolly", columns=None)
    message = str(error.value)
    assert "qa.jsonl" in message and "question, answer" in message
    assert "data.columns.instruction=" in message
    with pytest.raises(UserError, match="data.columns.prompt="):
        normalise_prompt_rows([{"text": "x"}], source="x", template="prompt", columns=None)
    with pytest.raises(UserError, match="'query'.*columns found: text"):
        normalise_prompt_rows([{"text": "x"}], source="x", template="prompt",
                              columns={"prompt": "query"})


def test_non_string_cell_names_the_row_and_column() -> None:
    rows = [{"instruction": "fine"}, {"instruction": ["not", "text"]}]
    with pytest.raises(UserError, match=r"x\.jsonl: row 2: column 'instruction' holds list"):
        normalise_prompt_rows(rows, source="x.jsonl", template="dolly", columns=None)


def test_unknown_template_and_column_key() -> None:
    with pytest.raises(UserError, match="data.template='alpaca'"):
        normalise_prompt_rows([{"prompt": "x"}], source="x", template="alpaca", columns=None)
    with pytest.raises(UserError, match="data.columns.question"):
        normalise_prompt_rows([{"prompt": "x"}], source="x", template="prompt",
                              columns={"question": "prompt"})


def test_chat_template_renders_messages_and_plain_prompts(tokenizer) -> None:
    rows = [{"messages": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "Hi?"},
                          {"role": "assistant", "content": "the dataset's answer"}]},
            {"messages": []}]
    prompt_set = normalise_prompt_rows(rows, source="x", template="chat", columns=None,
                                       tokenizer=tokenizer)
    # The trailing assistant turn is the data's answer: the policy writes its own.
    assert prompt_set.prompts == ["<|system|>Be brief.<eos><|user|>Hi?<eos><|assistant|>"]
    assert prompt_set.raw[0]["prompt"] == "Hi?"
    assert prompt_set.counts["dropped_empty"] == 1
    plain = normalise_prompt_rows([{"prompt": "Hello"}], source="x", template="chat",
                                  columns=None, tokenizer=tokenizer)
    assert plain.prompts == ["<|user|>Hello<eos><|assistant|>"]


def test_chat_template_missing_is_a_user_error() -> None:
    bare = _tiny_tokenizer()
    bare.chat_template = None
    with pytest.raises(UserError, match="chat template"):
        normalise_prompt_rows([{"prompt": "Hello"}], source="x", template="chat", columns=None,
                              tokenizer=bare)


def test_malformed_messages_name_the_row(tokenizer) -> None:
    rows = [{"messages": [{"role": "user", "content": 3}]}]
    with pytest.raises(UserError, match="row 1: column 'messages'"):
        normalise_prompt_rows(rows, source="x", template="chat", columns=None,
                              tokenizer=tokenizer)


# -- fitting -----------------------------------------------------------------------------------


def _dolly(instruction: str, context: str = "") -> dict:
    return {"instruction": instruction, "context": context}


def test_short_prompt_is_the_plain_tokenisation(tokenizer) -> None:
    fields = _dolly("What is the capital?", "Paris is the capital.")
    ids, shortened = fit_prompt(tokenizer, template="dolly", fields=fields, max_tokens=200,
                                context_chars=500)
    assert not shortened
    assert ids == _ids(tokenizer, render_dolly(**fields, context_chars=500))


def test_long_context_is_cut_inside_the_context(tokenizer) -> None:
    fields = _dolly("What is the capital?", "Paris is the capital of France. " * 30)
    ids, shortened = fit_prompt(tokenizer, template="dolly", fields=fields, max_tokens=60,
                                context_chars=10_000)
    text = tokenizer.decode(ids)
    assert shortened and len(ids) <= 60
    assert text.startswith("### Instruction:\nWhat is the capital?\n\n### Context:\nParis is")
    assert text.endswith("\n\n" + MARKER)
    # Nearly the whole budget is used: the cut is at the token level, not a coarse one.
    assert len(ids) >= 57


def test_context_is_dropped_before_the_instruction_is_cut(tokenizer) -> None:
    instruction = "Tell me about the cat that sat on the mat " * 6
    fields = _dolly(instruction, "Paris is the capital of France. " * 10)
    alone = len(_ids(tokenizer, render_dolly(instruction, "", context_chars=0)))
    ids, shortened = fit_prompt(tokenizer, template="dolly", fields=fields, max_tokens=alone + 1,
                                context_chars=500)
    assert shortened and ids == _ids(tokenizer, render_dolly(instruction, "", context_chars=0))
    ids, shortened = fit_prompt(tokenizer, template="dolly", fields=fields, max_tokens=alone - 8,
                                context_chars=500)
    text = tokenizer.decode(ids)
    assert shortened and len(ids) <= alone - 8 and "### Context:" not in text
    assert text.startswith("### Instruction:\nTell me about") and text.endswith("\n\n" + MARKER)


def test_headers_alone_too_long_is_a_user_error(tokenizer) -> None:
    headers = len(_ids(tokenizer, render_dolly("", "", context_chars=0)))
    with pytest.raises(UserError, match="data.max_prompt_tokens"):
        fit_prompt(tokenizer, template="dolly", fields=_dolly("x " * 50), max_tokens=headers - 1,
                   context_chars=500)


def test_plain_prompts_lose_their_start(tokenizer) -> None:
    text = "the cat sat on the mat " * 20 + "What is the capital?"
    ids, shortened = fit_prompt(tokenizer, template="prompt", fields={"prompt": text},
                                max_tokens=12, context_chars=500)
    assert shortened and len(ids) <= 12
    assert tokenizer.decode(ids).endswith("mat What is the capital?")


def test_bos_is_kept_once_when_shortening() -> None:
    tokenizer = _tiny_tokenizer(bos=True)
    bos = tokenizer.convert_tokens_to_ids("<s>")
    for template, fields in [("prompt", {"prompt": "the cat sat on the mat " * 20}),
                             ("dolly", _dolly("Why?", "Paris is the capital. " * 20))]:
        ids, shortened = fit_prompt(tokenizer, template=template, fields=fields, max_tokens=20,
                                    context_chars=500)
        assert shortened and len(ids) <= 20 and ids[0] == bos and ids.count(bos) == 1


def test_chat_prompts_keep_the_assistant_cue_and_add_no_specials(tokenizer) -> None:
    messages = [{"role": "system", "content": "the cat sat on the mat " * 20},
                {"role": "user", "content": "Hi?"}]
    ids, shortened = fit_prompt(tokenizer, template="chat", fields={"messages": messages},
                                max_tokens=16, context_chars=500)
    assert shortened and len(ids) <= 16
    assert tokenizer.decode(ids).endswith("<|user|>Hi?<eos><|assistant|>")
    short = [{"role": "user", "content": "Hi?"}]
    ids, shortened = fit_prompt(tokenizer, template="chat", fields={"messages": short},
                                max_tokens=16, context_chars=500)
    assert not shortened
    assert ids == tokenizer("<|user|>Hi?<eos><|assistant|>", add_special_tokens=False)[
        "input_ids"]


class _SlowTokenizer:
    """A tokenizer without character offsets, like transformers' Python ('slow') ones."""

    is_fast = False

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, text, add_special_tokens=True, **options):
        assert "return_offsets_mapping" not in options
        return self.inner(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, **options):
        return self.inner.decode(ids, **options)


def test_tokenizers_without_offsets_shorten_by_decoding(tokenizer) -> None:
    slow = _SlowTokenizer(tokenizer)
    fields = _dolly("What is the capital?", "Paris is the capital of France. " * 30)
    ids, shortened = fit_prompt(slow, template="dolly", fields=fields, max_tokens=40,
                                context_chars=500)
    assert shortened and len(ids) <= 40 and tokenizer.decode(ids).endswith(MARKER)


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


# -- batching ----------------------------------------------------------------------------------


def test_left_pad_puts_real_tokens_flush_right() -> None:
    ids, mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert mask.tolist() == [[True, True, True], [False, False, True], [False, False, False]]


def test_left_pad_keeps_tokens_equal_to_the_pad_id() -> None:
    # GPT-2 pads with EOS: the mask comes from lengths, never from ids == pad_id.
    ids, mask = left_pad([[0, 4], [0]], pad_id=0)
    assert ids.tolist() == [[0, 4], [0, 0]]
    assert mask.tolist() == [[True, True], [False, True]]


def test_prompt_batches_are_deterministic_full_and_cover_each_epoch() -> None:
    batches = prompt_batches(10, 3, seed=1, epoch=0)
    assert len(batches) == 3 and all(len(batch) == 3 for batch in batches)
    flat = [i for batch in batches for i in batch]
    assert len(set(flat)) == 9 and set(flat) <= set(range(10))
    torch.manual_seed(123)
    assert prompt_batches(10, 3, seed=1, epoch=0) == batches
    assert prompt_batches(10, 3, seed=1, epoch=1) != batches
    assert prompt_batches(10, 3, seed=2, epoch=0) != batches
    full = prompt_batches(12, 4, seed=0, epoch=5)
    assert sorted(i for batch in full for i in batch) == list(range(12))
    assert prompt_batches(2, 3, seed=0, epoch=0) == []
