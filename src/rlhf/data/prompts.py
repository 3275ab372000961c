"""Prompt sets for PPO: load prompt rows, render them with a template, fit them to a token budget.

Three templates:

- `dolly`: instruction plus optional context, in the classic dolly/alpaca layout (`render_dolly`);
  also reads argilla's curated layout, where each field is `{"value": [str], "status": [...]}`.
- `prompt`: a plain `prompt` column used verbatim.
- `chat`: a `messages` list of {role, content} (or a `prompt` string or list) rendered with the
  policy tokenizer's chat template and a generation prompt.

Over-long prompts are shortened so that the part the policy must continue survives: dolly prompts
lose the end of their context, then the end of their instruction, never the headers or the
'### Response:' marker; plain and chat prompts lose their start.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from rlhf.data.batching import pad_sequences
from rlhf.data.sources import load_rows, row_location
from rlhf.errors import UserError

TEMPLATES = ("dolly", "prompt", "chat")
CANONICAL_COLUMNS = ("instruction", "context", "prompt", "messages")

# Where each canonical field is looked for when `columns` does not name it, in order. The
# argilla curated dolly layout keeps the curator's edit in `new-*` and the source in `original-*`.
DEFAULT_COLUMNS = {
    "instruction": ("instruction", "new-instruction", "original-instruction"),
    "context": ("context", "new-context", "original-context"),
    "prompt": ("prompt",),
    "messages": ("messages",),
}


@dataclass
class PromptSet:
    """Prompts for the policy, one entry per kept row, in the source's order."""

    prompts: list[str]
    """Rendered prompt text the policy continues (after `load_prompts`: the shortened text whose
    tokens are returned alongside)."""
    raw: list[dict]
    """Normalised source fields per prompt: {"instruction", "context"} for dolly, {"prompt"} for
    plain prompts, {"messages", "prompt"} for chat (prompt = the last user message)."""
    counts: dict[str, int] = field(default_factory=dict)
    """rows (read), dropped_empty (no instruction/prompt text), sampled_out (beyond
    max_samples), kept (= len), shortened (to fit max_prompt_tokens; set by `load_prompts`)."""

    def __len__(self) -> int:
        return len(self.prompts)


_INSTRUCTION, _CONTEXT, _RESPONSE = "### Instruction:\n", "### Context:\n", "### Response:\n"


# -- rendering -------------------------------------------------------------------------------


def render_dolly(instruction: str, context: str, *, context_chars: int) -> str:
    """The seed's dolly prompt. With a context:

        "### Instruction:\\n{instruction}\\n\\n### Context:\\n{context}\\n\\n### Response:\\n"

    and without one (empty or whitespace-only after the cut) the Context block is left out:

        "### Instruction:\\n{instruction}\\n\\n### Response:\\n"

    The context is cut to its first `context_chars` characters first, as the seed did. Field
    text is used verbatim (no stripping), so the prompt ends with exactly one newline after the
    marker and the policy starts its answer on a fresh line.
    """
    context = context[:context_chars]
    text = f"{_INSTRUCTION}{instruction}\n\n"
    if context.strip():
        text += f"{_CONTEXT}{context}\n\n"
    return text + _RESPONSE


def _dolly_context_start(instruction: str) -> int:
    """Where the context starts in `render_dolly`'s text (when it has a context)."""
    return len(_INSTRUCTION) + len(instruction) + len("\n\n") + len(_CONTEXT)


