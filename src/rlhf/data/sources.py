"""Read rows (dicts) from wherever a data set lives: local files, folders, the hub, built-ins.

`load_rows(path)` accepts, in this order of precedence:

- `builtin:<name>`: data made by the package itself, from `rlhf.data.synthetic` (train: 2,000
  rows, seed 0; test: 400 rows, seed 1). `builtin:descriptiveness` is the synthetic preference
  task; `builtin:arithmetic` holds one-digit sums and differences as prompts ("Q: 3 + 4 = ?
  A:", with an `answer` column) for rule-checked rewards.
- a local file: `.json` (a list of objects, one object per line, or an object whose values are
  lists of objects, read as named splits), `.jsonl`, `.jsonl.gz`, `.json.gz`, `.csv`,
  `.parquet`. JSON is parsed here with the standard library so that a malformed line or bytes
  that are not UTF-8 are reported as `file:line`; CSV and Parquet go through `datasets`.
  A single file is one split called `train`.
- a folder written by `datasets.save_to_disk` (a Dataset, read as split `train`, or a
  DatasetDict).
- any other local folder: `datasets.load_dataset(folder)`, which finds split files by name
  (`train.jsonl`, `test.jsonl`, `data/train-*.parquet`, ...).
- otherwise a hub dataset name: `datasets.load_dataset(path, name)` (needs hub access).

Every failure a user can cause raises `UserError` with one message that names the path. A text
field longer than `MAX_TEXT_CHARS` is refused with the row that holds it.

`datasets` (with pyarrow and pandas, seconds to import) is imported inside the functions that
read CSV, Parquet, folders and the hub, so that JSON lines and built-in data never pay for it.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
from collections.abc import Iterable
from typing import Any

from rlhf.data.synthetic import arithmetic_problems, descriptiveness_pairs
from rlhf.errors import UserError, first_line

BUILTIN_PREFIX = "builtin:"
BUILTIN_SPLIT_SIZES = {"train": (2000, 0), "test": (400, 1)}  # split: (rows, seed)
BUILTIN_DATA_SETS = {"descriptiveness": descriptiveness_pairs, "arithmetic": arithmetic_problems}
JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
DATASETS_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}
DATA_SUFFIXES = JSON_SUFFIXES + tuple(DATASETS_SUFFIXES) + (".gz", ".tsv", ".txt", ".arrow")
DEFAULT_TEST_SPLIT = "test"
# Longest text one field may hold. Real prompts and responses are far shorter (a long HH-RLHF
# dialogue is about 10,000 characters); millions of characters in one cell is a broken export
# (a whole file pasted into a field), which would otherwise be tokenised in full before being
# truncated, stalling the run for minutes on one row.
MAX_TEXT_CHARS = 1_000_000


class Rows(list):
    """A list of row dicts that remembers where each row came from, for error messages.

    JSON-lines rows are named by their 1-based line in the file (blank lines are skipped, so the
    n-th row is not always on line n); other rows by their 1-based position in the split.
    """

    def __init__(self, rows: Iterable[dict], *, split: str | None = None,
                 line_numbers: list[int] | None = None):
        super().__init__(rows)
        self.split = split
        self.line_numbers = line_numbers

    def where(self, index: int) -> str:
        """'line 7', 'row 7' or "split 'test' row 7" for the row at 0-based `index`."""
        if self.line_numbers is not None:
            return f"line {self.line_numbers[index]}"
        return f"split '{self.split}' row {index + 1}" if self.split else f"row {index + 1}"


def row_location(rows: list[dict], index: int) -> str:
    """Where the row at 0-based `index` came from, for plain lists and `Rows` alike."""
    return rows.where(index) if isinstance(rows, Rows) else f"row {index + 1}"


def load_rows(path: str, *, name: str | None = None, split: str = "train",
              test_split: str | None = DEFAULT_TEST_SPLIT, split_option: str = "data.split",
              test_split_option: str = "data.test_split",
              ) -> tuple[list[dict], list[dict] | None, str]:
    """(train rows, test rows or None, a description of the source for messages).

    `split` must exist; the test rows are the source's own `test_split` when it has one (and
    it differs from `split`), else None, and the caller holds out a fraction instead. Only the
    default test split may be absent: any other name is the user's choice, and a typo in it
    must not quietly turn into a held-out fraction. `split_option` and `test_split_option`
    name the setting to change in messages (a config key or a command-line flag).
    """
    splits, description = _read_splits(path, name)
    found = ", ".join(f"'{s}'" for s in splits) or "none"
    if split not in splits:
        raise UserError(f"{description}: split '{split}' not found (splits found: {found}); "
                        f"set {split_option} to one of them")
    train = _checked_rows(_as_rows(splits[split], split, len(splits) > 1), description)
    if test_split is None or test_split == split:
        return train, None, description
    if test_split not in splits:
        if test_split != DEFAULT_TEST_SPLIT:
            raise UserError(f"{description}: test split '{test_split}' not found (splits "
                            f"found: {found}); set {test_split_option} to one of them, or to "
                            f"'{split}' to hold out a fraction of the training rows instead")
        return train, None, description
    test = _checked_rows(_as_rows(splits[test_split], test_split, True), description)
    return train, test, description


def _checked_rows(rows: list[dict], source: str) -> list[dict]:
    """The rows, once no field holds more than MAX_TEXT_CHARS characters of text."""
    for index, row in enumerate(rows):
        for key, value in row.items():
            size = _text_size(value)
            if size > MAX_TEXT_CHARS:
                raise UserError(f"{source}: {row_location(rows, index)}: field '{key}' holds "
                                f"{size:,} characters, over the limit of {MAX_TEXT_CHARS:,} per "
                                "field; shorten that text or remove the row")
    return rows


def _text_size(value: Any) -> int:
    """Characters of text in a field: a string, or a list of messages/strings (chat data).

    Lists of anything else (token ids, scores) hold no text and are not walked.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(item) for item in value.values())
    if isinstance(value, list) and value and isinstance(value[0], str | dict | list):
        return sum(_text_size(item) for item in value)
    return 0


