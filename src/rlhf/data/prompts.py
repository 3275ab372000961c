"""Prompt sets for PPO: load prompt rows and normalise them to a `PromptSet`.

Three templates (rendered by `rlhf.data.prompt_templates`) read these fields:

- `dolly`: instruction plus optional context, in the classic dolly/alpaca layout; also reads
  argilla's curated layout, where each field is `{"value": [str], "status": [...]}`.
- `prompt`: a plain `prompt` column used verbatim.
- `chat`: a `messages` list of {role, content} (or a `prompt` string or list) rendered with the
  policy tokenizer's chat template and a generation prompt.

`load_prompts` then fits each prompt to the token budget (`rlhf.data.prompt_fit`). Rows whose
instruction or prompt is empty are dropped and counted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from rlhf.data.fields import first_present, prompt_messages, text_or_empty
from rlhf.data.prompt_fit import fit_prompts
from rlhf.data.prompt_templates import check_template, render_prompt
from rlhf.data.sources import load_rows, row_location
from rlhf.errors import UserError

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


# -- normalising rows ------------------------------------------------------------------------


def normalize_prompt_rows(rows: list[dict], *, source: str, template: str,
                          columns: dict[str, str] | None, tokenizer=None,
                          context_chars: int = 500) -> PromptSet:
    """Turn loaded rows into a PromptSet: pick the template's fields, check they are text,
    drop rows with no instruction/prompt text (counted), and render each prompt.

    `columns` maps canonical names (instruction, context, prompt, messages) to the file's
    column names; `source` names the data in error messages, with the row's 1-based number (or
    its line, for JSON lines read by `load_rows`).
    """
    check_template(template)
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
    prompts = [render_prompt(template, fields, tokenizer=tokenizer, context_chars=context_chars)
               for fields in kept]
    counts = {"rows": len(rows), "dropped_empty": dropped, "kept": len(kept), "sampled_out": 0,
              "shortened": 0}
    return PromptSet(prompts=prompts, raw=kept, counts=counts)


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
        messages = prompt_messages(first_present(row, wanted["messages"]), where,
                                   wanted["messages"])
        if not any(message["content"].strip() for message in messages):
            return None
        users = [m["content"] for m in messages if m["role"] == "user"]
        return {"messages": messages, "prompt": users[-1] if users else messages[-1]["content"]}
    fields = {name: text_or_empty(first_present(row, candidates), where, candidates)
              for name, candidates in wanted.items()}
    main = "instruction" if template == "dolly" else "prompt"
    return fields if fields[main].strip() else None


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
    check_template(template)
    options = {"template": template, "columns": columns, "tokenizer": tokenizer,
               "context_chars": context_chars}
    source, shards = path, _csv_shards(path)
    if shards:
        if split != "train":
            raise UserError(f"{path}: a folder of CSV files is one split, 'train'; set "
                            "data.split=train")
        prompt_set = _merge([normalize_prompt_rows(load_rows(shard, test_split=None)[0],
                                                   source=shard, **options) for shard in shards])
    else:
        rows, _, source = load_rows(path, name=name, split=split, test_split=None)
        prompt_set = normalize_prompt_rows(rows, source=source, **options)
    if not len(prompt_set):
        field_name = "instruction" if template == "dolly" else "prompt"
        raise UserError(f"{source}: no prompts: all {prompt_set.counts['rows']} rows have an "
                        f"empty {field_name}; check data.path, data.split and data.columns")
    if max_samples is not None and max_samples < len(prompt_set):
        _subsample(prompt_set, max_samples, seed)
    prompt_ids, prompt_set.prompts, shortened = fit_prompts(
        tokenizer, template, prompt_set.prompts, prompt_set.raw, max_tokens=max_prompt_tokens,
        context_chars=context_chars)
    prompt_set.counts["shortened"] += shortened
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


def _subsample(prompt_set: PromptSet, max_samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed % 2**64)
    keep = sorted(rng.choice(len(prompt_set), size=max_samples, replace=False).tolist())
    prompt_set.prompts = [prompt_set.prompts[i] for i in keep]
    prompt_set.raw = [prompt_set.raw[i] for i in keep]
    prompt_set.counts["sampled_out"] = prompt_set.counts["kept"] - max_samples
    prompt_set.counts["kept"] = max_samples
