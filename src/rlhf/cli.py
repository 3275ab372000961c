"""The `rlhf` command line. Each subcommand parses, loads its config and calls one module.

A subcommand's module is imported only when it runs, so `rlhf --help` is instant. A mistake
the user can fix (UserError) prints one line and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import NoReturn

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


def _eval_reward(args: argparse.Namespace) -> None:
    from rlhf.commands import evaluate_reward_model
    from rlhf.reward.reading import APPEND_EOS_CHOICES

    result = evaluate_reward_model(
        args.reward_model, args.data, name=args.name, split=args.split,
        columns=_columns(args.column), max_samples=args.max_samples,
        batch_size=args.batch_size, max_length=args.max_length,
        append_eos=APPEND_EOS_CHOICES[args.append_eos])
    print(json.dumps(result, indent=2))


def _score(args: argparse.Namespace) -> None:
    from rlhf.commands import score_file, score_pair
    from rlhf.reward.reading import APPEND_EOS_CHOICES

    append_eos = APPEND_EOS_CHOICES[args.append_eos]
    if args.input:
        if not args.output:
            raise UserError("--input needs --output F.jsonl to write the scores to")
        count = score_file(args.reward_model, args.input, args.output,
                           batch_size=args.batch_size, max_length=args.max_length,
                           append_eos=append_eos)
        print(f"scored {count} rows -> {args.output}")
    elif args.prompt is not None and args.response is not None:
        score = score_pair(args.reward_model, args.prompt, args.response,
                           max_length=args.max_length, append_eos=append_eos)
        print(f"{score:.6f}")
    else:
        raise UserError("give --prompt P --response R, or --input F.jsonl --output F.jsonl")


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


def _config(args: argparse.Namespace) -> None:
    from rlhf.config.docs import describe_stage

    print(describe_stage(args.stage, args.config, args.overrides), end="")


def _plan(args: argparse.Namespace) -> None:
    from rlhf.planning import plan_report

    print(plan_report(args.config, args.overrides, stage=args.stage, memory=args.memory,
                      device=args.device, num_processes=args.processes), end="")


def _generate(args: argparse.Namespace) -> None:
    from rlhf.commands import generate_file

    count = generate_file(args.model, args.prompts, args.output, template=args.template,
                          max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          batch_size=args.batch_size, max_prompt_tokens=args.max_prompt_tokens,
                          seed=args.seed)
    print(f"generated {count} responses -> {args.output}")


def _report(args: argparse.Namespace) -> None:
    from rlhf.report import write_report

    print(write_report(args.run_dir))


def _demo(args: argparse.Namespace) -> None:
    from rlhf.demo import run_demo

    # A fresh directory per run: stages refuse to overwrite a finished run's checkpoints.
    output_dir = args.output_dir or time.strftime("runs/demo-%Y%m%d-%H%M%S")
    failures = run_demo(output_dir, quick=args.quick).failures()
    if failures:
        raise UserError("the demo did not show what it should: " + "; ".join(failures))


def _columns(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UserError(f"--column '{pair}' is not of the form canonical=name, "
                            "e.g. --column chosen=good")
        key, value = pair.split("=", 1)
        mapping[key] = value
    return mapping


class _Parser(argparse.ArgumentParser):
    """argparse with usage mistakes on one line, like every other error, and exit status 2.

    argparse's own `error` prints the whole usage block first; the one line names the mistake
    and points at --help instead.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _stage_name(text: str) -> str:
    """A stage as `rlhf config` takes it: critic-free (as in train-critic-free) or critic_free."""
    return text.replace("-", "_")


def _positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a size or a count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive whole number (>= 1)")
    return value


def _non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0 (a temperature)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlhf", description=(
        "Reinforcement Learning from Human Feedback on Hugging Face models."),
        epilog="Every config key of a training stage, with its default: rlhf config "
        "{sft,reward,ppo,critic_free,dpo}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    _add_training(commands, "sft", _train_sft, "supervised fine-tuning of a causal LM on "
                  "(prompt, response) pairs, loss on the response only")
    _add_training(commands, "reward", _train_reward, "train a reward model on preference pairs")
    _add_eval_reward(commands)
    _add_training(commands, "ppo", _train_ppo, "fine-tune a policy against a reward with PPO")
    _add_training(commands, "critic_free", _train_critic_free, "fine-tune a policy against a "
                  "reward without a value model: RLOO, GRPO (Dr. GRPO, DAPO, GSPO options), "
                  "REINFORCE++ or REINFORCE")
    _add_training(commands, "dpo", _train_dpo, "optimise a policy directly on preference pairs "
                  "against a fixed reference: DPO, robust DPO, IPO or SimPO")
    _add_generate(commands)
    _add_demo(commands)
    _add_score(commands)
    _add_report(commands)
    _add_config(commands)
    _add_plan(commands)
    return parser


def _add_eval_reward(commands) -> None:
    evaluate = commands.add_parser("eval-reward", help="accuracy of a reward model on pairs")
    evaluate.add_argument("--reward-model", required=True, help="folder saved by train-reward")
    evaluate.add_argument("--data", required=True, help="preference data: file, folder or hub name")
    evaluate.add_argument("--name", default=None, help="hub dataset configuration name")
    evaluate.add_argument("--split", default=None,
                          help="split to evaluate (default: test if the data has one, else all)")
    evaluate.add_argument("--column", action="append", metavar="CANONICAL=NAME",
                          help="column mapping, e.g. --column chosen=good (repeatable)")
    evaluate.add_argument("--max-samples", type=_positive_int, default=None)
    _add_reading(evaluate)
    evaluate.set_defaults(handler=_eval_reward)