def _as_rows(split_data: Any, split: str, name_split: bool) -> list[dict]:
    """Materialise one split (a list or a `datasets.Dataset`) as `Rows`."""
    if isinstance(split_data, Rows):
        return split_data
    return Rows(split_data if isinstance(split_data, list) else split_data.to_list(),
                split=split if name_split else None)


def _read_splits(path: str, name: str | None) -> tuple[dict[str, Any], str]:
    """{split name: rows or Dataset} and a description of the source."""
    if path.startswith(BUILTIN_PREFIX):
        return _builtin_splits(path), path
    expanded = os.path.expanduser(path)
    if os.path.isfile(expanded):
        return _file_splits(expanded, path), path
    if os.path.isdir(expanded):
        return _folder_splits(expanded, path), path
    if _looks_like_local_path(path):
        raise UserError(f"{path}: file not found; check the path (relative paths are read from "
                        f"{os.getcwd()})")
    return _hub_splits(path, name), f"hub dataset '{path}'" + (f" ({name})" if name else "")


def _looks_like_local_path(path: str) -> bool:
    """Hub names are 'name' or 'owner/name'; anything else path-shaped is a missing file."""
    return (path.startswith((".", "/", "~")) or "\\" in path or path.count("/") > 1
            or path.lower().endswith(DATA_SUFFIXES))


def _builtin_splits(path: str) -> dict[str, Any]:
    """Every built-in set has the same splits (BUILTIN_SPLIT_SIZES), each made from its seed."""
    make = BUILTIN_DATA_SETS.get(path[len(BUILTIN_PREFIX):])
    if make is None:
        names = " or ".join(BUILTIN_PREFIX + name for name in BUILTIN_DATA_SETS)
        raise UserError(f"unknown built-in data set '{path}'; use {names}")
    return {split: make(rows, seed=seed) for split, (rows, seed) in BUILTIN_SPLIT_SIZES.items()}


def _file_splits(path: str, shown: str) -> dict[str, Any]:
    lower = path.lower()
    if os.path.getsize(path) == 0:
        raise UserError(f"{shown}: the file is empty; it needs at least one row")
    if lower.endswith(JSON_SUFFIXES):
        return _json_splits(path, shown)
    for suffix, builder in DATASETS_SUFFIXES.items():
        if lower.endswith(suffix):
            return {"train": _read_with_datasets(path, shown, builder)}
    raise UserError(f"{shown}: unsupported file type; use .json, .jsonl, .jsonl.gz, .json.gz, "
                    ".csv or .parquet (or a folder or a hub dataset name)")


def _decoded_text(path: str, shown: str) -> str:
    """The file's text (gunzipped if .gz); bytes that are not UTF-8 are reported by line."""
    try:
        if path.lower().endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            with open(path, "rb") as handle:
                raw = handle.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{shown}: could not be read ({error}); is it really "
                        f"{'gzip-compressed' if path.endswith('.gz') else 'a data file'}?"
                        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise UserError(f"{shown}:{line}: bytes that are not UTF-8 ({error.reason} at byte "
                        f"{error.start}); save the file as UTF-8") from None


def _json_splits(path: str, shown: str) -> dict[str, Any]:
    """A list of objects, an object of named lists (splits), or JSON lines."""
    text = _decoded_text(path, shown)
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{shown}: the file is empty; it needs at least one row")
    if stripped.startswith("["):
        return {"train": _object_list(_parse_whole(text, shown), shown, split=None)}
    if stripped.startswith("{") and "\n" in stripped.rstrip():
        # A pretty-printed object (splits or a single row) spans lines; JSON lines do not.
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None  # not one document: read it as JSON lines for a file:line error
        if isinstance(document, dict):
            return _splits_or_single_row(document, shown)
    return {"train": _json_lines(text, shown)}


