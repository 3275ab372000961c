"""`rlhf config STAGE`: every key with its default and description; train commands point at it
and run without --config when the overrides set every required key."""

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rlhf.cli import STAGE_COMMANDS, main
from rlhf.config import RewardConfig, load_config
from rlhf.config.docs import STAGES

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {
    "sft": ["data.path", "model.name_or_path"],
    "reward": ["data.path", "model.name_or_path"],
    "ppo": ["data.path", "model.policy", "model.reward"],
    "critic_free": ["data.path", "model.policy", "model.reward"],
    "dpo": ["data.path", "model.name_or_path"],
}
PPO_REQUIRED = ["data.path=builtin:descriptiveness", "model.policy=builtin:tiny-gpt2",
                "model.reward=rlhf.reward.rules:vivid_word_fraction"]


def leaves(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of the dataclass tree that holds a value (not a section)."""
    keys, hints = [], typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            keys += leaves(hint, f"{prefix}{field.name}.")
        else:
            keys.append(prefix + field.name)
    return keys


def keys_with_comments(text: str) -> dict[str, str]:
    """Dotted key -> the comment lines right above it, read from the printed YAML."""
    found, path, comment = {}, [], []
    for line in text.splitlines():
        stripped = line.lstrip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
            continue
        depth = (len(line) - len(stripped)) // 2
        path = [*path[:depth], stripped.split(":", 1)[0]]
        found[".".join(path)] = " ".join(comment).strip()
        comment = []
    return found


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("stage", STAGES)
def test_every_key_is_printed_with_its_default_and_description(stage: str, capsys) -> None:
    status, out, _ = run_cli(capsys, "config", stage)
    assert status == 0
    printed = keys_with_comments(out)
    for key in leaves(STAGES[stage]):
        assert key in printed, f"{key} is not printed"
        assert printed[key], f"{key} has no description (a field docstring in config.py)"
    # The text is YAML holding exactly the defaults, required keys as ???.
    defaults = OmegaConf.to_container(OmegaConf.structured(STAGES[stage]))
    assert OmegaConf.to_container(OmegaConf.create(out)) == defaults
    for key in REQUIRED[stage]:
        assert f"{key.rsplit('.', 1)[1]}: ???  # required" in out


def test_descriptions_come_from_the_field_docstrings(capsys) -> None:
    _, out, _ = run_cli(capsys, "config", "ppo")
    printed = keys_with_comments(out)
    # Inherited fields keep their own class's docstring; a redefined one takes the new one.
    assert printed["train.warmup_ratio"].startswith("Fraction of the optimizer steps")
    assert printed["train.learning_rate"].startswith("Peak AdamW learning rate of the trained")
    assert printed["run.mixed_precision"].startswith("'auto' (bf16 on a GPU")
    assert all(len(line) <= 96 for line in out.splitlines() if line.lstrip().startswith("#"))


def test_resolved_config_from_a_file_and_overrides_loads_back(tmp_path: Path, capsys) -> None:
    tiny = ROOT / "configs/reward/tiny.yaml"
    overrides = ["train.epochs=5", "run.mixed_precision=no", "data.columns.chosen=good",
                 "data.separator=' | '"]
    # Overrides after --config as well as before it.
    status, out, err = run_cli(capsys, "config", "reward", overrides[0], "--config", str(tiny),
                               *overrides[1:])
    assert status == 0, err
    assert "resolved from" in out and "epochs: 5" in out and "mixed_precision: 'no'" in out
    printed = tmp_path / "printed.yaml"
    printed.write_text(out)
    assert load_config(RewardConfig, printed) == load_config(RewardConfig, tiny, overrides)


def test_a_partial_config_shows_required_keys_and_checks_the_rest(capsys) -> None:
    status, out, _ = run_cli(capsys, "config", "ppo", "train.batch_size=8")
    assert status == 0 and "batch_size: 8" in out and "policy: ???  # required" in out
    status, _, err = run_cli(capsys, "config", "ppo", "train.learning_rate=0")
    assert status == 2
    assert err.strip() == "rlhf config: error: config key 'train.learning_rate': must be > 0"
    status, _, err = run_cli(capsys, "config", "ppo", "trian.epochs=1")
    assert status == 2 and "did you mean 'train'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("stage", STAGES)
def test_train_help_points_at_rlhf_config(stage: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main([STAGE_COMMANDS[stage], "--help"])
    assert exited.value.code == 0
    assert f"rlhf config {stage}" in capsys.readouterr().out


def test_train_commands_need_no_config_file(capsys) -> None:
    # Without --config the missing required key is named, not --config.
    status, _, err = run_cli(capsys, "train-ppo")
    assert status == 2
    assert "config key 'data.path' is required" in err and len(err.splitlines()) == 1
    status, _, err = run_cli(capsys, "train-ppo", *PPO_REQUIRED[:2])
    assert status == 2 and "config key 'model.reward' is required" in err
    # All required keys given: the config loads (a bad value stops it before any model).
    status, _, err = run_cli(capsys, "train-ppo", *PPO_REQUIRED, "train.learning_rate=0")
    assert status == 2 and "train.learning_rate" in err


def test_a_yaml_boolean_word_on_the_command_line(capsys) -> None:
    status, out, err = run_cli(capsys, "config", "ppo", "--config",
                               str(ROOT / "configs/ppo/tiny.yaml"), "run.mixed_precision=no")
    assert status == 0, err
    assert "mixed_precision: 'no'" in out
    status, _, err = run_cli(capsys, "train-ppo", "--config", str(ROOT / "configs/ppo/tiny.yaml"),
                             "data.template=off")
    assert status == 2 and len(err.splitlines()) == 1
    assert "'data.template'" in err and "YAML read 'off' as the boolean false" in err


def test_rlhf_config_is_instant() -> None:
    """`rlhf config` imports neither torch nor transformers."""
    code = ("import sys; from rlhf.cli import main; main(['config', 'ppo']); "
            "assert not {'torch', 'transformers'} & set(sys.modules), 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


@pytest.mark.slow
def test_train_ppo_runs_from_overrides_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    status = main(["train-ppo", *PPO_REQUIRED, "data.template=prompt", f"run.output_dir={out}",
                   "data.max_samples=16", "train.batch_size=8", "generate.max_new_tokens=4",
                   "ppo.ppo_epochs=1", "run.progress=false"])
    assert status == 0
    assert (out / "metrics.jsonl").is_file()
    assert "policy: builtin:tiny-gpt2" in (out / "config.yaml").read_text()


def test_the_critic_free_stage_is_named_either_way(capsys) -> None:
    """`rlhf config critic-free`, as the command train-critic-free spells it, or critic_free."""
    _, dashed, _ = run_cli(capsys, "config", "critic-free")
    _, underscored, _ = run_cli(capsys, "config", "critic_free")
    assert dashed == underscored
    printed = keys_with_comments(dashed)
    assert printed["algo.advantage"].startswith("'rloo'")
    assert "generate.num_samples" in printed and "model.value_init" not in printed
