"""`rlhf plan`: memory sizes, the stage found from a config's keys, the command on the shipped
tiny configs, its one-line errors, and the lines a starting run prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf.cli import main
from rlhf.config import PPOConfig, load_config
from rlhf.errors import UserError
from rlhf.planning import plan_config, plan_lines
from rlhf.planning.inputs import detect_stage, parse_memory

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(("text", "expected"), [
    ("24GB", 24 * 10**9), ("24 gb", 24 * 10**9), ("80GiB", 80 * 2**30), ("512MiB", 2**29),
    ("1.5TB", 15 * 10**11), ("24G", 24 * 10**9), ("100B", 100), ("0.5 GiB", 2**29)])
def test_memory_sizes(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["24", "lots", "24 gigs", "GB", "-1GB", "0GB", "1e9B"])
def test_bad_memory_sizes_say_how_to_write_one(text: str) -> None:
    with pytest.raises(UserError, match=r"--memory .*(24GB|more than 0)"):
        parse_memory(text)


@pytest.mark.parametrize(("path", "stage"), [
    ("ppo/tiny.yaml", "ppo"), ("ppo/dolly_gpt2.yaml", "ppo"),
    ("critic_free/grpo_tiny.yaml", "critic_free"), ("critic_free/rloo_dolly_gpt2.yaml",
                                                    "critic_free"),
    ("sft/tiny.yaml", "sft"), ("reward/tiny.yaml", "reward"),
    ("reward/descriptiveness.yaml", "reward")])
def test_stage_from_the_shipped_configs_keys(path: str, stage: str) -> None:
    assert detect_stage(CONFIGS / path) == stage


def test_stage_from_overrides_and_ambiguous_configs(tmp_path: Path) -> None:
    assert detect_stage(None, ["model.name_or_path=builtin:tiny-roberta"]) == "reward"
    assert detect_stage(None, ["model.name_or_path=builtin:tiny-gpt2"]) == "sft"
    assert detect_stage(None, ["model.policy=builtin:tiny-gpt2", "algo.kl_coef=0.1"]) == \
        "critic_free"
    rl = tmp_path / "rl.yaml"
    rl.write_text("model:\n  policy: builtin:tiny-gpt2\n  reward: x.y:z\n")
    with pytest.raises(UserError, match="ppo or critic_free.*--stage"):
        detect_stage(rl)
    with pytest.raises(UserError, match="several|both"):
        detect_stage(rl, ["ppo.kl_coef=0.1", "algo.kl_coef=0.1"])
    empty = tmp_path / "empty.yaml"
    empty.write_text("run:\n  seed: 1\n")
    with pytest.raises(UserError, match="cannot tell the stage.*--stage"):
        detect_stage(empty)


def test_plan_command_prints_the_table_and_the_advice(capsys) -> None:
    assert main(["plan", "--config", str(CONFIGS / "ppo/tiny.yaml"), "--memory", "300MB",
                 "train.batch_size=16", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "memory plan: ppo, 1 process, cpu, fp32" in out
    for row in ("| policy |", "| reference |", "| value |", "| process |", "| total |"):
        assert row in out
    assert "predicted peak:" in out and "does not fit in 286 MiB" in out
    assert "together:" in out  # the baseline alone is over 300 MB: nothing fits


def test_plan_command_with_a_budget_that_fits(capsys) -> None:
    assert main(["plan", "--config", str(CONFIGS / "sft/tiny.yaml"), "--memory", "24GB",
                 "--device", "cpu", "--processes", "2"]) == 0
    out = capsys.readouterr().out
    assert "sft, 2 processes" in out and "fits in 22.35 GiB" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--memory", "24 gigs"], "--memory '24 gigs' is not a memory size"),
    (["--stage", "ppo", "nope.key=1"], "unknown config key 'nope'"),
    (["lora.r=8", "lora.target_modules=[q_proj]"], "lora.target_modules"),
])
def test_plan_command_mistakes_are_one_line(argv, message, capsys) -> None:
    assert main(["plan", "--config", str(CONFIGS / "ppo/tiny.yaml"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_dpo_configs_are_planned(capsys) -> None:
    config = CONFIGS / "dpo/tiny.yaml"
    assert detect_stage(config) == "dpo"
    assert main(["plan", "--config", str(config), "dpo.reference_logprobs=on_the_fly"]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "reference forwards" in out


def test_plan_command_without_a_detectable_stage(tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("run:\n  seed: 1\n")
    assert main(["plan", "--config", str(config)]) == 2
    assert "cannot tell the stage" in capsys.readouterr().err


def test_plan_lines_for_a_loaded_config() -> None:
    cfg = load_config(PPOConfig, CONFIGS / "ppo/tiny.yaml", [])
    lines = plan_lines("ppo", cfg, 1, "cpu")
    assert len(lines) == 2 and all(line.startswith("[plan] ") for line in lines)
    assert "predicted peak memory" in lines[0] and "policy 198.0k" in lines[1]
    assert f"{plan_config('ppo', cfg, 1, 'cpu').peak / 2**20:.0f} MiB" in lines[0]


def test_plan_lines_never_stop_a_run(tmp_path: Path) -> None:
    cfg = load_config(PPOConfig, CONFIGS / "ppo/tiny.yaml",
                      [f"model.policy={tmp_path / 'missing'}"])
    lines = plan_lines("ppo", cfg, 1, "cpu")
    assert lines == [f"[plan] no memory plan: config key 'model.policy': folder not found: "
                     f"{tmp_path / 'missing'}"]