def _parse_whole(text: str, shown: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{shown}:{error.lineno}: malformed JSON ({error.msg}, column "
                        f"{error.colno}); fix the file") from None


def _splits_or_single_row(document: dict, shown: str) -> dict[str, Any]:
    if document and all(isinstance(value, list) for value in document.values()):
        return {split: _object_list(rows, shown, split=split) for split, rows in document.items()}
    return {"train": Rows([document])}


def _object_list(rows: list, shown: str, *, split: str | None) -> Rows:
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            where = f"split '{split}' " if split else ""
            raise UserError(f"{shown}: {where}row {index + 1} is a {type(row).__name__}, not an "
                            "object; each row must be a JSON object like "
                            '{"prompt": ..., "chosen": ..., "rejected": ...}')
    if not rows:
        raise UserError(f"{shown}: {'split ' + repr(split) if split else 'the list'} is empty; "
                        "it needs at least one row")
    return Rows(rows, split=split)


def _json_lines(text: str, shown: str) -> Rows:
    """One JSON object per line; blank lines are skipped; errors name the line."""
    rows, line_numbers = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{shown}:{number}: malformed JSON line ({error.msg}, column "
                            f"{error.colno}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise UserError(f"{shown}:{number}: the line is a {type(row).__name__}, not a JSON "
                            "object; each line must be one object like "
                            '{"prompt": ..., "chosen": ..., "rejected": ...}')
        rows.append(row)
        line_numbers.append(number)
    if not rows:
        raise UserError(f"{shown}: the file has no rows; it needs at least one JSON object")
    return Rows(rows, line_numbers=line_numbers)


def _read_with_datasets(path: str, shown: str, builder: str) -> Any:
    """A CSV or Parquet file as a `datasets.Dataset`.

    CSV cells are read as the exact strings in the file: pandas would otherwise turn "007"
    into 7 and "None" or "NA" into a missing value, silently changing responses.
    """
    import datasets  # heavy: only for the sources that need it (module docstring)

    options: dict[str, Any] = {}
    if builder == "csv":
        header = _csv_header(path, shown)
        options = {"converters": dict.fromkeys(header, str), "na_filter": False}
    label = {"csv": "CSV", "parquet": "Parquet"}[builder]
    try:
        with _quiet_datasets():
            return datasets.load_dataset(builder, data_files=path, split="train", **options)
    except Exception as error:  # pandas/pyarrow raise many types; the message is what helps
        raise UserError(f"{shown}: could not be read as {label} ({first_line(error, limit=300)}); check "
                        f"that it is a complete {label} file, e.g. export it again") from None


@contextlib.contextmanager
def _quiet_datasets():
    """Silence `datasets`' progress bars and log lines while it reads a local file or folder.

    Local data loads in moments, and when it fails we say why in one line; without this,
    datasets prints a "Generating train split" bar and logs the same failure first.
    """
    import datasets  # heavy: only for the sources that need it (module docstring)
    from datasets.utils import logging

    bars = datasets.is_progress_bar_enabled()
    verbosity = logging.get_verbosity()
    datasets.disable_progress_bars()
    logging.set_verbosity(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def _csv_header(path: str, shown: str) -> list[str]:
    """The column names, after checking the text is UTF-8 with a header and a data row."""
    records = csv.reader(io.StringIO(_decoded_text(path, shown), newline=""))
    header, first = next(records, None), next(records, None)
    if not header:
        raise UserError(f"{shown}: the file is empty; it needs a header row and data rows")
    if first is None:
        raise UserError(f"{shown}: the file has a header but no rows")
    return header


def _folder_splits(path: str, shown: str) -> dict[str, Any]:
    import datasets  # heavy: only for the sources that need it (module docstring)

    saved = any(os.path.isfile(os.path.join(path, marker))
                for marker in ("dataset_dict.json", "state.json"))
    try:
        with _quiet_datasets():
            loaded = datasets.load_from_disk(path) if saved else datasets.load_dataset(path)
    except Exception as error:  # the message names what is wrong with the folder
        raise UserError(f"{shown}: could not load the folder as a data set "
                        f"({first_line(error, limit=300)}); it should be a save_to_disk folder or hold "
                        "split files such as train.jsonl and test.jsonl") from None
    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    return dict(loaded)


def _hub_splits(path: str, name: str | None) -> dict[str, Any]:
    import datasets  # heavy: only for the sources that need it (module docstring)

    try:
        return dict(datasets.load_dataset(path, name))
    except Exception as error:  # offline, unknown name, gated, bad config: all end here
        raise UserError(f"'{path}' is not a local file or folder and could not be loaded from "
                        f"the Hugging Face hub ({first_line(error, limit=300)}); loading a hub dataset "
                        "needs hub access, otherwise pass a local path (.jsonl, .csv, .parquet, "
                        "a save_to_disk folder)") from None