def render_chat(tokenizer, messages: list[dict]) -> str:
    """The tokenizer's chat template over `messages`, ending with the assistant's cue."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", None) or "the policy tokenizer"
        raise UserError(f"data.template=chat needs a tokenizer with a chat template, and {name} "
                        "has none; use data.template=dolly or prompt, or a policy whose "
                        "tokenizer_config.json sets chat_template")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _render(template: str, fields: dict, *, tokenizer, context_chars: int) -> str:
    if template == "dolly":
        return render_dolly(fields["instruction"], fields.get("context") or "",
                            context_chars=context_chars)
    if template == "prompt":
        return fields["prompt"]
    return render_chat(tokenizer, fields["messages"])


# -- normalising rows ------------------------------------------------------------------------


def normalise_prompt_rows(rows: list[dict], *, source: str, template: str,
                          columns: dict[str, str] | None, tokenizer=None,
                          context_chars: int = 500) -> PromptSet:
    """Turn loaded rows into a PromptSet: pick the template's fields, check they are text,
    drop rows with no instruction/prompt text (counted), and render each prompt.

    `columns` maps canonical names (instruction, context, prompt, messages) to the file's
    column names; `source` names the data in error messages, with the row's 1-based number (or
    its line, for JSON lines read by `load_rows`).
    """
    _check_template(template)
    columns = _check_columns(columns or {})
    found = list(rows[0]) if rows else []
    if template == "dolly":
        wanted = {"instruction": _resolve(found, "instruction", columns, source, template),
                  "context": _optional(found, "context", columns)}
    elif template == "prompt":
        wanted = {"prompt": _resolve(found, "prompt", columns, source, template)}
    else:
        wanted = {"messages": _resolve_chat(found, columns, source)}
    kept, dropped = [], 0
    for index, row in enumerate(rows):
        fields = _read_fields(row, wanted, template, f"{source}: {row_location(rows, index)}")
        if fields is None:
            dropped += 1
            continue
        kept.append(fields)
    prompts = [_render(template, fields, tokenizer=tokenizer, context_chars=context_chars)
               for fields in kept]
    counts = {"rows": len(rows), "dropped_empty": dropped, "kept": len(kept), "sampled_out": 0,
              "shortened": 0}
    return PromptSet(prompts=prompts, raw=kept, counts=counts)


def _check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise UserError(f"data.template='{template}' is not one of {', '.join(TEMPLATES)}")


def _check_columns(columns: dict[str, str]) -> dict[str, str]:
    for name in columns:
        if name not in CANONICAL_COLUMNS:
            raise UserError(f"data.columns.{name} is not a known field; use one of "
                            f"{', '.join(CANONICAL_COLUMNS)}")
    return dict(columns)


def _resolve(found: list[str], name: str, columns: dict[str, str], source: str,
             template: str) -> tuple[str, ...]:
    """The columns to read `name` from, in order of preference; UserError when none exist."""
    candidates = _optional(found, name, columns)
    if candidates:
        return candidates
    wanted = columns.get(name) or DEFAULT_COLUMNS[name][0]
    hint = ""
    if template == "dolly" and "prompt" in found:
        hint = ", or data.template=prompt"
    raise UserError(f"{source}: no column '{wanted}' for the {template} template's {name}; "
                    f"columns found: {', '.join(found) or '(none)'}; set "
                    f"data.columns.{name}=<column>{hint}")


def _optional(found: list[str], name: str, columns: dict[str, str]) -> tuple[str, ...]:
    if name in columns:
        return (columns[name],) if columns[name] in found else ()
    return tuple(column for column in DEFAULT_COLUMNS[name] if column in found)


def _resolve_chat(found: list[str], columns: dict[str, str], source: str) -> tuple[str, ...]:
    """Chat prompts come from `messages` or, failing that, `prompt` (a string or a list)."""
    if "messages" in columns or "prompt" not in columns and _optional(found, "messages", columns):
        return _resolve(found, "messages", columns, source, "chat")
    if "prompt" in columns or _optional(found, "prompt", columns):
        return _resolve(found, "prompt", columns, source, "chat")
    return _resolve(found, "messages", columns, source, "chat")


def _read_fields(row: dict, wanted: dict[str, tuple[str, ...]], template: str,
                 where: str) -> dict | None:
    """One row's normalised fields, or None when its instruction/prompt is empty."""
    if template == "chat":
        messages = _messages(_cell(row, wanted["messages"]), where, wanted["messages"])
        if not any(message["content"].strip() for message in messages):
            return None
        users = [m["content"] for m in messages if m["role"] == "user"]
        return {"messages": messages, "prompt": users[-1] if users else messages[-1]["content"]}
    fields = {name: _text(_cell(row, candidates), where, candidates)
              for name, candidates in wanted.items()}
    main = "instruction" if template == "dolly" else "prompt"
    return fields if fields[main].strip() else None


