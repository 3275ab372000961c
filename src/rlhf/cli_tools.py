"""The `rlhf` subcommands that are not training stages: eval-reward, generate, label-pairs,
score, report, demo, config and plan. Each handler imports what it needs when it runs (see `rlhf.cli`)."""

from __future__ import annotations

import argparse
import json
import time

from rlhf.cli_arguments import (
    STAGE_COMMANDS,
    add_config_source,
    add_reading,
    columns,
    non_negative_float,
    positive_int,
    stage_name,
)
from rlhf.errors import UserError


def add_tools(commands) -> None:
    """Every non-training subcommand, in the order `rlhf --help` lists them."""
    add_eval_reward(commands)
    add_generate(commands)
    add_label_pairs(commands)
    add_demo(commands)
    add_score(commands)
    add_report(commands)
    add_config(commands)
    add_plan(commands)


def _eval_reward(args: argparse.Namespace) -> None:
    from rlhf.commands import evaluate_reward_model
    from rlhf.reward.reading import APPEND_EOS_CHOICES

    result = evaluate_reward_model(
        args.reward_model, args.data, name=args.name, split=args.split,
        columns=columns(args.column), max_samples=args.max_samples,
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


def _config(args: argparse.Namespace) -> None:
    from rlhf.config.docs import describe_stage

    print(describe_stage(args.stage, args.config, args.overrides), end="")


def _plan(args: argparse.Namespace) -> None:
    from rlhf.planning import plan_report

    print(plan_report(args.config, args.overrides, stage=args.stage, memory=args.memory,
                      device=args.device, num_processes=args.processes), end="")


def _generate(args: argparse.Namespace) -> None:
    from rlhf.commands import generate_file
    from rlhf.reward.reading import APPEND_EOS_CHOICES

    summary = generate_file(
        args.model, args.prompts, args.output, template=args.template,
        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        batch_size=args.batch_size, max_prompt_tokens=args.max_prompt_tokens, seed=args.seed,
        best_of=args.best_of, reward_model=args.reward_model,
        keep_candidates=args.keep_candidates, reward_max_length=args.reward_max_length,
        append_eos=APPEND_EOS_CHOICES[args.append_eos])
    print("\n".join(summary.lines(args.output)))


def _label_pairs(args: argparse.Namespace) -> None:
    from rlhf.rl.gold_labels import label_pairs_file

    counts = label_pairs_file(
        args.policy, args.prompts, args.output, reward=args.reward, pairs=args.pairs,
        temperature=args.temperature, bt_temperature=args.bt_temperature,
        max_new_tokens=args.max_new_tokens, max_prompt_tokens=args.max_prompt_tokens,
        template=args.template, batch_size=args.batch_size, seed=args.seed)
    print(f"wrote {counts['pairs']} gold-labelled pairs -> {args.output}")
    print(f"skipped {counts['identical_skipped']} pairs with identical answers "
          f"({counts['drawn']} drawn)")
    print(f"labels against the gold order: {counts['flipped']} of {counts['pairs']} "
          f"({counts['flip_rate']:.1%}; {counts['ties']} gold ties)")
    if counts["pairs"] < counts["requested"]:
        print(f"warning: only {counts['pairs']} of the {counts['requested']} pairs asked for: "
              "too many identical answers; raise --temperature or --max-new-tokens")


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


def add_eval_reward(commands) -> None:
    evaluate = commands.add_parser("eval-reward", help="accuracy of a reward model on pairs")
    evaluate.add_argument("--reward-model", required=True, help="folder saved by train-reward")
    evaluate.add_argument("--data", required=True, help="preference data: file, folder or hub name")
    evaluate.add_argument("--name", default=None, help="hub dataset configuration name")
    evaluate.add_argument("--split", default=None,
                          help="split to evaluate (default: test if the data has one, else all)")
    evaluate.add_argument("--column", action="append", metavar="CANONICAL=NAME",
                          help="column mapping, e.g. --column chosen=good (repeatable)")
    evaluate.add_argument("--max-samples", type=positive_int, default=None)
    add_reading(evaluate)
    evaluate.set_defaults(handler=_eval_reward)


def add_generate(commands) -> None:
    generate = commands.add_parser("generate", help="sample responses from a policy")
    generate.add_argument("--model", required=True, help="policy folder or hub name")
    generate.add_argument("--prompts", required=True, help="prompt file, folder or hub name")
    generate.add_argument("--output", required=True, help="JSONL of prompt and response")
    generate.add_argument("--template", default="prompt", choices=["dolly", "prompt", "chat"])
    generate.add_argument("--max-new-tokens", type=positive_int, default=32)
    generate.add_argument("--temperature", type=non_negative_float, default=0.7,
                          help="sampling temperature; 0 for greedy decoding")
    generate.add_argument("--max-prompt-tokens", type=positive_int, default=256)
    generate.add_argument("--batch-size", type=positive_int, default=16,
                          help="sequences sampled (and scored) together")
    generate.add_argument("--seed", type=int, default=0)
    best = generate.add_argument_group(
        "best-of-n", "sample N candidates per prompt and keep the one the reward scores highest "
        "(docs/best_of_n.md)")
    best.add_argument("--best-of", type=positive_int, default=1, metavar="N",
                      help="candidates per prompt (N > 1 needs --reward-model)")
    best.add_argument("--reward-model", default=None, metavar="R",
                      help="reward model folder or hub name, or a function module:function "
                      "(as model.reward); with --best-of 1 it scores the plain samples")
    best.add_argument("--keep-candidates", action="store_true",
                      help="also write every candidate with its score")
    best.add_argument("--append-eos", choices=["auto", "yes", "no"], default="auto",
                      help="end each reward-model input with EOS; auto: as the model was "
                      "trained (as in rlhf score)")
    best.add_argument("--reward-max-length", type=positive_int, default=None,
                      help="token limit of the reward model's input, the prompt cut first "
                      "(default: the model's own limit, at most 512)")
    generate.set_defaults(handler=_generate)


def add_label_pairs(commands) -> None:
    label = commands.add_parser(
        "label-pairs", help="sample answer pairs from a policy and label them with a gold reward",
        description="Sample two answers per prompt from a policy, score both with a gold "
        "reward and draw a noisy Bradley-Terry label: a preference file for train-reward "
        "(Gao et al. 2022's gold-labelled pairs; docs/gold.md).",
        epilog="e.g.  rlhf label-pairs --policy runs/sft/model --prompts builtin:descriptiveness"
        " --output pairs.jsonl --pairs 1000")
    label.add_argument("--policy", required=True, help="policy folder or hub name (the SFT "
                       "model RL starts from)")
    label.add_argument("--prompts", required=True, help="prompt file, folder or hub name, or "
                       "builtin:descriptiveness")
    label.add_argument("--output", required=True, help="JSONL of prompt, chosen, rejected, "
                       "chosen_gold, rejected_gold, p_chosen")
    label.add_argument("--reward", default="rlhf.reward.gold:gold_descriptiveness",
                       help="the gold: a module:function or a reward model, as model.reward")
    label.add_argument("--pairs", type=positive_int, default=1000,
                       help="labelled pairs to write (prompts are cycled if fewer)")
    label.add_argument("--bt-temperature", type=non_negative_float, default=0.1,
                       help="Bradley-Terry label noise, > 0: P(a wins) = sigmoid((gold_a - "
                       "gold_b) / T); 0.1 flips 10-20%% of labels on SFT-like answers")
    label.add_argument("--temperature", type=non_negative_float, default=1.0,
                       help="sampling temperature, > 0 (1.0: the policy's own distribution)")
    label.add_argument("--max-new-tokens", type=positive_int, default=48)
    label.add_argument("--max-prompt-tokens", type=positive_int, default=256)
    label.add_argument("--template", default="prompt", choices=["dolly", "prompt", "chat"])
    label.add_argument("--batch-size", type=positive_int, default=16,
                       help="pairs sampled together (twice as many sequences)")
    label.add_argument("--seed", type=int, default=0)
    label.set_defaults(handler=_label_pairs)


def add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="the whole pipeline offline on tiny models")
    demo.add_argument("--output-dir", default=None,
                      help="run directory of the demo (default: runs/demo-<date>-<time>)")
    demo.add_argument("--quick", action="store_true", help="smaller sizes (the CI test)")
    demo.set_defaults(handler=_demo)


