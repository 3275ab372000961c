"""Every YAML under configs/ loads and validates offline with its stage's schema; the trl 0.11.4
configs of the reference workload keep the numbers its original notebook ran (trl 0.11.4
defaults, docs/trl-0.11-settings.md), and the recommended configs differ from them only where
docs/trl-0.11-settings.md says why."""

import dataclasses
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlhf.config import CriticFreeConfig, PPOConfig, RewardConfig, load_config
from rlhf.config.docs import STAGES

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DEMO_CONFIGS = ROOT / "src" / "rlhf" / "demo_configs"  # package data: `rlhf demo` reads them
SCHEMAS = STAGES  # every stage's config class, by the name of its folder under configs/
ACCELERATE = CONFIGS / "accelerate"  # accelerate's own launch configs, not stage configs
ALL_CONFIGS = sorted(path for path in CONFIGS.rglob("*.yaml") if ACCELERATE not in path.parents
                     ) + sorted(DEMO_CONFIGS.glob("*.yaml"))


def label(path: Path) -> str:
    """configs/<stage>/NAME.yaml as '<stage>/NAME.yaml'; a demo config as 'demo/<stage>.yaml'."""
    if path.parent == DEMO_CONFIGS:
        return f"demo/{path.name}"
    return str(path.relative_to(CONFIGS))


def schema_for(path: Path) -> type:
    """configs/<stage>/NAME.yaml, or a folder of stages named after them (demo/ppo.yaml)."""
    for name in (label(path).split("/")[0], path.stem):
        if name in SCHEMAS:
            return SCHEMAS[name]
    raise AssertionError(f"{label(path)}: no stage schema; put it under configs/<stage> "
                         f"for a stage of {sorted(SCHEMAS)}, or name the file after its stage")


def flat(config) -> dict[str, object]:
    """'section.key' -> value for every field of a loaded config."""
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if isinstance(value, dict) and dataclasses.is_dataclass(getattr(config, key)):
            out |= {f"{key}.{inner}": item for inner, item in value.items()}
        else:
            out[key] = value
    return out


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a config must not reach for the hub (or anything else on the network)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a config load tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_shipped_configs_are_all_found() -> None:
    names = {label(path) for path in ALL_CONFIGS}
    assert {"ppo/dolly_gpt2.yaml", "ppo/dolly_gpt2_recommended.yaml", "ppo/tiny.yaml",
            "reward/descriptiveness.yaml", "reward/descriptiveness_recommended.yaml",
            "reward/tiny.yaml", "sft/tiny.yaml", "demo/ppo.yaml", "demo/reward.yaml",
            "demo/sft.yaml"} <= names


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=label)
def test_every_config_loads_and_validates_offline(path: Path, no_network: None) -> None:
    schema = schema_for(path)
    cfg = load_config(schema, path)  # validation runs in each section's __post_init__
    assert isinstance(cfg, schema)
    if isinstance(cfg, PPOConfig):
        cfg.batch_split(1)


# -- stage 2: PPO ---------------------------------------------------------------------------