def _cell(row: dict, candidates: tuple[str, ...]) -> object:
    """The first present value among the candidate columns, unwrapping argilla's
    {"value": [...]} records (value[0]); None when every candidate is missing."""
    for column in candidates:
        value = row.get(column)
        if isinstance(value, dict) and "value" in value:
            values = value["value"]
            value = values[0] if isinstance(values, list) and values else None
        if not _missing(value):
            return value
    return None


def _missing(value: object) -> bool:
    # pandas-backed readers (datasets' CSV loader) turn empty cells into None or NaN.
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: object, where: str, candidates: tuple[str, ...]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{where}: column '{'/'.join(candidates)}' holds "
                        f"{type(value).__name__} {str(value)[:60]!r}, not text; fix the row or "
                        "point data.columns at a text column")
    return value


def _messages(value: object, where: str, candidates: tuple[str, ...]) -> list:
    """A chat prompt as a list of {role, content}; a trailing assistant turn is dropped, since
    it is the dataset's answer and the policy must write its own."""
    if value is None or isinstance(value, str):
        return [{"role": "user", "content": value or ""}]
    ok = isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value)
    if not ok:
        raise UserError(f"{where}: column '{'/'.join(candidates)}' must be text "
                        "or a list of {role, content} messages with text values; fix the row "
                        "or set data.columns.messages=<column>")
    messages = [{"role": m["role"], "content": m["content"]} for m in value]
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return messages


# -- fitting to a token budget ---------------------------------------------------------------


