"""Fitting PPO prompts to a token budget without losing what the policy must continue.

Over-long prompts are shortened so that the part the policy must continue survives: dolly
prompts lose the end of their context, then the end of their instruction, never the headers or
the '### Response:' marker; plain and chat prompts lose their start. Cuts fall on token
boundaries of the field being shortened and the prompt is rendered again, so the template's
own tokens stay intact.
"""

from __future__ import annotations

from collections.abc import Callable

from rlhf.data.prompt_templates import (
    check_template,
    dolly_context_start,
    render_dolly,
    render_prompt,
)
from rlhf.errors import UserError


def fit_prompt(tokenizer, *, template: str, fields: dict, max_tokens: int,
               context_chars: int) -> tuple[list[int], bool]:
    """Token ids of the rendered prompt, at most `max_tokens` long, and whether it was shortened.

    Ids come from the tokenizer's normal call (so a tokenizer that adds BOS adds it here too),
    except for chat prompts, whose template already writes the special tokens. Unshortened
    prompts are exactly the tokenisation of the rendered text. `fields` are a PromptSet.raw row.
    """
    check_template(template)
    ids, _, shortened = _fit(tokenizer, template, fields, max_tokens=max_tokens,
                             context_chars=context_chars)
    return ids, shortened


def _encode(tokenizer, template: str, texts: list[str]) -> tuple[list[list[int]], list | None]:
    """Token ids of each text and, from a fast tokenizer, each token's character span.

    A chat template writes BOS and role tokens itself; adding them again would double them.
    """
    special = template != "chat"
    if not getattr(tokenizer, "is_fast", False):  # slow tokenizers have no offsets
        return list(tokenizer(texts, add_special_tokens=special)["input_ids"]), None
    encoded = tokenizer(texts, add_special_tokens=special, return_offsets_mapping=True)
    return list(encoded["input_ids"]), list(encoded["offset_mapping"])


def _fit(tokenizer, template: str, fields: dict, *, max_tokens: int, context_chars: int,
         text: str | None = None, ids: list[int] | None = None,
         spans: list | None = None) -> tuple[list[int], str, bool]:
    """(ids, text, shortened). `text`, `ids` and `spans` (the ids' character offsets in
    `text`) skip rendering and encoding when the caller already has them."""
    if text is None:
        text = render_prompt(template, _chat_fields(template, fields), tokenizer=tokenizer,
                             context_chars=context_chars)
    if ids is None:
        (ids,), found = _encode(tokenizer, template, [text])
        spans = found[0] if found else None
    if len(ids) <= max_tokens:
        return ids, text, False
    special = template != "chat"
    encode = lambda text: tokenizer(text, add_special_tokens=special)["input_ids"]  # noqa: E731
    if template == "dolly":
        ids, text = _fit_dolly(tokenizer, encode, fields["instruction"],
                               fields.get("context") or "", len(ids), spans, max_tokens,
                               context_chars)
    else:
        tokens = _FieldTokens.inside(text, 0, spans, tokenizer)
        ids, text = _fit_left(encode, tokens, len(ids), max_tokens)
    return ids, text, True


def _chat_fields(template: str, fields: dict) -> dict:
    if template == "chat" and not fields.get("messages"):
        return {"messages": [{"role": "user", "content": fields["prompt"]}]}
    return fields


class _FieldTokens:
    """One field's tokens, and the text of its first or last k tokens.

    Cutting the text at token boundaries (character offsets) and re-rendering keeps the
    template's own tokens intact, which cutting the id list would not. The offsets come from
    the whole prompt's encoding when there is one, so a field is not tokenised again.
    """

    def __init__(self, text: str, spans: list[tuple[int, int]] | None = None,
                 ids: list[int] | None = None, tokenizer=None):
        self.text, self._spans, self._ids, self._tokenizer = text, spans, ids or [], tokenizer
        self.n = len(spans) if spans is not None else len(self._ids)

    @classmethod
    def inside(cls, text: str, start: int, spans: list | None, tokenizer) -> _FieldTokens:
        """The tokens of `text`, which starts at character `start` of an encoded prompt whose
        token spans are `spans`; tokens that straddle its edges or are empty (specials) are
        left out. Without spans, `text` is tokenised on its own."""
        if spans is None:
            return cls.alone(text, tokenizer)
        end = start + len(text)
        return cls(text, spans=[(a - start, b - start) for a, b in spans
                                if start <= a and b <= end and b > a])

    @classmethod
    def alone(cls, text: str, tokenizer) -> _FieldTokens:
        if getattr(tokenizer, "is_fast", False):
            return cls(text, spans=tokenizer(text, add_special_tokens=False,
                                             return_offsets_mapping=True)["offset_mapping"])
        # Slow tokenizers have no offsets; decoding a slice of ids is the next best thing.
        return cls(text, ids=tokenizer(text, add_special_tokens=False)["input_ids"],
                   tokenizer=tokenizer)

    def head(self, k: int) -> str:
        if k >= self.n:
            return self.text
        if k <= 0:
            return ""
        if self._spans is not None:
            return self.text[:self._spans[k - 1][1]]
        return self._tokenizer.decode(self._ids[:k], clean_up_tokenization_spaces=False)

    def tail(self, k: int) -> str:
        if k >= self.n:
            return self.text
        if k <= 0:
            return ""
        if self._spans is not None:
            return self.text[self._spans[self.n - k][0]:]
        return self._tokenizer.decode(self._ids[self.n - k:], clean_up_tokenization_spaces=False)


