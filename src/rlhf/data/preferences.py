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
empty response is a legitimate (bad) answer, in every layout: the row is kept and counted as
`empty_responses` (an empty or blank `chosen`/`rejected`/`sampleN` string, a response that is
empty once the shared prompt is removed, response messages whose contents are all blank). In
HH-RLHF an assistant that said nothing was sometimes the preferred answer (4 of the 2,312
harmless-base test rows); UltraFeedback-binarized has rejected assistant messages that are "".
A missing (null) or non-string value, or an empty list of messages, is an error naming the row.
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
        prompt, chosen, rejected, n_empty = _pair_texts(prompt, chosen, rejected, names, where,
                                                        tokenizer)
        if chosen == rejected:
            dropped += 1
            continue
        empty += n_empty
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
                tokenizer) -> tuple[str, str, str, int]:
    """(prompt, chosen response, rejected response) as text, whatever the row's layout, and
    how many of the two responses are empty (kept: an empty answer is a legitimate bad one)."""
    if isinstance(chosen, list) or isinstance(rejected, list):
        return _conversation_texts(prompt, chosen, rejected, names, where, tokenizer)
    for column, value in ((names["chosen"], chosen), (names["rejected"], rejected)):
        _require_string(value, column, where)
    if names["prompt"] is None:  # no prompt column: split the shared start
        prompt, chosen, rejected = split_shared_prompt(chosen, rejected)
    else:
        _require_string(prompt, names["prompt"], where)
    return prompt, chosen, rejected, _blank(chosen) + _blank(rejected)


def _blank(text: str) -> bool:
    return not text.strip()


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
                        tokenizer) -> tuple[str, str, str, int]:
    """Render a chat-format pair as (prompt, chosen, rejected) text, and count the responses
    whose messages are all blank (their rendering is not empty: it holds the template's role
    markers, so emptiness is judged on the contents)."""
    chosen = _messages(chosen, names["chosen"], where)
    rejected = _messages(rejected, names["rejected"], where)
    shared = 0  # leading messages both share, leaving each at least one response message
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    prompt_messages = chosen[:shared]
    if names["prompt"] is not None:
        given = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                 else _messages(prompt, names["prompt"], where))
        # HuggingFaceH4/ultrafeedback_binarized repeats its prompt as the user turn that opens
        # chosen and rejected: the shared start is then the prompt, not part of the responses.
        if not (shared and prompt_messages[-len(given):] == given):
            shared, prompt_messages = 0, given
    chosen, rejected = chosen[shared:], rejected[shared:]
    prompt_text, chosen_text = render_conversation(prompt_messages, chosen, tokenizer, where)
    _, rejected_text = render_conversation(prompt_messages, rejected, tokenizer, where)
    n_empty = sum(all(_blank(m["content"]) for m in messages) for messages in (chosen, rejected))
    return prompt_text, chosen_text, rejected_text, n_empty


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
    prompts, responses, best, dropped, empty = [], [], [], 0, 0
    for index, row in enumerate(rows):
        where = f"{source}: {row_location(rows, index)}"
        values = [_value(row, column, rows, index, source)
                  for column in (prompt_column, *samples)]
        for column, value in zip((prompt_column, *samples), values, strict=True):
            _require_string(value, column, where)
        if len(set(values[1:])) == 1:
            dropped += 1
            continue
        empty += sum(_blank(value) for value in values[1:])
        prompts.append(values[0])
        responses.append(values[1:])
        best.append(_best(_value(row, best_column, rows, index, source), len(samples),
                          best_column, where))
    return PreferenceData(prompts=prompts, responses=responses, best=best, listwise=True,
                          counts={"rows": len(rows), "dropped_identical": dropped,
                                  "empty_responses": empty})


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
    extra_inputs: dict[str, list[list[list[int]]]] = field(default_factory=dict)
    """Other per-token inputs the tokenizer returns, laid out like `input_ids` and cut exactly
    as they were (BERT's `token_type_ids`); empty for RoBERTa and GPT-2."""
    pad_values: dict[str, int] = field(default_factory=dict)
    """What each of `extra_inputs` is padded with (`tokenizer.pad_token_type_id` for types)."""


def tokenize_preferences(data: PreferenceData, tokenizer, *, template: str, separator: str = "\n",
                         max_length: int, append_eos: bool = False) -> TokenizedPreferences:
    """Encode every (prompt, response) the way `encode_model_inputs` does at scoring time.

    One batched tokenizer call per response position (all chosen, then all rejected).
    """
    n_responses = len(data.responses[0]) if len(data) else 0
    per_position = [
        encode_model_inputs(tokenizer, data.prompts, [r[position] for r in data.responses],
                            template=template, separator=separator, max_length=max_length,
                            append_eos=append_eos)
        for position in range(n_responses)]

    def by_example(rows_per_position: list[list[list[int]]]) -> list[list[list[int]]]:
        return [list(rows) for rows in zip(*rows_per_position, strict=True)]

    names = list(per_position[0].extra) if per_position else []
    flags = [any(cut) for cut in zip(*(e.truncated for e in per_position), strict=True)]
    return TokenizedPreferences(
        input_ids=by_example([e.input_ids for e in per_position]), best=list(data.best),
        margins=None if data.margins is None else list(data.margins),
        listwise=data.listwise, truncated=sum(flags),
        extra_inputs={name: by_example([e.extra[name] for e in per_position])
                      for name in names},
        pad_values=dict(per_position[0].pad_values) if per_position else {})


