"""Preference data for reward modelling: normalise, validate, split and tokenise.

Rows in any of these layouts become one `PreferenceData` (prompt, responses, index of the best):

- explicit pairs: string columns `prompt`, `chosen`, `rejected`;
- implicit pairs (Anthropic HH style): only `chosen` and `rejected`, each a whole dialogue. The
  prompt is their shared start up to and including the last "\\n\\nAssistant:" in it, so the
  responses keep their leading space ("\\n\\nAssistant: Sure" -> " Sure"). Without that marker
  the prompt is the longest shared start that ends in whitespace (whole words and lines), which
  may be empty;
- conversational pairs: `chosen`/`rejected` (and optionally `prompt`) are lists of
  {"role", "content"} messages; without `prompt` the prompt is the leading messages both share.
  With a tokenizer that has a chat template, the prompt is rendered with
  `add_generation_prompt=True` and the response is the rendering of the whole conversation
  after that prefix. Without one, each message is rendered as "role: content\\n" and the
  response is the rendering of the response messages;
- an optional numeric `margin` column (how much better chosen is; Llama 2's margin loss);
- OpenAI lm-human-preferences: `query`, `sample0` ... `sample{N-1}` and `best` (an index): a
  listwise example trained with the N-way softmax loss of Ziegler et al. (2019).

`columns` maps these canonical names to the file's own, e.g. {"chosen": "good"}.
Pairs whose responses are identical are dropped and counted (they carry no preference). An
empty `chosen` or `rejected` value is an error, but a response that is empty once the shared
prompt is removed is kept and counted as `empty_responses`: in HH-RLHF an assistant that said
nothing was sometimes the preferred answer (4 of the 2,312 harmless-base test rows).
"""

from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import dataclass, field

from rlhf.data.sources import load_rows, row_location
from rlhf.errors import UserError

ASSISTANT_MARKER = "\n\nAssistant:"
CANONICAL_COLUMNS = ("prompt", "chosen", "rejected", "margin", "query", "best")
COLUMN_OPTION = "data.columns."  # how a training config maps a column: data.columns.chosen=good


@dataclass
class PreferenceData:
    """Examples of one split, as text."""

    prompts: list[str]
    responses: list[list[str]]
    """Per example: [chosen, rejected] for pairs, or the N samples of a listwise example."""
    best: list[int]
    """Index of the preferred response in `responses` (always 0 for pairs)."""
    margins: list[float] | None = None
    """Per-example preference strength, when the data has a `margin` column."""
    listwise: bool = False
    """True for best-of-N examples (lm-human-preferences layout)."""
    counts: dict[str, int] = field(default_factory=dict)
    """How the examples were made: rows read, pairs dropped as identical, rows held out ..."""

    def __len__(self) -> int:
        return len(self.prompts)


def subset(data: PreferenceData, indices) -> PreferenceData:
    """The examples at `indices`, in that order (counts are copied, not recomputed)."""
    indices = list(indices)
    return PreferenceData(
        prompts=[data.prompts[i] for i in indices],
        responses=[data.responses[i] for i in indices],
        best=[data.best[i] for i in indices],
        margins=None if data.margins is None else [data.margins[i] for i in indices],
        listwise=data.listwise, counts=dict(data.counts))