def _keep_most(render: Callable[[int], str], encode: Callable[[str], list[int]], k: int,
               max_tokens: int) -> tuple[list[int], str] | None:
    """Render with k field tokens kept, lowering k by the overshoot until the prompt fits.

    The first guess (field tokens minus the full prompt's excess) is nearly always right;
    token merges at the cut can cost one more try. None when no k >= 1 fits.
    """
    while k > 0:
        text = render(k)
        ids = encode(text)
        excess = len(ids) - max_tokens
        if excess <= 0:
            return ids, text
        k -= excess
    return None


def _fit_dolly(tokenizer, encode, instruction: str, context: str, n_full: int, spans: list | None,
               max_tokens: int, context_chars: int) -> tuple[list[int], str]:
    """Shorten the end of the context first (dropping its block when none is left), then the
    end of the instruction; the headers and '### Response:' marker always stay, because the
    reference dolly/GPT-2 workload's left-to-right cut lost the marker on a third of dolly
    prompts."""
    context = context[:context_chars]
    if context.strip():
        tokens = _FieldTokens.inside(context, dolly_context_start(instruction), spans, tokenizer)
        found = _keep_most(
            lambda k: render_dolly(instruction, tokens.head(k), context_chars=context_chars),
            encode, tokens.n - (n_full - max_tokens), max_tokens)
        if found:
            return found
    text = render_dolly(instruction, "", context_chars=0)
    ids = encode(text)
    if len(ids) <= max_tokens:
        return ids, text
    tokens = _FieldTokens.alone(instruction, tokenizer)
    found = _keep_most(lambda k: render_dolly(tokens.head(k), "", context_chars=0),
                       encode, tokens.n - (len(ids) - max_tokens), max_tokens)
    if found:
        return found
    text = render_dolly("", "", context_chars=0)
    ids = encode(text)
    if len(ids) > max_tokens:
        raise UserError(f"data.max_prompt_tokens={max_tokens} is too small: the dolly "
                        f"template's headers alone take {len(ids)} tokens; raise "
                        "data.max_prompt_tokens")
    return ids, text


def _fit_left(encode, tokens: _FieldTokens, n_full: int,
              max_tokens: int) -> tuple[list[int], str]:
    """Keep the end of a plain or chat prompt: that is where the question and the generation
    cue (the assistant header) are, while the start is usually context or a system message."""
    found = _keep_most(tokens.tail, encode, tokens.n - (n_full - max_tokens), max_tokens)
    if found is None:
        raise UserError(f"data.max_prompt_tokens={max_tokens} leaves no room for any prompt "
                        "text; raise data.max_prompt_tokens")
    return found


def fit_prompts(tokenizer, template: str, texts: list[str], fields: list[dict], *,
                max_tokens: int, context_chars: int) -> tuple[list[list[int]], list[str], int]:
    """Fit every prompt: one batched encode, then per-row work only for the long ones.

    `texts` are the rendered prompts and `fields` their `PromptSet.raw` rows. Returns each
    prompt's ids, its (possibly shortened) text and how many prompts were shortened.
    """
    all_ids, all_spans = _encode(tokenizer, template, texts)
    texts, shortened = list(texts), 0
    for index, ids in enumerate(all_ids):
        if len(ids) <= max_tokens:
            continue
        all_ids[index], texts[index], _ = _fit(
            tokenizer, template, fields[index], max_tokens=max_tokens,
            context_chars=context_chars, text=texts[index], ids=ids,
            spans=all_spans[index] if all_spans else None)
        shortened += 1
    return all_ids, texts, shortened