def fit_prompt(tokenizer, *, template: str, fields: dict, max_tokens: int,
               context_chars: int) -> tuple[list[int], bool]:
    """Token ids of the rendered prompt, at most `max_tokens` long, and whether it was shortened.

    Ids come from the tokenizer's normal call (so a tokenizer that adds BOS adds it here too),
    except for chat prompts, whose template already writes the special tokens. Unshortened
    prompts are exactly the tokenisation of the rendered text. `fields` are a PromptSet.raw row.
    """
    _check_template(template)
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
        text = _render(template, _chat_fields(template, fields), tokenizer=tokenizer,
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
    seed's left-to-right cut lost the marker on a third of dolly prompts."""
    context = context[:context_chars]
    if context.strip():
        tokens = _FieldTokens.inside(context, _dolly_context_start(instruction), spans, tokenizer)
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


# -- loading ---------------------------------------------------------------------------------


def load_prompts(path: str, *, name: str | None = None, split: str = "train",
                 template: str = "dolly", columns: dict[str, str] | None = None, tokenizer,
                 max_prompt_tokens: int, context_chars: int = 500, max_samples: int | None = None,
                 seed: int = 0) -> tuple[PromptSet, list[list[int]]]:
    """Load, normalise and fit a prompt set; returns it with each prompt's token ids.

    `path` is anything `load_rows` reads, or a folder of CSV shards (read here, see
    `_csv_shards`). `max_samples` keeps a seeded random subset, in source order. After
    fitting, each `PromptSet.prompts` entry is the (possibly shortened) text whose ids are
    returned, and counts["shortened"] says how many were shortened.
    """
    _check_template(template)
    options = {"template": template, "columns": columns, "tokenizer": tokenizer,
               "context_chars": context_chars}
    source, shards = path, _csv_shards(path)
    if shards:
        if split != "train":
            raise UserError(f"{path}: a folder of CSV files is one split, 'train'; set "
                            "data.split=train")
        prompt_set = _merge([normalise_prompt_rows(load_rows(shard, test_split=None)[0],
                                                   source=shard, **options) for shard in shards])
    else:
        rows, _, source = load_rows(path, name=name, split=split, test_split=None)
        prompt_set = normalise_prompt_rows(rows, source=source, **options)
    if not len(prompt_set):
        field_name = "instruction" if template == "dolly" else "prompt"
        raise UserError(f"{source}: no prompts: all {prompt_set.counts['rows']} rows have an "
                        f"empty {field_name}; check data.path, data.split and data.columns")
    if max_samples is not None and max_samples < len(prompt_set):
        _subsample(prompt_set, max_samples, seed)
    prompt_ids = _fit_all(prompt_set, tokenizer, template, max_prompt_tokens, context_chars)
    return prompt_set, prompt_ids


def _csv_shards(path: str) -> list[str] | None:
    """The files of a plain folder of CSV shards (like dolly-15k-prompts-oneill/), in natural
    order (output1to1000 before output1001to2000); None for any other path.

    Read file by file through `load_rows`, cells stay the exact strings in the files (the
    folder route goes through pandas, which reads 'n/a' as missing) and errors name the shard.
    Folders with subfolders, other data files or split-named files (train.csv, test.csv) are
    left to `load_rows`, whose `datasets.load_dataset` maps file names to splits.
    """
    folder = os.path.expanduser(path)
    if not os.path.isdir(folder):
        return None
    entries = [entry for entry in os.scandir(folder) if not entry.name.startswith(".")]
    data = [entry for entry in entries if entry.is_dir() or
            entry.name.lower().endswith((".csv", ".json", ".jsonl", ".gz", ".parquet", ".arrow",
                                         ".tsv", ".txt"))]
    if not data or any(entry.is_dir() or not entry.name.lower().endswith(".csv")
                       for entry in data):
        return None
    if any(re.search(r"train|test|valid|dev|eval", entry.name.lower()) for entry in data):
        return None
    natural = lambda name: [int(part) if part.isdigit() else part  # noqa: E731
                            for part in re.split(r"(\d+)", name)]
    return [os.path.join(folder, name) for name in sorted((e.name for e in data), key=natural)]


def _merge(sets: list[PromptSet]) -> PromptSet:
    merged = PromptSet(prompts=[], raw=[], counts=dict.fromkeys(sets[0].counts, 0))
    for part in sets:
        merged.prompts += part.prompts
        merged.raw += part.raw
        for key, value in part.counts.items():
            merged.counts[key] += value
    return merged


def _fit_all(prompt_set: PromptSet, tokenizer, template: str, max_tokens: int,
             context_chars: int) -> list[list[int]]:
    """Fit every prompt: one batched encode, then per-row work only for the long ones."""
    all_ids, all_spans = _encode(tokenizer, template, prompt_set.prompts)
    for index, ids in enumerate(all_ids):
        if len(ids) <= max_tokens:
            continue
        all_ids[index], prompt_set.prompts[index], _ = _fit(
            tokenizer, template, prompt_set.raw[index], max_tokens=max_tokens,
            context_chars=context_chars, text=prompt_set.prompts[index], ids=ids,
            spans=all_spans[index] if all_spans else None)
        prompt_set.counts["shortened"] += 1
    return all_ids


def _subsample(prompt_set: PromptSet, max_samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed % 2**64)
    keep = sorted(rng.choice(len(prompt_set), size=max_samples, replace=False).tolist())
    prompt_set.prompts = [prompt_set.prompts[i] for i in keep]
    prompt_set.raw = [prompt_set.raw[i] for i in keep]
    prompt_set.counts["sampled_out"] = prompt_set.counts["kept"] - max_samples
    prompt_set.counts["kept"] = max_samples


# -- batching --------------------------------------------------------------------------------


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), both (B, T): real tokens flush right, so every row's next token is
    generated at the same position; mask True on real tokens."""
    return pad_sequences(sequences, pad_id, side="left")


def prompt_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Epoch `epoch`'s shuffled prompt indices cut into full batches (the remainder is dropped).

    The permutation depends only on (seed, epoch), through its own generator, never on the
    global RNG, so a resumed run sees the same batches as an uninterrupted one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed % 2**64, epoch % 2**64]).permutation(n).tolist()
    return [order[start:start + batch_size] for start in range(0, n - batch_size + 1, batch_size)]