def add_score(commands) -> None:
    score = commands.add_parser("score", help="score (prompt, response) text with a reward model")
    score.add_argument("--reward-model", required=True, help="reward model folder or hub name")
    score.add_argument("--prompt", default=None)
    score.add_argument("--response", default=None)
    score.add_argument("--input", default=None, help="JSONL with prompt and response fields")
    score.add_argument("--output", default=None, help="JSONL written with a score field added")
    add_reading(score)
    score.set_defaults(handler=_score)


def add_report(commands) -> None:
    report = commands.add_parser("report", help="write a self-contained report.html of a run")
    report.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory, or a pipeline folder of stage runs (demo)")
    report.set_defaults(handler=_report)


def add_config(commands) -> None:
    config = commands.add_parser(
        "config", help="list a stage's config keys with defaults and descriptions",
        description="Print a training stage's config as YAML, each key under a comment saying\n"
        "what it does; required keys show as ???. With --config FILE and/or key=value\n"
        "overrides, print the config a run would use, checked the way the run checks it.",
        epilog="e.g.  rlhf config ppo\n      rlhf config ppo --config configs/ppo/tiny.yaml "
        "train.batch_size=8", formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_argument("stage", choices=list(STAGE_COMMANDS), type=stage_name,
                        help="the training stage")
    add_config_source(config, "STAGE")
    config.set_defaults(handler=_config, loads_models=False)


def add_plan(commands) -> None:
    plan = commands.add_parser(
        "plan", help="predict a run's peak memory per model and what makes it fit a budget",
        description="Predict a run's peak memory per model and in total from its config, "
        "without loading weights; with --memory, the options that make it fit.",
        epilog="e.g.  rlhf plan --config configs/ppo/tiny.yaml --memory 24GB")
    add_config_source(plan, "STAGE")
    plan.add_argument("--stage", choices=list(STAGE_COMMANDS), type=stage_name,
                      help="the training stage (default: found from the config's keys)")
    plan.add_argument("--memory", metavar="SIZE", help="memory per process, e.g. 24GB or 80GiB")
    plan.add_argument("--device", choices=["cpu", "cuda"],
                      help="where the run trains (default: this machine's GPU if it has one)")
    plan.add_argument("--processes", type=positive_int, default=1, help="processes of the run")
    plan.set_defaults(handler=_plan)
