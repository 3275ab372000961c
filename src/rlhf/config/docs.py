"""`rlhf config STAGE`: a stage's config as YAML, each key under a comment saying what it does.

The comments are the config dataclasses' attribute docstrings (the string right after each
field). Python keeps no such docstring at runtime, so they are read back from the source with
`ast`: a field added to a dataclass shows up here with no list to update.

The field docstrings are read from the module that defines each class (`common`, `reward`,
`sft`, `ppo`), inherited fields included. Imports only the standard library, OmegaConf and
the rest of rlhf.config, like the config layer itself.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import typing
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rlhf.config.critic_free import CriticFreeConfig
from rlhf.config.dpo import DPOConfig
from rlhf.config.loading import load_config, merge_config
from rlhf.config.ppo import PPOConfig
from rlhf.config.reward import RewardConfig
from rlhf.config.sft import SFTConfig

STAGES: dict[str, type] = {"sft": SFTConfig, "reward": RewardConfig, "ppo": PPOConfig,
                           "critic_free": CriticFreeConfig, "dpo": DPOConfig}
"""Stage name (as in `rlhf config STAGE`) -> its top-level config dataclass."""

WIDTH = 96
"""Comment lines are wrapped to this many characters, indentation included."""


def describe_stage(stage: str, path: str | Path | None = None,
                   overrides: list[str] = ()) -> str:
    """The stage's config as commented YAML: its defaults, or resolved from a file and overrides.

    A resolved config that sets every required key is validated as a run would validate it;
    one that leaves some unset shows them as ??? and validates only the complete sections.
    """
    schema = STAGES[stage]
    if path is None and not overrides:
        values = OmegaConf.structured(schema)
        origin = "defaults"
    else:
        values = merge_config(schema, path, overrides)
        if OmegaConf.missing_keys(values):
            _validate_complete_sections(schema, values)
        else:
            values = OmegaConf.structured(load_config(schema, path, overrides))
        given = [str(path)] if path is not None else []
        given += [f"{len(overrides)} override(s)"] if overrides else []
        origin = "resolved from " + " + ".join(given)
    # Unresolved: a partial config may interpolate a key still unset; a complete one is
    # already resolved by load_config.
    plain = OmegaConf.to_container(values, resolve=False, throw_on_missing=False)
    header = [_one_line(schema.__doc__),
              f"Config of `rlhf train-{stage.replace('_', '-')}` ({origin}); ??? marks a required key. Set "
              "keys in a YAML file (--config FILE) or on the command line as key=value."]
    lines = [line for text in header for line in _comment(text, "")]
    _write_section(schema, plain, "", lines)
    return "\n".join(lines) + "\n"


def field_docs(schema: type) -> dict[str, str]:
    """Field name -> attribute docstring of a dataclass, inherited ones included (a subclass
    that redefines a field redefines its docstring too)."""
    docs: dict[str, str] = {}
    for klass in reversed(schema.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


@functools.cache
def _own_field_docs(klass: type) -> dict[str, str]:
    """The docstrings written in `klass`'s own body: a string statement right after an
    annotated field."""
    body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _write_section(schema: type, values: dict[str, Any], indent: str, lines: list[str]) -> None:
    """Append `schema`'s keys with their values (from `values`) and comments to `lines`."""
    docs = field_docs(schema)
    hints = typing.get_type_hints(schema)
    for config_field in dataclasses.fields(schema):
        name, hint, value = config_field.name, hints[config_field.name], values[config_field.name]
        if dataclasses.is_dataclass(hint):
            lines += ["", *_comment(_one_line(hint.__doc__), indent), f"{indent}{name}:"]
            _write_section(hint, value, indent + "  ", lines)
            continue
        if not indent and lines[-1].startswith(" "):  # a top-level key after a section
            lines.append("")
        lines += _comment(_one_line(docs.get(name)), indent)
        lines += [indent + line for line in _value_yaml(name, value)]


def _value_yaml(name: str, value: Any) -> list[str]:
    """`name: value` as YAML lines that load back to the same value."""
    if isinstance(value, str) and not value.isprintable():
        # A JSON string is a YAML double-quoted scalar: "\n" rather than a folded block.
        return [f"{name}: {json.dumps(value)}"]
    # OmegaConf quotes what YAML would misread ('no', '1e3') and writes lists and mappings.
    text = OmegaConf.to_yaml({name: value}).rstrip("\n").splitlines()
    if value == "???":
        text[0] += "  # required"
    return text


def _comment(text: str, indent: str) -> list[str]:
    prefix = indent + "# "
    return textwrap.wrap(text, width=WIDTH, initial_indent=prefix, subsequent_indent=prefix,
                         break_on_hyphens=False)


def _one_line(doc: str | None) -> str:
    """A docstring as one paragraph for wrapping. The whole of it: a field's second sentence
    often says what its default null or 0 means (model.reward_template, data.test_split)."""
    return " ".join((doc or "").split())


def _validate_complete_sections(schema: type, values: Any) -> None:
    """Run each section's checks whose keys are all set, so a bad value shows before the
    required keys are filled in; the checks across sections wait for a complete config."""
    hints = typing.get_type_hints(schema)
    for config_field in dataclasses.fields(schema):
        section = values[config_field.name]
        if dataclasses.is_dataclass(hints[config_field.name]) and \
                not OmegaConf.missing_keys(section):
            OmegaConf.to_object(section)
