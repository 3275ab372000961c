"""Fitting prompts to a token budget without losing what the policy continues."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from rlhf.data.prompt_fit import fit_prompt
from rlhf.data.prompt_templates import render_dolly
from rlhf.errors import UserError

MARKER = "### Response:\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_bpe) -> PreTrainedTokenizerFast:
    return tiny_bpe()


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text)["input_ids"]


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


def test_bos_is_kept_once_when_shortening(tiny_bpe) -> None:
    tokenizer = tiny_bpe(bos=True)
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