TRL_0_11_PPO = {
    # trl 0.11.4 PPOConfig defaults (trl/trainer/ppo_config.py) with learning_rate 1.41e-5
    "train.batch_size": 128,
    "ppo.num_minibatches": 1,  # mini_batch_size 128, gradient_accumulation_steps 1
    "ppo.ppo_epochs": 4,
    "train.epochs": 1,
    "ppo.total_episodes": 14976,  # 117 batches of 128: DataLoader(drop_last=True)
    "ppo.kl_coef": 0.2,
    "ppo.adaptive_kl": True,
    "ppo.kl_target": 6.0,
    "ppo.kl_horizon": 10000,
    "ppo.kl_estimator": "k1",  # kl_penalty "kl"
    "ppo.gamma": 1.0,
    "ppo.lam": 0.95,
    "ppo.clip_range": 0.2,
    "ppo.value_clip_range": 0.2,
    "ppo.vf_coef": 0.1,
    "ppo.whiten_rewards": False,
    "ppo.score_normalization": "none",  # use_score_scaling / use_score_norm False
    "ppo.score_clip": None,
    "ppo.missing_eos_penalty": None,
    "ppo.target_approx_kl": None,  # early_stopping False
    "ppo.ratio_threshold": 10.0,
    "train.learning_rate": 1.41e-5,
    "train.weight_decay": 0.0,  # torch Adam, no weight decay
    "train.scheduler": "constant",  # no lr_scheduler
    "train.warmup_ratio": 0.0,
    "train.max_grad_norm": 0.0,  # max_grad_norm None
    "run.mixed_precision": "no",
    # the notebook: pure sampling, LengthSampler(4, 16) per sample
    "generate.temperature": 1.0,
    "generate.min_new_tokens": 4,
    "generate.max_new_tokens": 15,
    "model.policy": "gpt2",
    "model.reward": "argilla/roberta-base-reward-model-falcon-dolly",
    "data.path": "argilla/databricks-dolly-15k-curated-en",
    "data.template": "dolly",
    "data.context_chars": 500,
    "data.max_prompt_tokens": 50,
}
DELIBERATE_PPO = {  # where rlhf departs from trl 0.11.4 on purpose (commented in the YAML)
    "data.reward_prompt": "instruction",
    "model.reward_template": "pair",
    "model.value_init": "policy",
    "model.disable_dropout": True,
}
RECOMMENDED_PPO_CHANGES = {
    "run.output_dir", "data.max_prompt_tokens", "generate.temperature",
    "generate.min_new_tokens", "generate.max_new_tokens", "ppo.score_normalization",
    "ppo.normalization_samples", "ppo.kl_coef", "train.scheduler",
}
DOLLY_PROMPTS = 15_015  # argilla/databricks-dolly-15k-curated-en


def test_the_dolly_config_keeps_the_trl_0_11_settings() -> None:
    cfg = flat(load_config(PPOConfig, CONFIGS / "ppo/dolly_gpt2.yaml"))
    assert {key: cfg[key] for key in TRL_0_11_PPO} == TRL_0_11_PPO
    assert {key: cfg[key] for key in DELIBERATE_PPO} == DELIBERATE_PPO


@pytest.mark.parametrize("overrides", [[], ["ppo.total_episodes=0"]],
                         ids=["total_episodes", "epochs"])
def test_the_dolly_config_takes_trl_0_11s_468_optimizer_steps(overrides: list[str]) -> None:
    from rlhf.stages.ppo.setup import iteration_schedule

    cfg = load_config(PPOConfig, CONFIGS / "ppo/dolly_gpt2.yaml", overrides)
    schedule = iteration_schedule(DOLLY_PROMPTS, cfg)
    assert schedule.iterations == DOLLY_PROMPTS // 128 == 117
    assert schedule.iterations * cfg.ppo.ppo_epochs * cfg.ppo.num_minibatches == 468
    one_process = SimpleNamespace(num_processes=1, process_index=0)
    seen = [i for step in range(schedule.iterations)
            for i in schedule.local_prompts(step, one_process)]
    assert len(seen) == len(set(seen)) == 117 * 128  # one pass, no prompt twice


# -- stage 1: reward model ------------------------------------------------------------------

TRL_0_11_REWARD = {
    # the notebook's choices; the rest are RewardConfig's = transformers TrainingArguments'
    "model.name_or_path": "distilroberta-base",
    "data.path": "trl-lib/lm-human-preferences-descriptiveness",
    "data.max_length": 512,
    "train.epochs": 3,
    "train.batch_size": 16,
    "train.learning_rate": 5e-5,
    "train.scheduler": "linear",
    "train.warmup_ratio": 0.0,
    "train.weight_decay": 0.0,
    "train.max_grad_norm": 1.0,
    "train.center_coef": 0.0,
    "model.disable_dropout": False,  # the Trainer trains in model.train()
    "data.group_by_length": False,
    "run.mixed_precision": "no",
}
RECOMMENDED_REWARD_CHANGES = {"run.output_dir", "model.disable_dropout", "train.epochs"}