def normalise_rows(rows: list[dict], *, source: str, columns: dict[str, str] | None = None,
                   tokenizer=None, column_option: str = COLUMN_OPTION) -> PreferenceData:
    """Turn rows of any supported layout into `PreferenceData`, validating every row.

    `source` names the data in error messages; `tokenizer` renders conversational rows with
    its chat template when it has one; `column_option` is how the user maps a column (the
    config's "data.columns." or a command-line "--column "), for the hints in messages.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(CANONICAL_COLUMNS))
    if unknown:
        raise UserError(f"{column_option.rstrip('. ')}: unknown name(s) {', '.join(unknown)}; "
                        f"the names that can be mapped are {', '.join(CANONICAL_COLUMNS)}")
    if not rows:
        return PreferenceData(prompts=[], responses=[], best=[], counts={"rows": 0})
    if _is_listwise(rows[0], columns):
        return _listwise_data(rows, source, columns, column_option)
    return _pair_data(rows, source, columns, tokenizer, column_option)


def _is_listwise(first: dict, columns: dict[str, str]) -> bool:
    return "sample0" in first and columns.get("best", "best") in first


def _missing_columns_error(source: str, first: dict, missing: list[str],
                           columns: dict[str, str] | None = None,
                           column_option: str = COLUMN_OPTION) -> UserError:
    """Name each missing column (and the name it was mapped to), the columns the data has,
    and how to map them."""
    columns = columns or {}
    named = ", ".join(repr(name) + (f" (mapped to {columns[name]!r})" if name in columns else "")
                      for name in missing)
    found = ", ".join(f"'{name}'" for name in first) or "none"
    hint = " ".join(f"{column_option}{name}=<name>" for name in missing)
    return UserError(f"{source}: missing column(s) {named} (columns found: {found}); if the data "
                     f"names them differently, map them with {hint}")


def _pair_columns(first: dict, source: str, columns: dict[str, str],
                  column_option: str) -> dict[str, str | None]:
    """Canonical name -> the data's column; optional columns absent from the data map to None."""
    names: dict[str, str | None] = {key: columns.get(key, key) for key in ("chosen", "rejected")}
    missing = [key for key, column in names.items() if column not in first]
    missing += [key for key in ("prompt", "margin") if key in columns and columns[key] not in first]
    if missing:
        raise _missing_columns_error(source, first, missing, columns, column_option)
    for key in ("prompt", "margin"):
        column = columns.get(key, key)
        names[key] = column if column in first else None
    return names


def _value(row: dict, column: str, rows: list[dict], index: int, source: str):
    if column not in row:
        raise UserError(f"{source}: {row_location(rows, index)} has no '{column}' column "
                        f"(it has: {', '.join(repr(k) for k in row)}); every row needs it")
    return row[column]


def _pair_data(rows: list[dict], source: str, columns: dict[str, str], tokenizer,
               column_option: str) -> PreferenceData:
    names = _pair_columns(rows[0], source, columns, column_option)
    prompts, responses, margins, dropped, empty = [], [], [], 0, 0
    for index, row in enumerate(rows):
        where = f"{source}: {row_location(rows, index)}"
        chosen = _value(row, names["chosen"], rows, index, source)
        rejected = _value(row, names["rejected"], rows, index, source)
        prompt = None if names["prompt"] is None else _value(row, names["prompt"], rows, index,
                                                             source)
        prompt, chosen, rejected = _pair_texts(prompt, chosen, rejected, names, where, tokenizer)
        if chosen == rejected:
            dropped += 1
            continue
        empty += (not chosen.strip()) + (not rejected.strip())
        prompts.append(prompt)
        responses.append([chosen, rejected])
        if names["margin"] is not None:
            margins.append(_margin(_value(row, names["margin"], rows, index, source),
                                   names["margin"], where))
    return PreferenceData(
        prompts=prompts, responses=responses, best=[0] * len(prompts),
        margins=margins if names["margin"] is not None else None, listwise=False,
        counts={"rows": len(rows), "dropped_identical": dropped, "empty_responses": empty})


def _pair_texts(prompt, chosen, rejected, names: dict, where: str,
                tokenizer) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) as text, whatever the row's layout."""
    if isinstance(chosen, list) or isinstance(rejected, list):
        return _conversation_texts(prompt, chosen, rejected, names, where, tokenizer)
    for column, value in ((names["chosen"], chosen), (names["rejected"], rejected)):
        _require_string(value, column, where)
        if not value.strip():
            raise UserError(f"{where}: the '{column}' response is empty; remove the row or give "
                            "it a response")
    if names["prompt"] is None:  # no prompt column: split the shared start
        return split_shared_prompt(chosen, rejected)
    _require_string(prompt, names["prompt"], where)
    return prompt, chosen, rejected


def _require_string(value, column: str, where: str) -> None:
    if not isinstance(value, str):
        kind = type(value).__name__
        shown = ("missing (null)" if value is None
                 else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}")  # an int, a list
        raise UserError(f"{where}: column '{column}' is {shown}, not text; every value in it "
                        "must be a string (or, for chat data, a list of role/content messages)")


