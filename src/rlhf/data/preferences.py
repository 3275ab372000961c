"""Preference data for reward modelling: every layout normalised to one `PreferenceData`.

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

`split_shared_prompt` and `render_conversation` serve SFT data too. How a reward model reads
each (prompt, response) is `rlhf.data.reward_text`; the train/test split is `rlhf.data.splits`.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field

from rlhf.data.fields import (
    COLUMN_OPTION,
    missing_columns_error,
    require_messages,
    require_string,
    require_value,
)
from rlhf.data.sources import load_rows, row_location
from rlhf.data.splits import train_and_test
from rlhf.errors import UserError

ASSISTANT_MARKER = "\n\nAssistant:"
CANONICAL_COLUMNS = ("prompt", "chosen", "rejected", "margin", "query", "best")


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


def normalize_rows(rows: list[dict], *, source: str, columns: dict[str, str] | None = None,
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


def _pair_columns(first: dict, source: str, columns: dict[str, str],
                  column_option: str) -> dict[str, str | None]:
    """Canonical name -> the data's column; optional columns absent from the data map to None."""
    names: dict[str, str | None] = {key: columns.get(key, key) for key in ("chosen", "rejected")}
    missing = [key for key, column in names.items() if column not in first]
    missing += [key for key in ("prompt", "margin") if key in columns and columns[key] not in first]
    if missing:
        raise missing_columns_error(source, first, missing, columns, column_option)
    for key in ("prompt", "margin"):
        column = columns.get(key, key)
        names[key] = column if column in first else None
    return names


def _pair_data(rows: list[dict], source: str, columns: dict[str, str], tokenizer,
               column_option: str) -> PreferenceData:
    names = _pair_columns(rows[0], source, columns, column_option)
    prompts, responses, margins, dropped, empty = [], [], [], 0, 0
    for index, row in enumerate(rows):
        where = f"{source}: {row_location(rows, index)}"
        chosen = require_value(row, names["chosen"], rows, index, source)
        rejected = require_value(row, names["rejected"], rows, index, source)
        prompt = None if names["prompt"] is None else require_value(row, names["prompt"], rows,
                                                                    index, source)
        prompt, chosen, rejected, n_empty = _pair_texts(prompt, chosen, rejected, names, where,
                                                        tokenizer)
        if chosen == rejected:
            dropped += 1
            continue
        empty += n_empty
        prompts.append(prompt)
        responses.append([chosen, rejected])
        if names["margin"] is not None:
            margins.append(_margin(require_value(row, names["margin"], rows, index, source),
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
        require_string(value, column, where)
    if names["prompt"] is None:  # no prompt column: split the shared start
        prompt, chosen, rejected = split_shared_prompt(chosen, rejected)
    else:
        require_string(prompt, names["prompt"], where)
    return prompt, chosen, rejected, _blank(chosen) + _blank(rejected)


def _blank(text: str) -> bool:
    return not text.strip()


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
    chosen = require_messages(chosen, names["chosen"], where)
    rejected = require_messages(rejected, names["rejected"], where)
    shared = 0  # leading messages both share, leaving each at least one response message
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    prompt_messages = chosen[:shared]
    if names["prompt"] is not None:
        given = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                 else require_messages(prompt, names["prompt"], where))
        # HuggingFaceH4/ultrafeedback_binarized repeats its prompt as the user turn that opens
        # chosen and rejected: the shared start is then the prompt, not part of the responses.
        if not (shared and prompt_messages[-len(given):] == given):
            shared, prompt_messages = 0, given
    chosen, rejected = chosen[shared:], rejected[shared:]
    prompt_text, chosen_text = render_conversation(prompt_messages, chosen, tokenizer, where)
    _, rejected_text = render_conversation(prompt_messages, rejected, tokenizer, where)
    n_empty = sum(all(_blank(m["content"]) for m in messages) for messages in (chosen, rejected))
    return prompt_text, chosen_text, rejected_text, n_empty


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
        raise missing_columns_error(source, first, ["query"], columns, column_option)
    samples = [f"sample{i}" for i in itertools.takewhile(lambda i: f"sample{i}" in first,
                                                         itertools.count())]
    if len(samples) < 2:
        raise UserError(f"{source}: listwise rows need at least sample0 and sample1 "
                        f"(columns found: {', '.join(repr(k) for k in first)})")
    prompts, responses, best, dropped, empty = [], [], [], 0, 0
    for index, row in enumerate(rows):
        where = f"{source}: {row_location(rows, index)}"
        values = [require_value(row, column, rows, index, source)
                  for column in (prompt_column, *samples)]
        for column, value in zip((prompt_column, *samples), values, strict=True):
            require_string(value, column, where)
        if len(set(values[1:])) == 1:
            dropped += 1
            continue
        empty += sum(_blank(value) for value in values[1:])
        prompts.append(values[0])
        responses.append(values[1:])
        best.append(_best(require_value(row, best_column, rows, index, source), len(samples),
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
    train = normalize_rows(train_rows, source=description, columns=columns, tokenizer=tokenizer)
    if not train:
        raise UserError(f"{description}: no usable preference examples in split '{split}' "
                        f"({train.counts.get('rows', 0)} rows, "
                        f"{train.counts.get('dropped_identical', 0)} with identical responses)")
    test = None if test_rows is None else normalize_rows(test_rows, source=description,
                                                         columns=columns, tokenizer=tokenizer)
    return train_and_test(train, test, test_fraction=test_fraction, seed=seed,
                          max_samples=max_samples, subset=subset, dropped="dropped_identical")
