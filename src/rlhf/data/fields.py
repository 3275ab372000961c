"""Reading one cell of a data row, and the errors that name the row, column and remedy.

Two readers, because the layouts want different things from a missing value:

- preference and SFT rows are strict: every row must have the layout's columns
  (`require_value`), text cells must be strings (`require_string`; null is an error naming
  the row) and conversations must be lists of role/content messages (`require_messages`);
- prompt rows are lenient: a field is read from the first of its candidate columns that holds
  a value (`first_present`, which unwraps argilla's {"value": [...]} records), a missing cell
  is empty text (`text_or_empty`), and a chat prompt may be a string (`prompt_messages`).

The two keep their own messages: each names the setting a user of that stage changes.
"""

from __future__ import annotations

import math

from rlhf.data.sources import row_location
from rlhf.errors import UserError

COLUMN_OPTION = "data.columns."  # how a training config maps a column: data.columns.chosen=good


# -- strict cells: preference and SFT rows ---------------------------------------------------


def missing_columns_error(source: str, first: dict, missing: list[str],
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


def require_value(row: dict, column: str, rows: list[dict], index: int, source: str):
    """The row's value in `column`; a row without the column is an error naming it."""
    if column not in row:
        raise UserError(f"{source}: {row_location(rows, index)} has no '{column}' column "
                        f"(it has: {', '.join(repr(k) for k in row)}); every row needs it")
    return row[column]


def require_string(value, column: str, where: str) -> None:
    """A text cell must hold a string: null, a number or a list is an error naming the row."""
    if not isinstance(value, str):
        kind = type(value).__name__
        shown = ("missing (null)" if value is None
                 else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}")  # an int, a list
        raise UserError(f"{where}: column '{column}' is {shown}, not text; every value in it "
                        "must be a string (or, for chat data, a list of role/content messages)")


def require_messages(value, column: str, where: str) -> list[dict]:
    """A non-empty list of {"role", "content"} messages with string values, as plain dicts."""
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


# -- lenient cells: prompt rows --------------------------------------------------------------


def first_present(row: dict, candidates: tuple[str, ...]) -> object:
    """The first present value among the candidate columns, unwrapping argilla's
    {"value": [...]} records (value[0]); None when every candidate is missing."""
    for column in candidates:
        value = row.get(column)
        if isinstance(value, dict) and "value" in value:
            values = value["value"]
            value = values[0] if isinstance(values, list) and values else None
        if not is_missing(value):
            return value
    return None


def is_missing(value: object) -> bool:
    """True for an absent cell."""
    # pandas-backed readers (datasets' CSV loader) turn empty cells into None or NaN.
    return value is None or (isinstance(value, float) and math.isnan(value))


def text_or_empty(value: object, where: str, candidates: tuple[str, ...]) -> str:
    """A prompt field's text: "" for a missing cell, an error naming the row for non-text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UserError(f"{where}: column '{'/'.join(candidates)}' holds "
                        f"{type(value).__name__} {str(value)[:60]!r}, not text; fix the row or "
                        "point data.columns at a text column")
    return value


def prompt_messages(value: object, where: str, candidates: tuple[str, ...]) -> list:
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
