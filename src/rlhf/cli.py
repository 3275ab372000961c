"""The `rlhf` command line. Each subcommand parses, loads its config and calls one module.

A subcommand's module is imported only when it runs, so `rlhf --help` is instant. A mistake
the user can fix (UserError) prints one line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from rlhf.cli_arguments import STAGE_COMMANDS, Parser, add_config_source
from rlhf.cli_tools import add_tools
from rlhf.errors import NonFiniteError, StoppedBySignal, UserError

# Every handler imports what it needs when it runs: torch, transformers and the stages load only
# for the subcommand that uses them, so `rlhf --help` and `rlhf config` stay instant.


def _train_sft(args: argparse.Namespace) -> None:
    from rlhf.config import SFTConfig, load_config

    # Before the heavy imports, so that a config mistake shows at once.
    config = load_config(SFTConfig, args.config, args.overrides)
    from rlhf.stages.sft import train_sft

    train_sft(config)
    _report_finished(config.run.output_dir)


def _train_reward(args: argparse.Namespace) -> None:
    from rlhf.config import RewardConfig, load_config

    config = load_config(RewardConfig, args.config, args.overrides)
    from rlhf.stages.reward import train_reward

    train_reward(config)
    _report_finished(config.run.output_dir)


def _train_ppo(args: argparse.Namespace) -> None:
    from rlhf.config import PPOConfig, load_config

    config = load_config(PPOConfig, args.config, args.overrides)
    from rlhf.stages.ppo.train import train_ppo

    train_ppo(config)
    _report_finished(config.run.output_dir)


def _train_critic_free(args: argparse.Namespace) -> None:
    from rlhf.config import CriticFreeConfig, load_config

    config = load_config(CriticFreeConfig, args.config, args.overrides)
    from rlhf.stages.critic_free.train import train_critic_free

    train_critic_free(config)
    _report_finished(config.run.output_dir)


def _train_dpo(args: argparse.Namespace) -> None:
    from rlhf.config import DPOConfig, load_config

    config = load_config(DPOConfig, args.config, args.overrides)
    from rlhf.stages.dpo.train import train_dpo

    train_dpo(config)
    _report_finished(config.run.output_dir)


def _report_finished(run_dir: str) -> None:
    """Plots and report.html of the stage that just finished, written by the main process
    (a stage itself draws nothing)."""
    from accelerate import PartialState

    from rlhf.report import report_run

    if PartialState().is_main_process:
        print(f"[rlhf] report: {report_run(run_dir)}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rlhf", description=(
        "Reinforcement Learning from Human Feedback on Hugging Face models."),
        epilog="Every config key of a training stage, with its default: rlhf config "
        "{sft,reward,ppo,critic_free,dpo}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)
    _add_training(commands, "sft", _train_sft, "supervised fine-tuning of a causal LM on "
                  "(prompt, response) pairs, loss on the response only")
    _add_training(commands, "reward", _train_reward, "train a reward model on preference pairs")
    _add_training(commands, "ppo", _train_ppo, "fine-tune a policy against a reward with PPO")
    _add_training(commands, "critic_free", _train_critic_free, "fine-tune a policy against a "
                  "reward without a value model: RLOO, GRPO (Dr. GRPO, DAPO, GSPO options), "
                  "REINFORCE++ or REINFORCE")
    _add_training(commands, "dpo", _train_dpo, "optimise a policy directly on preference pairs "
                  "against a fixed reference: DPO, robust DPO, IPO or SimPO")
    add_tools(commands)
    return parser


def _add_training(commands, stage: str, handler, summary: str) -> None:
    """A `train-<stage>` subcommand; its help points at `rlhf config <stage>` for the keys."""
    parser = commands.add_parser(
        STAGE_COMMANDS[stage], help=summary, description=summary[0].upper() + summary[1:] + ".",
        epilog=f"Every config key with its default and what it does: rlhf config {stage}\n"
        f"The config a run will use:  rlhf config {stage} --config FILE [key=value ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_source(parser, stage)
    parser.set_defaults(handler=handler)


def _quiet_library_progress_bars() -> None:
    """Our own bars show progress; transformers' per-file load/save bars are noise."""
    from transformers.utils import logging  # only for subcommands that load models anyway

    logging.disable_progress_bar()


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting key=value overrides come after --config FILE as well as before it.

    argparse fills a positional list once, so `rlhf config ppo --config F a=b` would leave
    `a=b` unrecognised; such leftovers join the overrides instead.
    """
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(build_parser(), argv)
    if getattr(args, "loads_models", True):  # `rlhf config` stays instant: no transformers
        _quiet_library_progress_bars()
    try:
        args.handler(args)
    except UserError as error:
        print(f"rlhf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteError as error:
        print(f"rlhf {args.command}: stopped: {error}", file=sys.stderr)
        return 3
    except StoppedBySignal as message:
        print(f"rlhf {args.command}: {message}", file=sys.stderr)
        return 0
    except KeyboardInterrupt:
        print(f"rlhf {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