def _add_generate(commands) -> None:
    generate = commands.add_parser("generate", help="sample responses from a policy")
    generate.add_argument("--model", required=True, help="policy folder or hub name")
    generate.add_argument("--prompts", required=True, help="prompt file, folder or hub name")
    generate.add_argument("--output", required=True, help="JSONL of prompt and response")
    generate.add_argument("--template", default="prompt", choices=["dolly", "prompt", "chat"])
    generate.add_argument("--max-new-tokens", type=_positive_int, default=32)
    generate.add_argument("--temperature", type=_non_negative_float, default=0.7,
                          help="sampling temperature; 0 for greedy decoding")
    generate.add_argument("--max-prompt-tokens", type=_positive_int, default=256)
    generate.add_argument("--batch-size", type=_positive_int, default=16)
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(handler=_generate)


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="the whole pipeline offline on tiny models")
    demo.add_argument("--output-dir", default=None,
                      help="run directory of the demo (default: runs/demo-<date>-<time>)")
    demo.add_argument("--quick", action="store_true", help="smaller sizes (the CI test)")
    demo.set_defaults(handler=_demo)


def _add_score(commands) -> None:
    score = commands.add_parser("score", help="score (prompt, response) text with a reward model")
    score.add_argument("--reward-model", required=True, help="reward model folder or hub name")
    score.add_argument("--prompt", default=None)
    score.add_argument("--response", default=None)
    score.add_argument("--input", default=None, help="JSONL with prompt and response fields")
    score.add_argument("--output", default=None, help="JSONL written with a score field added")
    _add_reading(score)
    score.set_defaults(handler=_score)


def _add_report(commands) -> None:
    report = commands.add_parser("report", help="write a self-contained report.html of a run")
    report.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory, or a pipeline folder of stage runs (demo)")
    report.set_defaults(handler=_report)


def _add_config(commands) -> None:
    config = commands.add_parser(
        "config", help="list a stage's config keys with defaults and descriptions",
        description="Print a training stage's config as YAML, each key under a comment saying\n"
        "what it does; required keys show as ???. With --config FILE and/or key=value\n"
        "overrides, print the config a run would use, checked the way the run checks it.",
        epilog="e.g.  rlhf config ppo\n      rlhf config ppo --config configs/ppo/tiny.yaml "
        "train.batch_size=8", formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_argument("stage", choices=list(STAGE_COMMANDS), type=_stage_name,
                        help="the training stage")
    _add_config_source(config, "STAGE")
    config.set_defaults(handler=_config, loads_models=False)


def _add_plan(commands) -> None:
    plan = commands.add_parser(
        "plan", help="predict a run's peak memory per model and what makes it fit a budget",
        description="Predict a run's peak memory per model and in total from its config, "
        "without loading weights; with --memory, the options that make it fit.",
        epilog="e.g.  rlhf plan --config configs/ppo/tiny.yaml --memory 24GB")
    _add_config_source(plan, "STAGE")
    plan.add_argument("--stage", choices=list(STAGE_COMMANDS), type=_stage_name,
                      help="the training stage (default: found from the config's keys)")
    plan.add_argument("--memory", metavar="SIZE", help="memory per process, e.g. 24GB or 80GiB")
    plan.add_argument("--device", choices=["cpu", "cuda"],
                      help="where the run trains (default: this machine's GPU if it has one)")
    plan.add_argument("--processes", type=_positive_int, default=1, help="processes of the run")
    plan.set_defaults(handler=_plan)


STAGE_COMMANDS = {"sft": "train-sft", "reward": "train-reward", "ppo": "train-ppo",
                  "critic_free": "train-critic-free", "dpo": "train-dpo"}


def _add_training(commands, stage: str, handler, summary: str) -> None:
    """A `train-<stage>` subcommand; its help points at `rlhf config <stage>` for the keys."""
    parser = commands.add_parser(
        STAGE_COMMANDS[stage], help=summary, description=summary[0].upper() + summary[1:] + ".",
        epilog=f"Every config key with its default and what it does: rlhf config {stage}\n"
        f"The config a run will use:  rlhf config {stage} --config FILE [key=value ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_source(parser, stage)
    parser.set_defaults(handler=handler)


def _add_config_source(parser: argparse.ArgumentParser, stage: str) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"YAML config file (examples in configs/{stage}/); optional when "
                        "key=value overrides set every required key")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="set a config key, e.g. train.epochs=2 (a nested one with dots)")


def _add_reading(parser: argparse.ArgumentParser) -> None:
    """How a reward model reads text: the EOS convention, the batch size and length limit."""
    parser.add_argument("--append-eos", choices=["auto", "yes", "no"], default="auto",
                        help="end each input with EOS; auto: as the model was trained (a "
                        "train-reward model records it; others get TRL RewardTrainer's rule)")
    _add_batching(parser)


def _add_batching(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=_positive_int, default=32)
    parser.add_argument("--max-length", type=_positive_int, default=None,
                        help="token limit of the reward model's input, the prompt cut first "
                        "(default: the model's own limit, at most 512)")


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
