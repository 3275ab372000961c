"""load_rows: every kind of source, and one clear error for every bad input."""

import gzip
import json
from pathlib import Path

import datasets
import pytest

from rlhf.data.sources import Rows, load_rows, row_location
from rlhf.errors import UserError

ROWS = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(5)]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_json_list(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(ROWS, indent=2))
    train, test, description = load_rows(str(path))
    assert train == ROWS and test is None and description == str(path)
    assert row_location(train, 2) == "row 3"


def test_json_object_of_splits(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({"train": ROWS[:3], "test": ROWS[3:]}, indent=1))
    train, test, _ = load_rows(str(path))
    assert train == ROWS[:3] and test == ROWS[3:]
    assert row_location(test, 0) == "split 'test' row 1"


def test_json_lines_in_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(jsonl(ROWS))
    assert load_rows(str(path))[0] == ROWS


def test_jsonl_rows_are_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl(ROWS[:2]) + "\n   \n" + jsonl(ROWS[2:]))
    train, _, _ = load_rows(str(path))
    assert train == ROWS
    assert isinstance(train, Rows) and row_location(train, 2) == "line 5"


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".json.gz"])
def test_gzipped_json_lines(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pairs{suffix}"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(jsonl(ROWS))
    assert load_rows(str(path))[0] == ROWS


def test_csv_cells_are_kept_exactly(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text('prompt,chosen,rejected,margin\nhi,"a, b",007,1.50\n'
                    'NA,"two\nlines",None,2\n', encoding="utf-8")
    train, test, _ = load_rows(str(path))
    assert test is None
    assert train == [
        {"prompt": "hi", "chosen": "a, b", "rejected": "007", "margin": "1.50"},
        {"prompt": "NA", "chosen": "two\nlines", "rejected": "None", "margin": "2"}]


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "pairs.parquet"
    datasets.Dataset.from_list(ROWS).to_parquet(str(path))
    assert load_rows(str(path))[0] == ROWS


def test_save_to_disk_dataset(tmp_path: Path) -> None:
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    train, test, _ = load_rows(str(tmp_path / "saved"))
    assert train == ROWS and test is None


def test_save_to_disk_dataset_dict_with_test_split(tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:4]),
                          "test": datasets.Dataset.from_list(ROWS[4:])}).save_to_disk(str(folder))
    train, test, _ = load_rows(str(folder))
    assert train == ROWS[:4] and test == ROWS[4:]
    assert row_location(train, 0) == "split 'train' row 1"
    # Training on the test split leaves no separate test rows.
    train, test, _ = load_rows(str(folder), split="test")
    assert train == ROWS[4:] and test is None
    with pytest.raises(UserError, match=r"split 'validation' not found \(splits found: "
                                        r"'train', 'test'\)"):
        load_rows(str(folder), split="validation")


def test_folder_of_split_files(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(jsonl(ROWS[:3]))
    (tmp_path / "test.jsonl").write_text(jsonl(ROWS[3:]))
    train, test, _ = load_rows(str(tmp_path))
    assert train == ROWS[:3] and test == ROWS[3:]
    assert load_rows(str(tmp_path), test_split=None)[1] is None


def test_builtin_descriptiveness() -> None:
    train, test, description = load_rows("builtin:descriptiveness")
    assert (len(train), len(test), description) == (2000, 400, "builtin:descriptiveness")
    assert set(train[0]) == {"prompt", "chosen", "rejected"}
    assert train[:5] != test[:5]
    assert load_rows("builtin:descriptiveness")[0] == train


def test_missing_split_of_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl(ROWS))
    with pytest.raises(UserError, match=r"split 'dev' not found \(splits found: 'train'\)"):
        load_rows(str(path), split="dev")


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl(ROWS[:2]) + '{"prompt": "x", "chosen": \n' + jsonl(ROWS[2:]))
    with pytest.raises(UserError, match=rf"^{path}:3: malformed JSON line"):
        load_rows(str(path))


def test_malformed_json_list_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text('[\n{"prompt": "a"},\n{"prompt": "b",}\n]')
    with pytest.raises(UserError, match=rf"^{path}:3: malformed JSON"):
        load_rows(str(path))


def test_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl(ROWS[:1]) + "[1, 2]\n")
    with pytest.raises(UserError, match=rf"^{path}:2: the line is a list, not a JSON object"):
        load_rows(str(path))


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".csv"])
def test_non_utf8_bytes_name_file_and_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pairs{suffix}"
    data = b'{"prompt": "ok", "chosen": "a", "rejected": "b"}\n{"prompt": "caf\xe9"}\n'
    if suffix == ".csv":
        data = b"prompt,chosen,rejected\nok,a,b\ncaf\xe9,a,b\n"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    line = 3 if suffix == ".csv" else 2
    with pytest.raises(UserError, match=rf"^{path}:{line}: bytes that are not UTF-8"):
        load_rows(str(path))


@pytest.mark.parametrize("name,content", [
    ("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n"), ("empty.json", "[]"),
    ("empty.csv", ""), ("header.csv", "prompt,chosen,rejected\n"), ("empty.parquet", ""),
])
def test_empty_files(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=rf"^{path}: .*(empty|no rows)"):
        load_rows(str(path))


@pytest.mark.parametrize("path", ["missing.jsonl", "./data/x", "/no/such/file.csv",
                                  "data/sub/pairs"])
def test_missing_local_file(path: str) -> None:
    with pytest.raises(UserError, match=rf"^{path}: file not found"):
        load_rows(path)


def test_hub_name_offline_says_what_to_do() -> None:
    with pytest.raises(UserError, match="could not be loaded from the Hugging Face hub .* needs "
                                        "hub access, otherwise pass a local path"):
        load_rows("someone/not-a-local-thing")


def test_unknown_builtin_and_suffix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown built-in data set 'builtin:nope'"):
        load_rows("builtin:nope")
    path = tmp_path / "pairs.xlsx"
    path.write_text("x")
    with pytest.raises(UserError, match="unsupported file type"):
        load_rows(str(path))


def test_gz_that_is_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl.gz"
    path.write_text(jsonl(ROWS))
    with pytest.raises(UserError, match=rf"^{path}: could not be read .*gzip"):
        load_rows(str(path))


def test_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(UserError, match=rf"^{tmp_path}: could not load the folder"):
        load_rows(str(tmp_path))