def split_shared_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two whole dialogues into (shared prompt, chosen response, rejected response).

    The prompt ends with the last "\\n\\nAssistant:" both share (Anthropic HH); without one, at
    the last whitespace of their common start, so no word is cut in half.
    """
    shared = os.path.commonprefix([chosen, rejected])
    marker = shared.rfind(ASSISTANT_MARKER)
    if marker >= 0:
        end = marker + len(ASSISTANT_MARKER)
    else:
        end = max((i + 1 for i, char in enumerate(shared) if char.isspace()), default=0)
    return chosen[:end], chosen[end:], rejected[end:]


def _margin(value, column: str, where: str) -> float:
    """A finite float from a number or a numeric string (CSV cells are strings)."""
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        margin = float(value)
    except (TypeError, ValueError):
        margin = math.nan
    if not math.isfinite(margin):
        raise UserError(f"{where}: column '{column}' is {value!r}, not a finite number; "
                        "margins must be numbers")
    return margin


def _conversation_texts(prompt, chosen: list, rejected: list, names: dict, where: str,
                        tokenizer) -> tuple[str, str, str]:
    """Render a chat-format pair as (prompt, chosen, rejected) text."""
    chosen = _messages(chosen, names["chosen"], where)
    rejected = _messages(rejected, names["rejected"], where)
    if names["prompt"] is None:
        shared = 0
        while (shared < min(len(chosen), len(rejected)) - 1
               and chosen[shared] == rejected[shared]):
            shared += 1
        prompt_messages, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    elif isinstance(prompt, str):
        prompt_messages = [{"role": "user", "content": prompt}]
    else:
        prompt_messages = _messages(prompt, names["prompt"], where)
    prompt_text, chosen_text = render_conversation(prompt_messages, chosen, tokenizer, where)
    _, rejected_text = render_conversation(prompt_messages, rejected, tokenizer, where)
    return prompt_text, chosen_text, rejected_text


def _messages(value, column: str, where: str) -> list[dict]:
    if value == []:
        raise UserError(f"{where}: column '{column}' is an empty list of messages; remove the "
                        "row or give it messages")
    for message in value if isinstance(value, list) else [None]:
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise UserError(f"{where}: column '{column}' must be text or a list of messages "
                            f'like {{"role": "user", "content": "..."}} with string role and '
                            f"content; found {str(message)[:80]!r}")
    return [{"role": message["role"], "content": message["content"]} for message in value]


def render_conversation(prompt: list[dict], response: list[dict], tokenizer,
                        where: str = "conversation") -> tuple[str, str]:
    """(prompt text, response text) of a conversation split into prompt and response messages.

    The response text is whatever the chat template adds after the prompt's rendering with the
    generation prompt, so prompt + response is exactly the rendered conversation.
    """
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        def plain(messages: list[dict]) -> str:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return plain(prompt), plain(response)
    try:
        prompt_text = tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True) if prompt else ""
        full = tokenizer.apply_chat_template(prompt + response, tokenize=False)
    except Exception as error:  # a Jinja template raises whatever its author chose
        raise UserError(f"{where}: the tokenizer's chat template failed on this conversation "
                        f"({str(error).splitlines()[0] if str(error) else error!r})") from None
    if not full.startswith(prompt_text):
        # Some templates render a turn differently once it is followed by an answer; the
        # longest shared start then stands in for the prompt.
        prompt_text = os.path.commonprefix([prompt_text, full])
    return prompt_text, full[len(prompt_text):]


def _listwise_data(rows: list[dict], source: str, columns: dict[str, str],
                   column_option: str) -> PreferenceData:
    """lm-human-preferences rows: query, sample0..sample{N-1}, best."""
    first = rows[0]
    prompt_column = columns.get("prompt", columns.get("query", "query" if "query" in first
                                                      else "prompt"))
    best_column = columns.get("best", "best")
    if prompt_column not in first:
        raise _missing_columns_error(source, first, ["query"], columns, column_option)
    samples = [f"sample{i}" for i in itertools.takewhile(lambda i: f"sample{i}" in first,
                                                         itertools.count())]
    if len(samples) < 2:
        raise UserError(f"{source}: listwise rows need at least sample0 and sample1 "
                        f"(columns found: {', '.join(repr(k) for k in first)})")
    prompts, responses, best, dropped = [], [], [], 0
    for index, row in enumerate(rows):
        where = f"{source}: {row_location(rows, index)}"
        values = [_value(row, column, rows, index, source)
                  for column in (prompt_column, *samples)]
        for column, value in zip((prompt_column, *samples), values, strict=True):
            _require_string(value, column, where)
        if len(set(values[1:])) == 1:
            dropped += 1
            continue
        for column, value in zip(samples, values[1:], strict=True):
            if not value.strip():
                raise UserError(f"{where}: '{column}' is empty; remove the row or give it text")
        prompts.append(values[0])
        responses.append(values[1:])
        best.append(_best(_value(row, best_column, rows, index, source), len(samples),
                          best_column, where))
    return PreferenceData(prompts=prompts, responses=responses, best=best, listwise=True,
                          counts={"rows": len(rows), "dropped_identical": dropped})


def _best(value, n_samples: int, column: str, where: str) -> int:
    """An index into the samples, from an int or a string of digits (CSV cells are strings)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_samples:
        raise UserError(f"{where}: '{column}' is {value!r}; it must be the index of the best "
                        f"sample, an integer from 0 to {n_samples - 1}")
    return value