# A token is its id followed by its value of each extra model input (BERT's token type).
Token = tuple[int, ...]
# A run of tokens and the sequence it belongs to: 0 = prompt (or the whole text for "concat"),
# 1 = response, None = special tokens the tokenizer added (and the EOS we append).
Segment = tuple[int | None, list[Token]]


@dataclass
class EncodedInputs:
    """(prompt, response) rows encoded as the reward model reads them."""

    input_ids: list[list[int]]
    """Per row: token ids."""
    extra: dict[str, list[list[int]]]
    """Per input name, per row: the other per-token inputs the tokenizer returns (it follows
    `tokenizer.model_input_names`: BERT returns `token_type_ids`, RoBERTa and GPT-2 nothing),
    cut exactly as the ids were."""
    pad_values: dict[str, int]
    """What each of `extra` is padded with."""
    truncated: list[bool]
    """Per row: whether it was cut to fit max_length."""


def encode_prompt_response(tokenizer, prompts: list[str], responses: list[str], *,
                           template: str, separator: str = "\n", max_length: int,
                           append_eos: bool = False) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each (prompt, response) as the reward model reads it, and whether it was
    cut: the ids of `encode_model_inputs`."""
    encoded = encode_model_inputs(tokenizer, prompts, responses, template=template,
                                  separator=separator, max_length=max_length,
                                  append_eos=append_eos)
    return encoded.input_ids, encoded.truncated


def encode_model_inputs(tokenizer, prompts: list[str], responses: list[str], *,
                        template: str, separator: str = "\n", max_length: int,
                        append_eos: bool = False) -> EncodedInputs:
    """Every model input of each (prompt, response) as the reward model reads it.

    template "pair": the tokenizer's sentence-pair encoding `tokenizer(prompt, response)`
    (RoBERTa: `<s>prompt</s></s>response</s>`, how argilla/roberta-base-reward-model-falcon-dolly
    was trained; BERT: `[CLS]prompt[SEP]response[SEP]` with token type ids 0...0 1...1).
    template "concat": `tokenizer(prompt + separator + response)`.

    `append_eos`: end each input with the tokenizer's EOS when it does not already end with it,
    TRL RewardTrainer's convention (see `_end_with_eos`).

    Inputs longer than `max_length` lose the start of the prompt (for "concat", the start of
    the text), the same ids as the tokenizer's own left truncation, so the response the score
    is about stays whole. Only when the response alone does not fit is the prompt dropped and
    the response cut at the end; special tokens and the appended EOS are never cut. No row is
    ever dropped.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if template == "pair":
        texts, pairs = list(prompts), list(responses)
    elif template == "concat":
        texts = [p + separator + r for p, r in zip(prompts, responses, strict=True)]
        pairs = None
    else:
        raise UserError(f"unknown reward template '{template}'; use 'pair' or 'concat'")
    if not texts:
        return EncodedInputs(input_ids=[], extra={}, pad_values={}, truncated=[])
    columns, sequence_ids, names = _encode_rows(tokenizer, texts, pairs)
    eos = tokenizer.eos_token_id if append_eos else None
    fitted = [(row_columns, False) if eos is None and len(row_columns[0]) <= max_length
              else _fit_row(row_columns, sequence_ids(row), eos, max_length)
              for row, row_columns in enumerate(columns)]  # most rows fit as they are
    return EncodedInputs(
        input_ids=[row_columns[0] for row_columns, _ in fitted],
        extra={name: [row_columns[i + 1] for row_columns, _ in fitted]
               for i, name in enumerate(names)},
        pad_values={name: _pad_value(tokenizer, name) for name in names},
        truncated=[cut for _, cut in fitted])


def _pad_value(tokenizer, name: str) -> int:
    """transformers pads token types with `pad_token_type_id` (0 but for a few models)."""
    return tokenizer.pad_token_type_id if name == "token_type_ids" else 0


