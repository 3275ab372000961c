"""The bad-input catalogue: every mistake a user can make with a data file, a config, a model
folder or a command-line argument ends the same way.

Each case builds its bad input under tmp_path and runs the CLI in-process. It must exit with
status 2 and write exactly one line to stderr: `rlhf ...`, no traceback, naming what is wrong
(the file, the line, the key) so the user can fix it. Training commands point run.output_dir
at a run directory that already holds a complete checkpoint (with run.resume=true, so the
error is the case's own and not "already has checkpoints"), and nothing in it may change: a
bad input must never damage earlier work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlhf.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"train-reward": ROOT / "configs" / "reward" / "tiny.yaml",
           "train-ppo": ROOT / "configs" / "ppo" / "tiny.yaml",
           "train-sft": ROOT / "configs" / "sft" / "tiny.yaml"}
HUGE = "many words " * 100_000  # 1.1 million characters: over the loaders' per-field limit

PAIR = {"prompt": "The harbour was quiet.", "chosen": "Gulls wheeled over the silver water.",
        "rejected": "There were birds."}
SFT_ROW = {"prompt": "The harbour was quiet.", "response": "Gulls wheeled over the water."}
PROMPT_ROW = {"prompt": "The harbour was quiet."}
SCORE_ROW = {"prompt": "The harbour was quiet.", "response": "Gulls wheeled over the water."}


# -- models (built once per module) -----------------------------------------------------------


@dataclass(frozen=True)
class Models:
    """Tiny model folders, good and bad, saved with save_pretrained."""

    reward: Path
    """A one-output RoBERTa-style classifier with its tokenizer: a valid reward model."""
    causal_lm: Path
    """A GPT-2-style causal LM with its tokenizer: a valid policy, not a reward model."""
    classifier: Path
    """A GPT-2-style sequence classifier with its tokenizer: not a policy."""
    two_labels: Path
    """A classifier with two outputs: not a reward model."""
    no_tokenizer: Path
    """A reward model's weights and config without tokenizer files."""
    corrupt: Path
    """A reward model whose model.safetensors is garbage."""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Models:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlhf.builtin_models import build_builtin

    root = tmp_path_factory.mktemp("models")

    def save(name: str, builtin: str, model_class, tokenizer: bool = True, **config) -> Path:
        model, tok = build_builtin(builtin, model_class, seed=0, **config)
        model.save_pretrained(root / name)
        if tokenizer:
            tok.save_pretrained(root / name)
        return root / name

    classifier = AutoModelForSequenceClassification
    reward = save("reward", "builtin:tiny-roberta", classifier, num_labels=1)
    corrupt = save("corrupt", "builtin:tiny-roberta", classifier, num_labels=1)
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage, not safetensors" * 64)
    return Models(
        reward=reward,
        causal_lm=save("causal-lm", "builtin:tiny-gpt2", AutoModelForCausalLM),
        classifier=save("classifier", "builtin:tiny-gpt2", classifier, num_labels=1),
        two_labels=save("two-labels", "builtin:tiny-roberta", classifier, num_labels=2),
        no_tokenizer=save("no-tokenizer", "builtin:tiny-roberta", classifier, tokenizer=False,
                          num_labels=1),
        corrupt=corrupt)


