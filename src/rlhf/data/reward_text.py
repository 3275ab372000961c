"""How a reward model reads a (prompt, response): its template, its tokens, its length limit.

The same encoding serves training (`tokenize_preferences`, every response of every example)
and scoring (`encode_model_inputs`, one row per text to score), so a reward model scores text
exactly as it was trained on it:

- template "pair": the tokenizer's sentence-pair encoding `tokenizer(prompt, response)`
  (RoBERTa: `<s>prompt</s></s>response</s>`; BERT: `[CLS]prompt[SEP]response[SEP]` with token
  type ids 0...0 1...1);
- template "concat": `tokenizer(prompt + separator + response)` (a decoder reads one string);
- `append_eos`: end each input with EOS, TRL RewardTrainer's convention (`_end_with_eos`).

Inputs longer than `max_length` lose the start of the prompt, so the response the score is
about stays whole; special tokens and the appended EOS are never cut; no row is dropped.
Every per-token input the tokenizer returns (BERT's `token_type_ids`) is cut with the ids.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rlhf.data.preferences import PreferenceData
from rlhf.errors import UserError


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
