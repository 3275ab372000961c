"""Config loading: YAML + dotted overrides, unknown keys with suggestions, validation."""

from pathlib import Path

import pytest

from rlhf.config import PPOConfig, RewardConfig, load_config, to_yaml
from rlhf.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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


# YAML 1.1 (and OmegaConf's override parser) reads an unquoted yes/no/on/off/true/false as a
# boolean; a text field must get the word back, or an error saying to quote it.

PPO_REQUIRED = ["data.path=builtin:descriptiveness", "model.policy=builtin:tiny-gpt2",
                "model.reward=rlhf.reward.rules:vivid_word_fraction"]


@pytest.mark.parametrize("word", ["no", "No", "NO", "off", "false"])
def test_mixed_precision_no_from_the_command_line(minimal: Path, word: str) -> None:
    cfg = load_config(RewardConfig, minimal, [f"run.mixed_precision={word}"])
    assert cfg.run.mixed_precision == "no"
    ppo = load_config(PPOConfig, CONFIGS / "ppo/tiny.yaml", [f"run.mixed_precision={word}"])
    assert ppo.run.mixed_precision == "no"


def test_mixed_precision_no_from_a_nested_yaml_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  mixed_precision: no\ndata:\n  path: p\nmodel:\n  name_or_path: m\n")
    cfg = load_config(RewardConfig, path)
    assert cfg.run.mixed_precision == "no"
    # The resolved config quotes the word, so it reads back the same.
    out = tmp_path / "resolved.yaml"
    out.write_text(to_yaml(cfg))
    assert "mixed_precision: 'no'" in out.read_text()
    assert load_config(RewardConfig, out) == cfg


@pytest.mark.parametrize(("override", "key", "typed"), [
    ("run.mixed_precision=yes", "run.mixed_precision", "'yes'"),  # no boolean means a precision
    ("model.reward_template=off", "model.reward_template", "'off'"),  # str | None
    ("generate.stop_token=True", "generate.stop_token", "'True'"),  # str | None
    ("data.template=no", "data.template", "'no'"),
    ("data.columns.prompt=on", "data.columns.prompt", "'on'"),  # a mapping's value
    ("run.report_to=[on]", "run.report_to", "yes/on/true"),  # a list's item
])
def test_a_yaml_boolean_in_a_text_override_says_to_quote_it(override: str, key: str,
                                                             typed: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(PPOConfig, None, [*PPO_REQUIRED, override])
    message = str(caught.value)
    assert "\n" not in message
    assert f"config key '{key}' in the command-line overrides" in message
    assert f"YAML read {typed} as the boolean" in message
    assert "quote the value" in message


def test_a_yaml_boolean_in_a_text_field_of_a_file_says_to_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  path: p\n  name: yes\nmodel:\n  name_or_path: m\n")  # str | None
    with pytest.raises(UserError, match=r"config key 'data.name' in .*c.yaml: YAML read "
                                        r"yes/on/true as the boolean true.*quote the value, "
                                        r"e.g. name: 'yes'"):
        load_config(RewardConfig, path)


def test_quoted_words_and_real_booleans_are_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  resume: yes\n  progress: off\ndata:\n  path: p\n  name: 'no'\n"
                    "model:\n  name_or_path: m\n")
    cfg = load_config(RewardConfig, path, ["model.tokenizer='off'"])
    assert (cfg.run.resume, cfg.run.progress) == (True, False)
    assert (cfg.data.name, cfg.model.tokenizer) == ("no", "off")
