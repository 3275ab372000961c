"""Loading a config: YAML plus dotted `key=value` overrides into a stage's dataclass.

OmegaConf does the loading, merging and type conversion; this module adds what OmegaConf does
not: an unknown key names the closest valid key, a YAML syntax error says where it is on one
line, and a YAML boolean in a text field is turned back into its word or refused. `to_yaml`
writes the resolved config back out.

Imports only the standard library, OmegaConf, rlhf.errors and rlhf.config.common (DESIGN.md
dependency rule).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from rlhf.config.common import RunConfig
from rlhf.errors import UserError, first_line

T = TypeVar("T")


def _unknown_keys(schema: type, values: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Every key in `values` that the dataclass `schema` lacks, with the valid keys beside it."""
    if not isinstance(values, dict) or not dataclasses.is_dataclass(schema):
        return []
    fields = {f.name: f for f in dataclasses.fields(schema)}
    found = []
    for key, value in values.items():
        if key not in fields:
            found.append((prefix + str(key), [prefix + name for name in fields]))
            continue
        section = _section_type(fields[key])
        if section is not None:
            found += _unknown_keys(section, value, f"{prefix}{key}.")
    return found


def _section_type(config_field: dataclasses.Field) -> type | None:
    """The dataclass type of a nested section, or None for a plain field."""
    if config_field.default_factory is dataclasses.MISSING:
        return None
    value = config_field.default_factory()
    return type(value) if dataclasses.is_dataclass(value) else None


def _raise_unknown(schema: type, values: dict, origin: str) -> None:
    unknown = _unknown_keys(schema, values)
    if not unknown:
        return
    key, valid = unknown[0]
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"
    raise UserError(f"unknown config key '{key}' in {origin}{hint}")


def load_config(schema: type[T], path: str | Path | None, overrides: list[str] = ()) -> T:
    """Load `schema` from a YAML file plus dotted `key=value` overrides, validated.

    Raises UserError for a missing file, bad YAML, an unknown key (with a suggestion), a value of
    the wrong type, a required key left unset, or a value its dataclass rejects.
    """
    merged = merge_config(schema, path, overrides)
    try:
        return OmegaConf.to_object(merged)
    except MissingMandatoryValue as error:
        raise UserError(f"config key '{error.full_key}' is required; set it in the YAML file "
                        f"(--config FILE) or as {error.full_key}=... on the command line") from None
    except OmegaConfBaseException as error:
        raise _type_error(error, "") from None


def merge_config(schema: type, path: str | Path | None, overrides: list[str] = ()) -> Any:
    """The structured OmegaConf config of `schema` with the file and overrides merged in,
    type-checked but not yet validated by the dataclasses (required keys may be unset)."""
    layers = []
    if path is not None:
        layers.append((_load_yaml(Path(path)), str(path), {}))
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise UserError(f"override '{bad[0]}' is not of the form key=value (e.g. train.epochs=2)")
    typed = {key.strip(): text.strip() for key, text in (o.split("=", 1) for o in overrides)}
    layers.append((OmegaConf.from_dotlist(list(overrides)), "the command-line overrides", typed))

    merged = OmegaConf.structured(schema)
    for layer, origin, typed in layers:
        plain = OmegaConf.to_container(layer, resolve=False) or {}
        _raise_unknown(schema, plain, origin)
        plain = _undo_yaml_booleans(schema, plain, _BooleanSource(origin, typed))
        try:
            merged = OmegaConf.merge(merged, plain)
        except OmegaConfBaseException as error:
            raise _type_error(error, f" in {origin}") from None
    return merged


def _load_yaml(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"config file not found: {path}; check the path (the configs/ "
                        "folder of the repository has examples)")
    try:
        return OmegaConf.load(path)
    except Exception as error:  # yaml.YAMLError and friends
        raise UserError(f"cannot parse config file {path}{_yaml_position(error)}: "
                        f"{_yaml_problem(error)}; fix the YAML syntax") from None


