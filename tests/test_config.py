"""Config loading: YAML + dotted overrides, unknown keys with suggestions, validation."""

from pathlib import Path

import pytest

from rlhf.config import RewardConfig, load_config, to_yaml
from rlhf.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def minimal(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  path: pairs.jsonl\nmodel:\n  name_or_path: some/model\n")
    return path


def test_required_keys_exist_with_stable_names(minimal: Path) -> None:
    cfg = load_config(RewardConfig, minimal, [
        "run.output_dir=out", "run.seed=3", "data.path=x.jsonl", "model.name_or_path=m",
        "train.epochs=2", "train.batch_size=8", "train.learning_rate=1e-4"])
    assert (cfg.run.output_dir, cfg.run.seed, cfg.data.path) == ("out", 3, "x.jsonl")
    assert (cfg.model.name_or_path, cfg.train.epochs) == ("m", 2)
    assert (cfg.train.batch_size, cfg.train.learning_rate) == (8, 1e-4)


def test_overrides_reach_nested_mappings_and_lists(minimal: Path) -> None:
    cfg = load_config(RewardConfig, minimal, ["data.columns.chosen=good", "run.report_to=[wandb]"])
    assert cfg.data.columns == {"chosen": "good"}
    assert cfg.run.report_to == ["wandb"]


@pytest.mark.parametrize(("override", "expected"), [
    ("train.lerning_rate=1", "unknown config key 'train.lerning_rate'.*did you mean "
                             "'train.learning_rate'"),
    ("trian.epochs=1", "unknown config key 'trian'.*did you mean 'train'"),
    ("train.learning_rate=0", "train.learning_rate.*must be > 0"),
    ("train.learning_rate=-1e-5", "train.learning_rate.*must be > 0"),
    ("train.learning_rate=fast", "train.learning_rate.*could not be converted"),
    ("data.test_fraction=1.0", "data.test_fraction.*must be in \\(0, 1\\)"),
    ("data.test_fraction=0", "data.test_fraction"),
    ("data.template=chat", "data.template.*not one of pair, concat"),
    ("train.micro_batch_size=3", "train.batch_size.*16 is not a multiple of.*3"),
    ("run.report_to=[mlflow]", "run.report_to.*mlflow"),
    ("run.seed=1.5", "run.seed"),
    ("epochs", "not of the form key=value"),
])
def test_bad_values_name_the_key(minimal: Path, override: str, expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        load_config(RewardConfig, minimal, [override])


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  path: a\n  tempalte: pair\nmodel:\n  name_or_path: m\n")
    with pytest.raises(UserError, match=r"'data.tempalte' in .*bad.yaml.*'data.template'"):
        load_config(RewardConfig, path)


def test_missing_required_key_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'data.path' is required"):
        load_config(RewardConfig, None, ["model.name_or_path=m"])
    with pytest.raises(UserError, match="config file not found"):
        load_config(RewardConfig, tmp_path / "nope.yaml")


def test_batch_split_over_processes(minimal: Path) -> None:
    cfg = load_config(RewardConfig, minimal, ["train.batch_size=8", "train.micro_batch_size=2"])
    assert cfg.train.micro_batches_per_step(1) == (2, 4)
    assert cfg.train.micro_batches_per_step(2) == (2, 2)
    with pytest.raises(UserError, match="cannot be split evenly over 3 processes"):
        cfg.train.micro_batches_per_step(3)


def test_resolved_yaml_round_trips(minimal: Path, tmp_path: Path) -> None:
    cfg = load_config(RewardConfig, minimal, ["train.epochs=4"])
    out = tmp_path / "resolved.yaml"
    out.write_text(to_yaml(cfg))
    assert load_config(RewardConfig, out) == cfg


@pytest.mark.parametrize("name", ["reward/descriptiveness.yaml", "reward/tiny.yaml"])
def test_shipped_configs_load_and_validate(name: str) -> None:
    cfg = load_config(RewardConfig, CONFIGS / name)
    assert cfg.train.epochs >= 1


def test_seed_workload_matches_the_mission() -> None:
    cfg = load_config(RewardConfig, CONFIGS / "reward/descriptiveness.yaml")
    assert cfg.model.name_or_path == "distilroberta-base"
    assert cfg.data.path == "trl-lib/lm-human-preferences-descriptiveness"
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (3, 16, 5e-5)
    assert cfg.data.max_length == 512