def held_out_indices(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) example indices: a seeded `test_fraction` held out (at least one, leaving
    at least one), each part in the original order; the same seed holds out the same ones."""
    if n < 2:
        raise UserError(f"only {n} usable example(s): at least 2 are needed to hold out a test "
                        "set; add rows or give the data a test split")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[n_test:]), sorted(order[:n_test])


def split_train_test(data: PreferenceData, test_fraction: float,
                     seed: int) -> tuple[PreferenceData, PreferenceData]:
    """Hold out a seeded `test_fraction` of the examples (at least one, leaving at least one).

    Both parts keep the original order of their examples; the same seed always holds out the
    same examples.
    """
    train_indices, test_indices = held_out_indices(len(data), test_fraction, seed)
    train, test = subset(data, train_indices), subset(data, test_indices)
    train.counts["held_out"] = len(test_indices)
    test.counts = {"rows": len(test_indices), "dropped_identical": 0}
    return train, test


def _cap(data: PreferenceData, max_samples: int | None) -> PreferenceData:
    """The first `max_samples` examples (like `Dataset.select(range(n))`)."""
    if max_samples is None or len(data) <= max_samples:
        return data
    capped = subset(data, range(max_samples))
    capped.counts["dropped_max_samples"] = len(data) - max_samples
    return capped


def load_preferences(path: str, *, name: str | None = None, split: str = "train",
                     test_split: str | None = "test", test_fraction: float = 0.1, seed: int = 0,
                     columns: dict[str, str] | None = None, max_samples: int | None = None,
                     tokenizer=None) -> tuple[PreferenceData, PreferenceData]:
    """(train, test) preference data from any source `load_rows` reads.

    The test part is the source's own `test_split` when it has one, else a seeded
    `test_fraction` of the training rows. `max_samples` keeps the first examples of each part.
    """
    train_rows, test_rows, description = load_rows(path, name=name, split=split,
                                                   test_split=test_split)
    train = normalise_rows(train_rows, source=description, columns=columns, tokenizer=tokenizer)
    if not train:
        raise UserError(f"{description}: no usable preference examples in split '{split}' "
                        f"({train.counts.get('rows', 0)} rows, "
                        f"{train.counts.get('dropped_identical', 0)} with identical responses)")
    if test_rows is None:
        train, test = split_train_test(train, test_fraction, seed)
    else:
        test = normalise_rows(test_rows, source=description, columns=columns,
                              tokenizer=tokenizer)
    return _cap(train, max_samples), _cap(test, max_samples)


@dataclass
class TokenizedPreferences:
    """Examples as the reward model reads them."""

    input_ids: list[list[list[int]]]
    """Example -> response -> token ids of (prompt, response) in the model's template."""
    best: list[int]
    """Index of the preferred response of each example."""
    margins: list[float] | None
    """Per-example margin, or None when the data has none."""
    listwise: bool
    """True for best-of-N examples."""
    truncated: int
    """Examples with at least one (prompt, response) cut to fit max_length."""


def tokenize_preferences(data: PreferenceData, tokenizer, *, template: str, separator: str = "\n",
                         max_length: int) -> TokenizedPreferences:
    """Encode every (prompt, response) the way `encode_prompt_response` does at scoring time.

    One batched tokenizer call per response position (all chosen, then all rejected).
    """
    n_responses = len(data.responses[0]) if len(data) else 0
    per_position = [
        encode_prompt_response(tokenizer, data.prompts, [r[position] for r in data.responses],
                               template=template, separator=separator, max_length=max_length)
        for position in range(n_responses)]
    input_ids = [list(ids) for ids in zip(*(ids for ids, _ in per_position), strict=True)]
    flags = [any(cut) for cut in zip(*(cut for _, cut in per_position), strict=True)]
    return TokenizedPreferences(input_ids=input_ids, best=list(data.best),
                                margins=None if data.margins is None else list(data.margins),
                                listwise=data.listwise, truncated=sum(flags))


# A run of token ids and the sequence it belongs to: 0 = prompt (or the whole text for
# "concat"), 1 = response, None = special tokens the tokenizer added.
Segment = tuple[int | None, list[int]]