def _type_error(error: OmegaConfBaseException, where: str) -> UserError:
    key = getattr(error, "full_key", "") or "?"
    return UserError(f"config key '{key}'{where}: {first_line(error)}; give it a value of the "
                     "right type")


# YAML 1.1 (PyYAML, hence OmegaConf, also for command-line overrides) reads an unquoted yes, no,
# on, off, true or false in any case as a boolean, and OmegaConf would then store "False" in a
# text field. Where a text field's valid values include such a word, the boolean stands for
# that word (mixed_precision: no); any other text field given a boolean is told to quote it.
BOOLEAN_WORDS: dict[tuple[type, str], dict[bool, str]] = {
    (RunConfig, "mixed_precision"): {False: "no"},
}
_YAML_BOOLEANS = {"yes", "no", "on", "off", "true", "false"}


@dataclass
class _BooleanSource:
    """Where a layer of values came from, and the text typed for each dotted key (overrides),
    so an error can quote the very word YAML turned into a boolean."""

    origin: str
    typed: dict[str, str]


def _undo_yaml_booleans(schema: type, values: Any, source: _BooleanSource,
                        prefix: str = "") -> Any:
    """`values` (a plain container) with each YAML boolean in a text field of `schema` turned
    back into the word it stands for; a UserError where the field has no such word."""
    if not isinstance(values, dict) or not dataclasses.is_dataclass(schema):
        return values
    hints = typing.get_type_hints(schema)
    fixed = dict(values)
    for key, value in values.items():
        hint, dotted = hints.get(key), f"{prefix}{key}"
        if dataclasses.is_dataclass(hint):
            fixed[key] = _undo_yaml_booleans(hint, value, source, dotted + ".")
        elif _is_text(hint) and isinstance(value, bool):
            word = BOOLEAN_WORDS.get((schema, key), {}).get(value)
            if word is None:
                _quote_error(dotted, value, source)
            fixed[key] = word
        elif typing.get_origin(hint) in (list, dict) and _is_text(typing.get_args(hint)[-1]):
            _check_text_items(value, dotted, source)
    return fixed


def _check_text_items(value: Any, key: str, source: _BooleanSource) -> None:
    """A list or mapping of text (run.report_to, data.columns) holds no YAML boolean."""
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, bool):
                _quote_error(f"{key}.{name}", item, source)
    elif isinstance(value, list) and any(isinstance(item, bool) for item in value):
        _quote_error(key, next(i for i in value if isinstance(i, bool)), source, in_list=True)


def _is_text(hint: Any) -> bool:
    """True for `str` and `str | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return set(typing.get_args(hint)) == {str, type(None)}
    return hint is str


def _quote_error(key: str, value: bool, source: _BooleanSource,
                 in_list: bool = False) -> NoReturn:
    typed = source.typed.get(key, "")
    word = typed if typed.lower() in _YAML_BOOLEANS else ("yes" if value else "no")
    said = f"'{word}'" if typed == word else ("yes/on/true" if value else "no/off/false")
    quoted = f"['{word}']" if in_list else f"'{word}'"
    example = f"\"{key}={quoted}\"" if source.typed else f"{key.rsplit('.', 1)[-1]}: {quoted}"
    raise UserError(f"config key '{key}' in {source.origin}: YAML read {said} as the boolean "
                    f"{str(value).lower()}, but this key takes text; quote the value, e.g. "
                    f"{example}")


def _yaml_position(error: Exception) -> str:
    """' (line L, column C)' where PyYAML found the problem, or '' when it does not say."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _yaml_problem(error: Exception) -> str:
    """PyYAML's messages span several lines (context, problem, a caret under the text); the
    problem itself is the part that helps on one line."""
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    problem = ", ".join(part for part in parts if part)
    return problem or first_line(error)


def to_yaml(config: Any) -> str:
    """The resolved config as YAML, as written to the run directory."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))