def test_the_descriptiveness_config_keeps_the_trl_0_11_settings() -> None:
    cfg = flat(load_config(RewardConfig, CONFIGS / "reward/descriptiveness.yaml"))
    assert {key: cfg[key] for key in TRL_0_11_REWARD} == TRL_0_11_REWARD
    assert cfg["data.template"] == "pair"


# -- recommended configs --------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "reproduced", "recommended", "changes"), [
    (PPOConfig, "ppo/dolly_gpt2.yaml", "ppo/dolly_gpt2_recommended.yaml",
     RECOMMENDED_PPO_CHANGES),
    (RewardConfig, "reward/descriptiveness.yaml", "reward/descriptiveness_recommended.yaml",
     RECOMMENDED_REWARD_CHANGES),
], ids=["ppo", "reward"])
def test_a_recommended_config_differs_from_trl_0_11_only_where_docs_say_why(
        schema: type, reproduced: str, recommended: str, changes: set[str]) -> None:
    trl_cfg = flat(load_config(schema, CONFIGS / reproduced))
    ours = flat(load_config(schema, CONFIGS / recommended))
    differing = {key for key in trl_cfg if trl_cfg[key] != ours[key]}
    assert differing == changes, "update docs/trl-0.11-settings.md and this test together"
    doc = (ROOT / "docs/trl-0.11-settings.md").read_text()
    for key in changes - {"run.output_dir"}:
        assert f"`{key}`" in doc or f"`{key.rsplit('.', 1)[1]}`" in doc, key


# -- critic-free methods on the reference workload -------------------------------------------

CRITIC_FREE_DOLLY = sorted((CONFIGS / "critic_free").glob("*_dolly_gpt2.yaml"))
SAME_AS_RECOMMENDED_PPO = ["data.path", "data.template", "data.context_chars",
                           "data.max_prompt_tokens", "data.reward_prompt", "model.policy",
                           "model.reward", "model.reward_template", "generate.temperature",
                           "generate.max_new_tokens", "train.learning_rate", "train.scheduler",
                           "run.mixed_precision"]


def test_every_critic_free_method_has_a_reference_workload_config() -> None:
    methods = {load_config(CriticFreeConfig, path).algo.advantage for path in CRITIC_FREE_DOLLY}
    assert methods == {"rloo", "grpo", "dr_grpo", "reinforce_pp", "reinforce"}


@pytest.mark.parametrize("path", CRITIC_FREE_DOLLY, ids=lambda p: p.name)
def test_critic_free_dolly_configs_take_the_ppo_budget_on_the_same_models(path: Path) -> None:
    """Same models, prompts and sampling as the recommended PPO config, and its budget: 14,976
    responses in 117 iterations of 128, and 468 optimizer steps."""
    from rlhf.rl.schedule import IterationSchedule

    ppo = flat(load_config(PPOConfig, CONFIGS / "ppo/dolly_gpt2_recommended.yaml"))
    cfg = load_config(CriticFreeConfig, path)
    assert {k: flat(cfg)[k] for k in SAME_AS_RECOMMENDED_PPO} == \
        {k: ppo[k] for k in SAME_AS_RECOMMENDED_PPO}
    schedule = IterationSchedule(
        DOLLY_PROMPTS, batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
        total_prompts=cfg.algo.total_prompts, seed=0, min_new_tokens=None, max_new_tokens=24)
    assert schedule.iterations == 117
    assert cfg.train.batch_size * cfg.generate.num_samples == 128
    assert schedule.iterations * cfg.algo.update_epochs * cfg.algo.num_minibatches == 468