def encode_prompt_response(tokenizer, prompts: list[str], responses: list[str], *,
                           template: str, separator: str = "\n",
                           max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each (prompt, response) as the reward model reads it, and whether it was cut.

    template "pair": the tokenizer's sentence-pair encoding `tokenizer(prompt, response)`
    (RoBERTa: `<s>prompt</s></s>response</s>`, how argilla/roberta-base-reward-model-falcon-dolly
    was trained). template "concat": `tokenizer(prompt + separator + response)`.

    Inputs longer than `max_length` lose the start of the prompt (for "concat", the start of
    the text), the same ids as the tokenizer's own left truncation, so the response the score
    is about stays whole. Only when the response alone does not fit is the prompt dropped and
    the response cut at the end. No row is ever dropped.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        return [], []
    if template == "pair":
        return _encode_fitted(tokenizer, list(prompts), list(responses), max_length)
    if template == "concat":
        texts = [p + separator + r for p, r in zip(prompts, responses, strict=True)]
        return _encode_fitted(tokenizer, texts, None, max_length)
    raise UserError(f"unknown reward template '{template}'; use 'pair' or 'concat'")


def _encode_fitted(tokenizer, texts: list[str], pairs: list[str] | None,
                   max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Encode untruncated in one batch, then cut the rows that are too long.

    Fast tokenizers say which sequence each token came from (`sequence_ids`), so the kept ids
    are exactly the tokenizer's own; slow ones are assembled with
    `build_inputs_with_special_tokens`.
    """
    if getattr(tokenizer, "is_fast", False):
        encoding = tokenizer(texts, pairs, add_special_tokens=True, verbose=False,
                             return_attention_mask=False, return_token_type_ids=False)
        if encoding.encodings is not None:
            rows = [ids if len(ids) <= max_length else _runs(ids, encoding.sequence_ids(row))
                    for row, ids in enumerate(encoding["input_ids"])]
            return _fit_all(rows, max_length)
    firsts = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    seconds = (tokenizer(pairs, add_special_tokens=False, verbose=False)["input_ids"]
               if pairs is not None else [None] * len(texts))
    rows = [_slow_runs(tokenizer, first, second)
            for first, second in zip(firsts, seconds, strict=True)]
    return _fit_all(rows, max_length)


def _fit_all(rows: list, max_length: int) -> tuple[list[list[int]], list[bool]]:
    """Rows are plain ids (already short enough) or segments to fit."""
    fitted = [(row, False) if not row or isinstance(row[0], int) else _fit(row, max_length)
              for row in rows]
    return [ids for ids, _ in fitted], [cut for _, cut in fitted]


def _runs(ids: list[int], sequence_ids: list[int | None]) -> list[Segment]:
    pairs = zip(sequence_ids, ids, strict=True)
    return [(sequence, [token for _, token in run])
            for sequence, run in itertools.groupby(pairs, key=lambda pair: pair[0])]


def _slow_runs(tokenizer, first: list[int], second: list[int] | None) -> list[Segment]:
    ids = tokenizer.build_inputs_with_special_tokens(first, second)
    special = tokenizer.get_special_tokens_mask(first, second)
    sequence_ids, seen = [], 0
    for is_special in special:
        sequence_ids.append(None if is_special else int(seen >= len(first)))
        seen += not is_special
    return _runs(ids, sequence_ids)


def _fit(segments: list[Segment], max_length: int) -> tuple[list[int], bool]:
    """Join a row's runs, cutting the prompt's start (then the response's end) to fit."""
    excess = sum(len(ids) for _, ids in segments) - max_length
    if excess <= 0:
        return [token for _, ids in segments for token in ids], False
    specials = sum(len(ids) for sequence, ids in segments if sequence is None)
    if specials >= max_length:
        raise UserError(f"max_length {max_length} leaves no room for text after the "
                        f"tokenizer's {specials} special tokens; raise max_length")
    fitted = []
    for sequence, ids in segments:
        if sequence == 0 and excess > 0:
            cut = min(excess, len(ids))
            ids, excess = ids[cut:], excess - cut
        fitted.append((sequence, ids))
    for position in reversed(range(len(fitted))):
        sequence, ids = fitted[position]
        if sequence == 1 and excess > 0:
            cut = min(excess, len(ids))
            fitted[position], excess = (sequence, ids[:len(ids) - cut]), excess - cut
    return [token for _, ids in fitted for token in ids], True