# -- building bad inputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """What a case builds in: its tmp_path, the prepared run directory and the model folders."""

    tmp: Path
    run: Path
    models: Models

    def jsonl(self, name: str, rows: list[dict]) -> Path:
        path = self.tmp / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    def text(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return path

    def raw(self, name: str, data: bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        return path

    def train(self, command: str, *overrides: str, config: Path | None = None) -> list[str]:
        """A training command on its tiny config, resuming the prepared run directory."""
        return [command, "--config", str(config or CONFIGS[command]),
                f"run.output_dir={self.run}", "run.resume=true", "run.progress=false",
                *overrides]


def prepare_run_dir(run: Path) -> None:
    """A run directory as an earlier run left it: config, metrics and a complete checkpoint."""
    checkpoint = run / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(
        json.dumps({"step": 2, "epoch": 0, "batch_in_epoch": 2, "extra": {}}))
    (checkpoint / "model.safetensors").write_bytes(b"weights of step 2")
    (checkpoint / "optimizer-model.pt").write_bytes(b"optimizer of step 2")
    (run / "config.yaml").write_text("# the earlier run's config\nrun:\n  seed: 0\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "train/loss": 0.7}\n'
                                       '{"step": 2, "train/loss": 0.6}\n')


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path, with its bytes (folders show up via files)."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _pairs_csv(ws: Workspace) -> Path:
    return ws.text("prefs.csv", "prompt,chosen,rejected\nThe harbour.,Gulls wheeled.,Birds.\n")


def _split_folder(ws: Workspace, rows: list[dict]) -> Path:
    """A data folder with train and test split files (datasets names splits by file name)."""
    folder = ws.tmp / "splits"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    return folder


# -- the catalogue ----------------------------------------------------------------------------
# Each case: (build(ws) -> argv, fragments the one stderr line must contain).

CASES = [
    # Preference data (train-reward) -----------------------------------------------------------
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.text(
        "prefs.jsonl", json.dumps(PAIR) + "\n" + json.dumps(PAIR) + "\n{\"prompt\": oops}\n"))),
        ["prefs.jsonl:3", "malformed JSON"], id="reward-malformed-jsonl"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.jsonl(
        "prefs.jsonl", [{"question": "q", "good": "a", "bad": "b"}] * 4))),
        ["prefs.jsonl", "'chosen'", "'good'", "data.columns.chosen="], id="reward-wrong-columns"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.text(
        "prefs.jsonl", ""))), ["prefs.jsonl", "empty"], id="reward-empty-file"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.raw(
        "prefs.jsonl", json.dumps(PAIR).encode() + b'\n{"prompt": "caf\xe9"}\n'))),
        ["prefs.jsonl:2", "UTF-8"], id="reward-not-utf8"),
    # An empty response is a legitimate (bad) answer and is kept (test_empty_responses.py); a
    # missing one is the user's to fix.
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.jsonl(
        "prefs.jsonl", [PAIR, PAIR | {"chosen": None}] * 2))),
        ["prefs.jsonl", "line 2", "'chosen'", "missing (null)"], id="reward-null-chosen"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.jsonl(
        "prefs.jsonl", [PAIR, PAIR | {"chosen": HUGE}]))),
        ["prefs.jsonl", "line 2", "'chosen'", "1,000,000"], id="reward-huge-field"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.jsonl(
        "prefs.jsonl", [PAIR] * 4)), "data.split=validation"),
        ["prefs.jsonl", "'validation'", "'train'", "data.split"], id="reward-missing-split"),
    pytest.param(lambda ws: ws.train("train-reward", f"data.path={_split_folder(ws, [PAIR])}",
                                     "data.test_split=validation"),
        ["'validation'", "'test'", "data.test_split"], id="reward-missing-test-split"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.raw(
        "prefs.parquet", b"PAR1 this is not a parquet file at all"))),
        ["prefs.parquet", "Parquet"], id="reward-corrupt-parquet"),
    pytest.param(lambda ws: ws.train("train-reward", f"data.path={ws.tmp / 'nope.jsonl'}"),
        ["nope.jsonl", "not found"], id="reward-data-path-missing"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=" + str(ws.jsonl(
        "prefs.jsonl", [PAIR, PAIR | {"rejected": 3}]))),
        ["prefs.jsonl", "line 2", "'rejected'", "not text"], id="reward-number-not-text"),
    pytest.param(lambda ws: ws.train("train-reward", f"data.path={_pairs_csv(ws)}",
                                     "data.columns.chosen=good"),
        ["prefs.csv", "'chosen'", "data.columns.chosen="], id="reward-csv-mapped-column-missing"),
    # Prompt data (train-ppo) ------------------------------------------------------------------
    pytest.param(lambda ws: ws.train("train-ppo", "data.template=dolly", "data.path=" + str(
        ws.text("prompts.csv", "question,answer\nWhy?,Because.\nHow?,Like so.\n"))),
        ["prompts.csv", "instruction", "question", "data.columns.instruction="],
        id="ppo-csv-wrong-columns"),
    pytest.param(lambda ws: ws.train("train-ppo", "data.path=" + str(ws.jsonl(
        "prompts.jsonl", [{"prompt": ""}, {"prompt": "  "}] * 4))),
        ["prompts.jsonl", "no prompts", "empty prompt"], id="ppo-all-prompts-empty"),
    pytest.param(lambda ws: ws.train("train-ppo", "data.path=" + str(ws.text(
        "prompts.json", '[\n  {"prompt": "a"},\n  {"prompt": "b",}\n]\n'))),
        ["prompts.json:3", "malformed JSON"], id="ppo-malformed-json"),
    pytest.param(lambda ws: ws.train("train-ppo", "data.path=" + str(ws.jsonl(
        "prompts.jsonl", [PROMPT_ROW, PROMPT_ROW, {"prompt": HUGE}]))),
        ["prompts.jsonl", "line 3", "'prompt'", "1,000,000"], id="ppo-huge-prompt"),
    pytest.param(lambda ws: ws.train("train-ppo", "data.split=validation", "data.path=" + str(
        ws.jsonl("prompts.jsonl", [PROMPT_ROW] * 4))),
        ["prompts.jsonl", "'validation'", "data.split"], id="ppo-missing-split"),
    pytest.param(lambda ws: ws.train("train-ppo", "data.path=" + str(ws.raw(
        "prompts.jsonl.gz", b"not gzip at all"))), ["prompts.jsonl.gz", "gzip"],
        id="ppo-bad-gzip"),
    # SFT data (train-sft) ---------------------------------------------------------------------
    pytest.param(lambda ws: ws.train("train-sft", "data.path=" + str(ws.jsonl(
        "sft.jsonl", [{"question": "q", "answer": "a"}] * 4))),
        ["sft.jsonl", "response", "'question'", "data.columns.response="],
        id="sft-wrong-columns"),
    # Empty responses are dropped and counted; only a file with nothing else stops the run.
    pytest.param(lambda ws: ws.train("train-sft", "data.path=" + str(ws.jsonl(
        "sft.jsonl", [SFT_ROW | {"response": ""}] * 4))),
        ["sft.jsonl", "no usable SFT examples", "4 with an empty response"],
        id="sft-only-empty-responses"),
    pytest.param(lambda ws: ws.train("train-sft", "data.path=" + str(ws.jsonl(
        "sft.jsonl", [SFT_ROW, SFT_ROW | {"response": None}] * 2))),
        ["sft.jsonl", "line 2", "'response'", "missing (null)"], id="sft-null-response"),
    pytest.param(lambda ws: ws.train("train-sft", "data.path=" + str(ws.raw(
        "sft.csv", b"prompt,response\nThe harbour.,Gulls.\nThe caf\xe9.,Birds.\n"))),
        ["sft.csv:3", "UTF-8"], id="sft-csv-not-utf8"),
    pytest.param(lambda ws: ws.train("train-sft", f"data.path={_split_folder(ws, [SFT_ROW])}",
                                     "data.test_split=validation"),
        ["'validation'", "data.test_split"], id="sft-missing-test-split"),
    pytest.param(lambda ws: ws.train("train-sft", "data.path=" + str(ws.text("sft.json", "[]"))),
        ["sft.json", "empty"], id="sft-empty-json-list"),
    pytest.param(lambda ws: ws.train("train-sft", "data.path=" + str(ws.jsonl(
        "sft.jsonl", [SFT_ROW, SFT_ROW | {"prompt": HUGE}]))),
        ["sft.jsonl", "line 2", "'prompt'", "1,000,000"], id="sft-huge-prompt"),
    # rlhf score / eval-reward data ------------------------------------------------------------
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--input", str(
        ws.text("in.jsonl", json.dumps(SCORE_ROW) + "\nnot json\n")), "--output",
        str(ws.tmp / "out.jsonl")], ["in.jsonl:2", "malformed JSON"], id="score-malformed-jsonl"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--input", str(
        ws.jsonl("in.jsonl", [SCORE_ROW, {"prompt": "p", "answer": "a"}])), "--output",
        str(ws.tmp / "out.jsonl")], ["in.jsonl", "line 2", "'response'", "'answer'"],
        id="score-missing-field"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--input", str(
        ws.jsonl("in.jsonl", [SCORE_ROW | {"response": HUGE}])), "--output",
        str(ws.tmp / "out.jsonl")], ["in.jsonl", "line 1", "'response'", "1,000,000"],
        id="score-huge-field"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.reward), "--data",
                             str(ws.jsonl("pairs.jsonl", [{"good": "a", "bad": "b"}] * 3))],
        ["pairs.jsonl", "'chosen'", "'good'", "--column chosen="], id="eval-wrong-columns"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.reward), "--data",
                             str(ws.jsonl("pairs.jsonl", [PAIR] * 3)), "--split", "validation"],
        ["pairs.jsonl", "'validation'", "--split"], id="eval-missing-split"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.reward), "--data",
                             str(ws.tmp / "missing.jsonl")], ["missing.jsonl", "not found"],
        id="eval-data-missing"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.reward), "--data",
                             str(ws.jsonl("pairs.jsonl", [PAIR] * 3)), "--column", "chosen"],
        ["--column", "'chosen'", "canonical=name"], id="eval-malformed-column"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.reward), "--data",
                             str(ws.jsonl("pairs.jsonl", [PAIR] * 3)), "--column", "best_one=x"],
        ["best_one", "chosen"], id="eval-unknown-column-name"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.reward), "--data",
                             str(ws.jsonl("pairs.jsonl", [PAIR | {"rejected": PAIR["chosen"]}]))],
        ["pairs.jsonl", "no usable", "identical"], id="eval-no-usable-rows"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--input",
                             str(ws.text("in.jsonl", "\n\n")), "--output", str(ws.tmp / "o.jsonl")],
        ["in.jsonl", "empty"], id="score-input-blank-lines-only"),
    # Configs ----------------------------------------------------------------------------------
    pytest.param(lambda ws: ws.train("train-reward", "train.learning_rat=1e-3"),
        ["train.learning_rat", "did you mean 'train.learning_rate'"], id="config-unknown-override"),
    pytest.param(lambda ws: ws.train("train-reward", config=ws.text(
        "bad.yaml", CONFIGS["train-reward"].read_text() + "trian:\n  epochs: 1\n")),
        ["bad.yaml", "'trian'", "did you mean 'train'"], id="config-unknown-key-in-file"),
    pytest.param(lambda ws: ws.train("train-reward", "train.batch_size=abc"),
        ["train.batch_size", "abc"], id="config-wrong-type"),
    pytest.param(lambda ws: ws.train("train-reward", "train.micro_batch_size=5"),
        ["train.batch_size", "16", "micro_batch_size"], id="config-batch-not-divisible"),
    pytest.param(lambda ws: ws.train("train-ppo", "ppo.num_minibatches=5"),
        ["ppo.num_minibatches", "5", "32"], id="config-ppo-minibatches-not-dividing"),
    pytest.param(lambda ws: ws.train("train-ppo", "train.micro_batch_size=5"),
        ["train.micro_batch_size", "5", "16"], id="config-ppo-micro-not-dividing"),
    pytest.param(lambda ws: ws.train("train-reward", config=ws.tmp / "missing.yaml"),
        ["missing.yaml", "not found"], id="config-file-missing"),
    pytest.param(lambda ws: ws.train("train-reward", config=ws.text(
        "broken.yaml", "run:\n  seed: 0\ntrain: [unclosed\n  epochs: 1\n")),
        ["broken.yaml", "line"], id="config-yaml-syntax-error"),
    pytest.param(lambda ws: ws.train("train-reward", "train.scheduler=foo"),
        ["train.scheduler", "'foo'", "linear"], id="config-bad-enum"),
    pytest.param(lambda ws: ws.train("train-reward", "train.learning_rate=-1"),
        ["train.learning_rate", "> 0"], id="config-negative-learning-rate"),
    pytest.param(lambda ws: ws.train("train-reward", "run.keep_last=0"),
        ["run.keep_last", ">= 1"], id="config-keep-last-zero"),
    pytest.param(lambda ws: ws.train("train-sft", "train.batch_size=0"),
        ["train.batch_size", ">= 1"], id="config-batch-size-zero"),
    pytest.param(lambda ws: ws.train("train-ppo", "generate.temperature=0"),
        ["generate.temperature", "> 0"], id="config-ppo-zero-temperature"),
    pytest.param(lambda ws: ws.train("train-reward", "train.epochs"),
        ["train.epochs", "key=value"], id="config-override-without-value"),
    pytest.param(lambda ws: ws.train("train-reward", "data.path=null"),
        ["data.path"], id="config-required-key-null"),
    # Models -----------------------------------------------------------------------------------
    pytest.param(lambda ws: ws.train("train-reward", f"model.name_or_path={ws.tmp / 'no-model'}"),
        ["no-model", "not found", "model"], id="model-folder-missing"),
    pytest.param(lambda ws: ws.train("train-reward", "model.name_or_path=runs/no-such/model"),
        ["runs/no-such/model", "not found"], id="model-relative-path-missing"),
    pytest.param(lambda ws: ws.train("train-ppo", "model.reward=rlhf.reward.rules:no_such"),
        ["rlhf.reward.rules", "no_such", "model.reward"], id="ppo-reward-function-missing"),
    pytest.param(lambda ws: ws.train("train-sft", f"model.name_or_path={ws.tmp / 'no-model'}"),
        ["no-model", "not found"], id="sft-model-folder-missing"),
    pytest.param(lambda ws: ws.train("train-reward",
                                     f"model.name_or_path={ws.models.no_tokenizer}"),
        ["no-tokenizer", "tokenizer"], id="model-without-tokenizer"),
    pytest.param(lambda ws: ws.train("train-reward", f"model.name_or_path={ws.models.two_labels}"),
        ["two-labels", "2 outputs", "num_labels=1"], id="model-two-labels"),
    pytest.param(lambda ws: ws.train("train-reward", f"model.name_or_path={ws.models.corrupt}"),
        ["corrupt", "weights"], id="model-corrupt-weights"),
    pytest.param(lambda ws: ws.train("train-ppo", f"model.reward={ws.models.causal_lm}"),
        ["causal-lm", "not a reward model", "GPT2LMHeadModel"], id="ppo-causal-lm-as-reward"),
    pytest.param(lambda ws: ws.train("train-ppo", f"model.policy={ws.models.classifier}"),
        ["classifier", "causal language model"], id="ppo-classifier-as-policy"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.causal_lm), "--prompt", "p",
                             "--response", "r"], ["causal-lm", "not a reward model"],
        id="score-causal-lm-as-reward"),
    pytest.param(lambda ws: ["eval-reward", "--reward-model", str(ws.models.two_labels), "--data",
                             str(ws.jsonl("pairs.jsonl", [PAIR] * 3))],
        ["two-labels", "2 outputs"], id="eval-two-labels"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.corrupt), "--prompt", "p",
                             "--response", "r"], ["corrupt", "weights"],
        id="score-corrupt-weights"),
    pytest.param(lambda ws: ["generate", "--model", str(ws.models.classifier), "--prompts", str(
        ws.jsonl("prompts.jsonl", [PROMPT_ROW])), "--output", str(ws.tmp / "out.jsonl")],
        ["classifier", "causal language model"], id="generate-classifier-as-policy"),
    # Command-line arguments -------------------------------------------------------------------
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward)],
        ["--prompt", "--input"], id="score-neither-prompt-nor-input"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--input", str(
        ws.jsonl("in.jsonl", [SCORE_ROW]))], ["--input", "--output"],
        id="score-input-without-output"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--prompt", "p",
                             "--response", "r", "--batch-size", "-4"],
        ["--batch-size", "-4", "positive"], id="score-negative-batch-size"),
    pytest.param(lambda ws: ["generate", "--model", str(ws.models.causal_lm), "--prompts", str(
        ws.jsonl("prompts.jsonl", [PROMPT_ROW])), "--output", str(ws.tmp / "out.jsonl"),
        "--max-new-tokens", "-1"], ["--max-new-tokens", "-1", "positive"],
        id="generate-negative-max-new-tokens"),
    pytest.param(lambda ws: ["generate", "--model", str(ws.models.causal_lm), "--prompts", str(
        ws.jsonl("prompts.jsonl", [PROMPT_ROW])), "--output", str(ws.tmp / "out.jsonl"),
        "--temperature", "-0.5"], ["--temperature", "-0.5", ">= 0"],
        id="generate-negative-temperature"),
    pytest.param(lambda ws: ["generate", "--model", str(ws.models.causal_lm), "--prompts",
                             str(ws.tmp / "prompts.jsonl"), "--output", str(ws.tmp / "o.jsonl")],
        ["prompts.jsonl", "not found"], id="generate-prompts-missing"),
    pytest.param(lambda ws: ["report", str(ws.tmp / "nowhere")], ["nowhere", "does not exist"],
        id="report-missing-folder"),
    pytest.param(lambda ws: ["report", str((ws.tmp / "empty").mkdir() or ws.tmp / "empty")],
        ["empty", "metrics.jsonl"], id="report-no-run"),
    pytest.param(lambda ws: ["train-kto", "--config", "x.yaml"],
        ["invalid choice", "'train-kto'", "--help"], id="cli-unknown-subcommand"),
    # --config is optional (overrides may give every required key); what is missing is named.
    pytest.param(lambda ws: ["train-reward"], ["data.path", "required", "--config"],
        id="cli-missing-required-key"),
    pytest.param(lambda ws: [], ["COMMAND", "required"], id="cli-no-subcommand"),
    pytest.param(lambda ws: ["score", "--reward-model", str(ws.models.reward), "--bogus"],
        ["--bogus", "unrecognized"], id="cli-unknown-option"),
]


@pytest.mark.parametrize(("build", "expected"), CASES)
def test_bad_input_exits_2_with_one_line(build, expected, models: Models, tmp_path: Path,
                                         capfd) -> None:
    run = tmp_path / "run"
    prepare_run_dir(run)
    argv = build(Workspace(tmp=tmp_path, run=run, models=models))
    before = snapshot(tmp_path)
    capfd.readouterr()

    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse mistakes exit from inside parse_args
        status = exit_.code

    err = capfd.readouterr().err
    lines = err.splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("rlhf") and "Traceback" not in line, line
    for fragment in expected:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    after = snapshot(tmp_path)
    assert after.keys() == before.keys(), line
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"files changed: {changed}"
