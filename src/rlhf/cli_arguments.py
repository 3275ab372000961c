"""The `rlhf` command line's shared argument types and argument groups: one-line usage errors,
sizes, temperatures, column mappings, a config source and how a reward model reads text."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from rlhf.errors import UserError


def columns(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--column '{pair}' is not of the form canonical=name, "
                            "e.g. --column chosen=good")
        key, value = pair.split("=", 1)
        mapping[key] = value
    return mapping


class Parser(argparse.ArgumentParser):
    """argparse with usage mistakes on one line, like every other error, and exit status 2.

    argparse's own `error` prints the whole usage block first; the one line names the mistake
    and points at --help instead.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def stage_name(text: str) -> str:
    """A stage as `rlhf config` takes it: critic-free (as in train-critic-free) or critic_free."""
    return text.replace("-", "_")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a size or a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive whole number (>= 1)")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (a temperature)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number >= 0")
    return value


STAGE_COMMANDS = {"sft": "train-sft", "reward": "train-reward", "ppo": "train-ppo",
                  "critic_free": "train-critic-free", "dpo": "train-dpo"}


def add_config_source(parser: argparse.ArgumentParser, stage: str) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"YAML config file (examples in configs/{stage}/); optional when "
                        "key=value overrides set every required key")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="set a config key, e.g. train.epochs=2 (a nested one with dots)")


def add_reading(parser: argparse.ArgumentParser) -> None:
    """How a reward model reads text: the EOS convention, the batch size and length limit."""
    parser.add_argument("--append-eos", choices=["auto", "yes", "no"], default="auto",
                        help="end each input with EOS; auto: as the model was trained (a "
                        "train-reward model records it; others get TRL RewardTrainer's rule)")
    add_batching(parser)


def add_batching(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="token limit of the reward model's input, the prompt cut first "
                        "(default: the model's own limit, at most 512)")
