"""What `rlhf plan` reads besides the config: a memory size ('24GB', '80GiB') and the stage, found
from the config's keys when `--stage` is not given."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from rlhf.errors import UserError
from rlhf.planning.shapes import read_shape

UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
         "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
"""Size prefixes: decimal (GB = 10^9 bytes, as disk and cloud sizes are sold) and binary
(GiB = 2^30, what `nvidia-smi` and `free` count)."""

SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)

RL_KEYS = ("model.policy", "model.reward", "generate", "data.max_prompt_tokens")
"""Keys of the RL stages (PPO and critic-free) that no supervised stage has."""

SIGNATURES = {
    "critic_free": ("algo", "generate.num_samples"),
    "ppo": ("ppo", "model.value", "model.value_init", "lora.value"),
}
"""Keys only one RL stage has: an RL config that sets one of them belongs to that stage."""

REWARD_KEYS = ("data.template", "data.separator", "model.tokenizer", "train.center_coef")
"""Keys a reward-model config has and an SFT config does not."""


def parse_memory(text: str) -> int:
    """Bytes of a size such as '24GB', '80 GiB', '512MiB' or '1.5TB'."""
    match = SIZE.match(text)
    if not match or (match.group(2) is None and not text.strip().lower().endswith("b")):
        raise UserError(f"--memory '{text}' is not a memory size; write it with a unit, e.g. "
                        "24GB or 80GiB (GB = 10^9 bytes, GiB = 2^30)")
    value = float(match.group(1)) * UNITS[(match.group(2) or "").lower()]
    if value <= 0:
        raise UserError(f"--memory '{text}' must be more than 0")
    return int(value)


def config_keys(path: str | Path | None, overrides: list[str] = ()) -> set[str]:
    """Every dotted key the file and the overrides set (sections and their keys)."""
    keys: set[str] = set()
    if path is not None:
        try:
            values = OmegaConf.to_container(OmegaConf.load(path))
        except (OSError, ValueError, TypeError) as error:
            raise UserError(f"cannot read config file {path}: {error}") from None
        keys |= _dotted(values if isinstance(values, dict) else {})
    for item in overrides:
        parts = item.split("=", 1)[0].strip().split(".")
        keys |= {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return keys


def _dotted(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        name = f"{prefix}{key}"
        keys.add(name)
        if isinstance(value, dict):
            keys |= _dotted(value, name + ".")
    return keys


def detect_stage(path: str | Path | None, overrides: list[str] = ()) -> str:
    """The stage a config is for, from its keys: `dpo` -> dpo, `algo` -> critic_free, `ppo` ->
    ppo, the preference-data keys -> reward; otherwise an RL config (`model.policy`) is ambiguous and a
    supervised one (`model.name_or_path`) is SFT for a decoder, a reward model for an
    encoder (which cannot be an SFT model)."""
    keys = config_keys(path, overrides)
    where = f"config {path}" if path else "the overrides"
    if keys & {"dpo", "model.reference"}:
        return "dpo"
    if keys & set(RL_KEYS):
        found = [stage for stage, marks in SIGNATURES.items() if keys & set(marks)]
        if len(found) == 1:
            return found[0]
        raise UserError(f"cannot tell from {where} whether it is for ppo or critic_free (it "
                        f"has {'both' if found else 'neither'} a ppo {'and' if found else 'nor'} "
                        "an algo section); pass --stage ppo or --stage critic_free")
    if keys & set(REWARD_KEYS):
        return "reward"
    model = _supervised_model(path, overrides)
    if model is None:
        raise UserError(f"cannot tell the stage of {where}: it sets neither model.policy nor "
                        "model.name_or_path; pass --stage sft, reward, ppo or critic_free")
    shape = read_shape(model, "classifier", key="model.name_or_path")
    return "reward" if shape.family == "encoder" else "sft"


def _supervised_model(path, overrides) -> str | None:
    """model.name_or_path as the overrides or the file set it."""
    for item in reversed(list(overrides)):
        key, _, value = item.partition("=")
        if key.strip() == "model.name_or_path":
            return value.strip()
    if path is None:
        return None
    model = OmegaConf.load(path).get("model") or {}
    return model.get("name_or_path") if hasattr(model, "get") else None