def _encode_rows(tokenizer, texts: list[str], pairs: list[str] | None):
    """Encode untruncated in one batch: per row its columns (ids, then each extra input), a
    function giving the sequence each token of a row came from, and the extra inputs' names.

    Fast tokenizers say which sequence each token came from (`sequence_ids`), so the kept ids
    are exactly the tokenizer's own; slow ones are assembled with
    `build_inputs_with_special_tokens` (and `create_token_type_ids_from_sequences`).
    """
    if getattr(tokenizer, "is_fast", False):
        # Default return flags: whatever the tokenizer's model_input_names ask for.
        encoding = tokenizer(texts, pairs, add_special_tokens=True, verbose=False,
                             return_attention_mask=False)
        if encoding.encodings is not None:
            names = [name for name in encoding if name != "input_ids"]
            columns = [[encoding[name][row] for name in ("input_ids", *names)]
                       for row in range(len(texts))]
            return columns, encoding.sequence_ids, names
    names = ["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else []
    firsts = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    seconds = (tokenizer(pairs, add_special_tokens=False, verbose=False)["input_ids"]
               if pairs is not None else [None] * len(texts))
    built = [_slow_row(tokenizer, first, second, names)
             for first, second in zip(firsts, seconds, strict=True)]
    return [columns for columns, _ in built], lambda row: built[row][1], names


def _slow_row(tokenizer, first: list[int], second: list[int] | None,
              names: list[str]) -> tuple[list[list[int]], list[int | None]]:
    ids = tokenizer.build_inputs_with_special_tokens(first, second)
    columns = [ids] + [tokenizer.create_token_type_ids_from_sequences(first, second)
                       for _ in names]
    special = tokenizer.get_special_tokens_mask(first, second)
    sequence_ids, seen = [], 0
    for is_special in special:
        sequence_ids.append(None if is_special else int(seen >= len(first)))
        seen += not is_special
    return columns, sequence_ids


def _fit_row(columns: list[list[int]], sequence_ids: list[int | None], eos: int | None,
             max_length: int) -> tuple[list[list[int]], bool]:
    """One row's columns ended with EOS (when `eos` is given) and cut to fit max_length."""
    row = list(zip(sequence_ids, zip(*columns, strict=True), strict=True))
    if eos is not None:
        row = _end_with_eos(row, eos, len(columns) - 1)
    tokens, cut = _fit(row, max_length)
    if not tokens:
        return [[] for _ in columns], cut
    return [list(column) for column in zip(*tokens, strict=True)], cut


def _end_with_eos(row: list[tuple[int | None, Token]], eos: int,
                  n_extra: int) -> list[tuple[int | None, Token]]:
    """The row ending in EOS the way TRL's RewardTrainer feeds text, kept under truncation.

    TRL appends `eos_token` to the response text unless it already ends with it, then
    tokenises `prompt + response` (trl/trainer/reward_trainer.py, `_prepare_dataset`, v0.24
    to v1.9). So the EOS goes right after the last text token, before any special tokens the
    tokenizer adds at the end, with that token's type. An input the tokenizer already ends
    with EOS (RoBERTa's `</s>`) gets none: unlike TRL, which would double it, since such
    encoders' hub models were trained on the tokenizer's own pair encoding (argilla's RoBERTa).
    The EOS is marked special (sequence None) so that truncation never cuts it.
    """
    text = [index for index, (sequence, _) in enumerate(row) if sequence is not None]
    if row and row[-1][1][0] == eos:
        end = len(row) - 1
    elif text and row[text[-1]][1][0] == eos:  # the text ends with EOS, before special tokens
        end = text[-1]
    else:
        at = text[-1] + 1 if text else len(row)
        types = row[at - 1][1][1:] if at else (0,) * n_extra  # at == 0: an empty row
        return row[:at] + [(None, (eos, *types))] + row[at:]
    return row[:end] + [(None, row[end][1])] + row[end + 1:]


def _fit(row: list[tuple[int | None, Token]], max_length: int) -> tuple[list[Token], bool]:
    """The row's tokens, cutting the prompt's start (then the response's end) to fit."""
    if len(row) <= max_length:
        return [token for _, token in row], False
    segments: list[Segment] = [
        (sequence, [token for _, token in run])
        for sequence, run in itertools.groupby(row, key=lambda item: item[0])]
    excess = len(row) - max_length
    specials = sum(len(tokens) for sequence, tokens in segments if sequence is None)
    if specials >= max_length:
        raise UserError(f"max_length {max_length} leaves no room for text after the "
                        f"tokenizer's {specials} special tokens; raise max_length")
    fitted = []
    for sequence, tokens in segments:
        if sequence == 0 and excess > 0:
            cut = min(excess, len(tokens))
            tokens, excess = tokens[cut:], excess - cut
        fitted.append((sequence, tokens))
    for position in reversed(range(len(fitted))):
        sequence, tokens = fitted[position]
        if sequence == 1 and excess > 0:
            cut = min(excess, len(tokens))
            fitted[position], excess = (sequence, tokens[:len(tokens) - cut]), excess - cut
    return [token for _, tokens in fitted for token in tokens], True
