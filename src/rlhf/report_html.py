"""A self-contained HTML report of a run: `rlhf report RUN_DIR` writes `RUN_DIR/report.html`.

The stage of a run (sft, reward, ppo, or a generic run) is read from its files. A directory
without metrics.jsonl whose subfolders are runs (the demo's RUN/sft, RUN/reward, RUN/ppo) is a
pipeline: its report has one section per stage, in pipeline order.

The file needs nothing else to be read: plots are base64 PNGs, the CSS is inline, there is no
JavaScript, and every piece of text that comes from data (samples written by a model, config
values, file names) is HTML-escaped.

Stable element ids: a stage's section has the stage's name (`id="reward"`; a second run of the
same stage gets `reward-2`). Parts of a section (`summary`, `curves`, `scores`, `samples`,
`config`, `metrics`) carry the part's name when the report has one section (`id="samples"`),
and `SECTION-PART` in a pipeline (`id="ppo-samples"`).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import datetime
from html import escape
from itertools import zip_longest
from pathlib import Path

from rlhf.errors import UserError

STAGE_ORDER = ("sft", "reward", "ppo", "run")
STAGE_TITLES = {"sft": "Supervised fine-tuning", "reward": "Reward model",
                "ppo": "PPO", "run": "Run"}

# (metric keys drawn together, title) per stage; any stage also gets its other metrics
# grouped by name when it is an sft or generic run.
REWARD_PANELS = [
    (["train/loss", "eval/loss"], "reward-model loss"),
    (["train/accuracy", "eval/accuracy"], "preference accuracy"),
    (["train/margin_mean", "eval/margin_mean"], "score margin (chosen - rejected)"),
]
SFT_PANELS = [(["train/loss", "eval/loss"], "language-model loss (nats per token)")]
NOT_PLOTTED = {"step", "train/epoch"}
MAX_AUTO_PANELS = 12


@dataclass
class StageRun:
    """One run directory and what it is."""

    stage: str
    path: Path
    records: list[dict]


# -- reading a run ----------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict]:
    """Every JSON object of a JSONL file; a bad line is a UserError naming file and line."""
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number} is not valid JSON ({error.msg}); fix or "
                                "delete that line and run `rlhf report` again") from None
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _read_config(run_dir: Path) -> dict:
    """config.yaml as a dict ({} when missing or unreadable: the report still shows the text)."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _model_architectures(folder: Path) -> list[str]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(a) for a in config.get("architectures") or []]


def detect_stage(run_dir: str | Path, records: list[dict] | None = None) -> str:
    """'ppo', 'reward', 'sft' or 'run' (generic), from the run's config, files and metrics."""
    run_dir = Path(run_dir)
    records = _read_jsonl(run_dir / "metrics.jsonl") if records is None else records
    config = _read_config(run_dir)
    keys = {key for record in records for key in record}
    if ("ppo" in config or (run_dir / "samples.jsonl").is_file()
            or (run_dir / "policy").is_dir() or "objective/score" in keys):
        return "ppo"
    architectures = _model_architectures(run_dir / "model")
    if ((run_dir / "eval_scores.json").is_file()
            or any(a.endswith("ForSequenceClassification") for a in architectures)
            or any(key.endswith(("/margin_mean", "/chosen_mean")) for key in keys)):
        return "reward"
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures):
        return "sft"
    return run_dir.name if run_dir.name in ("sft", "reward", "ppo") else "run"


def find_stage_runs(run_dir: str | Path) -> list[StageRun]:
    """The run itself, or a pipeline's stage runs in pipeline order; UserError when neither."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"run directory {run_dir} does not exist; give the run.output_dir of "
                        "a training run or the output folder of `rlhf demo`")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; give the run directory that holds "
                        "metrics.jsonl")
    if (run_dir / "metrics.jsonl").is_file():
        records = _read_jsonl(run_dir / "metrics.jsonl")
        return [StageRun(detect_stage(run_dir, records), run_dir, records)]
    stages = []
    for child in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if (child / "metrics.jsonl").is_file():
            records = _read_jsonl(child / "metrics.jsonl")
            stages.append(StageRun(detect_stage(child, records), child, records))
    if not stages:
        raise UserError(f"{run_dir} holds no metrics.jsonl and no stage folders with one "
                        "(e.g. RUN/reward/metrics.jsonl); give a directory written by "
                        "`rlhf train-*` or `rlhf demo`")
    return sorted(stages, key=lambda s: (STAGE_ORDER.index(s.stage), s.path.name))


# -- small formatting helpers -----------------------------------------------------------------


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"


def _last(records: list[dict], key: str):
    values = [r[key] for r in records if _is_number(r.get(key))]
    return values[-1] if values else None


def _first(records: list[dict], key: str):
    values = [r[key] for r in records if _is_number(r.get(key))]
    return values[0] if values else None


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _table(rows: list[tuple[str, object]]) -> str:
    """A two-column (name, value) table; rows whose value is None are left out."""
    body = "".join(f"<tr><th scope=\"row\">{escape(name)}</th><td class=\"num\">"
                   f"{_number(value)}</td></tr>" for name, value in rows if value is not None)
    if not body:
        return '<p class="muted">Nothing logged yet.</p>'
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}"></figure>'


# -- plots ------------------------------------------------------------------------------------


def _auto_panels(records: list[dict], covered: set[str]) -> list[tuple[list[str], str]]:
    """Metrics not yet drawn, grouped by name so that train/X and eval/X share a plot."""
    groups: dict[str, list[str]] = {}
    for record in records:
        for key, value in record.items():
            if key in NOT_PLOTTED or key in covered or not _is_number(value):
                continue
            keys = groups.setdefault(key.split("/", 1)[-1], [])
            if key not in keys:
                keys.append(key)
    return [(keys, name) for name, keys in groups.items()][:MAX_AUTO_PANELS]


def stage_panels(stage: str, records: list[dict]) -> list[tuple[list[str], str]]:
    """The curves a stage's report draws: its own panels, then (sft, generic) everything else."""
    from rlhf.report import PPO_PANELS

    own = {"reward": REWARD_PANELS, "sft": SFT_PANELS,
           "ppo": [(keys, title) for _, keys, title in PPO_PANELS]}.get(stage, [])
    if stage in ("reward", "ppo"):
        return own
    covered = {key for keys, _ in own for key in keys}
    return own + _auto_panels(records, covered)


def _curve_images(records: list[dict], panels: list[tuple[list[str], str]]) -> list[str]:
    from rlhf.report import curves_figure, figure_png

    images = []
    for keys, title in panels:
        figure = curves_figure(records, keys, title)
        if figure is not None:
            images.append(_image(figure_png(figure), title))
    return images


def read_eval_scores(run_dir: Path) -> dict[str, list[float]]:
    """eval_scores.json of a reward run ({} when missing or not a dict of score lists)."""
    path = run_dir / "eval_scores.json"
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(scores, dict):
        return {}
    return {str(label): [float(v) for v in values if _is_number(v)]
            for label, values in scores.items() if isinstance(values, list) and values}


def _histogram_image(scores: dict[str, list[float]]) -> str:
    from rlhf.report import figure_png, score_histogram_figure

    return _image(figure_png(score_histogram_figure(scores)), "held-out scores of chosen "
                  "and rejected responses")


# -- PPO samples ------------------------------------------------------------------------------


@dataclass
class SamplePair:
    """A 'before' and an 'after' answer; `prompt` is set when both answer the same prompt."""

    prompt: str | None
    before: dict | None
    after: dict | None


def sample_pairs(rows: list[dict]) -> tuple[int, int, list[SamplePair]]:
    """(first step, last step, pairs) from samples.jsonl rows, matched by prompt where possible;
    the rest are paired in order."""
    steps = sorted({r["step"] for r in rows if _is_number(r.get("step"))})
    if not steps:
        return 0, 0, []
    first, last = steps[0], steps[-1]
    before = [r for r in rows if r.get("step") == first]
    after = [r for r in rows if r.get("step") == last] if last != first else []
    unused = list(after)
    pairs, lonely = [], []
    for row in before:
        match = next((r for r in unused if r.get("prompt") == row.get("prompt")), None)
        if match is None:
            lonely.append(row)
        else:
            unused.remove(match)
            pairs.append(SamplePair(str(row.get("prompt", "")), row, match))
    pairs += [SamplePair(None, b, a) for b, a in zip_longest(lonely, unused)]
    return first, last, pairs


def _score_cell(row: dict | None) -> str:
    score = None if row is None else row.get("score")
    return f'<td class="num">{f"{score:.4f}" if _is_number(score) else "–"}</td>'


def _answer_cell(row: dict | None, with_prompt: bool) -> str:
    if row is None:
        return '<td class="muted">–</td>'
    prompt = (f'<div class="prompt text">{escape(str(row.get("prompt", "")))}</div>'
              if with_prompt else "")
    return f'<td>{prompt}<div class="text">{escape(str(row.get("response", "")))}</div></td>'


def samples_table(pairs: list[SamplePair], before_label: str, after_label: str) -> str:
    """Answers to the same prompt side by side (prompt | before | score | after | score), then
    answers to different prompts (each prompt shown above its answer). All text is escaped."""
    matched = [p for p in pairs if p.prompt is not None]
    others = [p for p in pairs if p.prompt is None]
    head = (f"<th>{escape(before_label)}</th><th>score</th>"
            f"<th>{escape(after_label)}</th><th>score</th>")
    tables = []
    if matched:
        rows = "".join(f'<tr><td><div class="text">{escape(p.prompt)}</div></td>'
                       f"{_answer_cell(p.before, False)}{_score_cell(p.before)}"
                       f"{_answer_cell(p.after, False)}{_score_cell(p.after)}</tr>"
                       for p in matched)
        tables.append('<table class="samples"><colgroup><col class="prompt-col"><col>'
                      '<col class="score-col"><col><col class="score-col"></colgroup>'
                      f"<thead><tr><th>prompt</th>{head}</tr></thead><tbody>{rows}</tbody>"
                      "</table>")
    if others:
        rows = "".join(f"<tr>{_answer_cell(p.before, True)}{_score_cell(p.before)}"
                       f"{_answer_cell(p.after, True)}{_score_cell(p.after)}</tr>"
                       for p in others)
        tables.append('<table class="samples"><colgroup><col><col class="score-col"><col>'
                      '<col class="score-col"></colgroup>'
                      f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return "".join(tables)


# -- summaries --------------------------------------------------------------------------------


def _steps(records: list[dict]) -> int | None:
    steps = [r["step"] for r in records if _is_number(r.get("step"))]
    return max(steps) if steps else None


def _artifacts(run_dir: Path) -> list[tuple[str, object]]:
    """Checkpoints and saved model folders present in the run directory."""
    checkpoints = sorted((p.name for p in run_dir.glob("checkpoint-*") if p.is_dir()),
                         key=lambda name: int(name.rsplit("-", 1)[-1])
                         if name.rsplit("-", 1)[-1].isdigit() else -1)
    models = [f"{name}/" for name in ("model", "policy", "value") if (run_dir / name).is_dir()]
    return [("checkpoints", f"{len(checkpoints)} (latest {checkpoints[-1]})"
             if checkpoints else None),
            ("saved models", ", ".join(models) or None)]


def reward_summary(run: StageRun, scores: dict[str, list[float]]) -> list[tuple[str, object]]:
    r = run.records
    return [
        ("held-out accuracy", _last(r, "eval/accuracy")),
        ("held-out mean margin (chosen - rejected)", _last(r, "eval/margin_mean")),
        ("held-out loss", _last(r, "eval/loss")),
        ("held-out examples", _last(r, "eval/examples")),
        *[(f"held-out {label} score mean (n={len(values)})", _mean(values))
          for label, values in scores.items()],
        ("last train accuracy", _last(r, "train/accuracy")),
        ("last train loss", _last(r, "train/loss")),
        ("optimizer steps", _steps(r)),
        ("epochs", _last(r, "train/epoch")),
        *_artifacts(run.path),
    ]


def ppo_summary(run: StageRun) -> list[tuple[str, object]]:
    r = run.records
    scored = [x for x in r if _is_number(x.get("objective/score"))]
    start, end = (scored[0], scored[-1]) if scored else ({}, {})
    kls = [x["objective/kl"] for x in r if _is_number(x.get("objective/kl"))]
    change = (end["objective/score"] - start["objective/score"]) if scored else None
    return [
        ("iterations", _steps(r)),
        (f"score at start (step {start.get('step')})", start.get("objective/score")),
        (f"score at end (step {end.get('step')})", end.get("objective/score")),
        ("score change", change),
        ("mean KL over the run (nats per sequence)", _mean(kls)),
        ("final KL", kls[-1] if kls else None),
        ("last KL coefficient", _last(r, "objective/kl_coef")),
        ("response length at start / end", _pair(r, "response/length")),
        ("policy entropy at start / end", _pair(r, "policy/entropy")),
        *_artifacts(run.path),
    ]


def _pair(records: list[dict], key: str) -> str | None:
    first, last = _first(records, key), _last(records, key)
    return None if first is None else f"{_number(first)} → {_number(last)}"


def sft_summary(run: StageRun) -> list[tuple[str, object]]:
    r = run.records
    eval_loss = _last(r, "eval/loss")
    perplexity = math.exp(eval_loss) if eval_loss is not None and eval_loss < 700 else None
    return [
        ("final eval loss", eval_loss),
        ("eval perplexity (exp of eval loss)", perplexity),
        ("final train loss", _last(r, "train/loss")),
        ("optimizer steps", _steps(r)),
        ("epochs", _last(r, "train/epoch")),
        *_artifacts(run.path),
    ]


def generic_summary(run: StageRun) -> list[tuple[str, object]]:
    return [("logged steps", _steps(run.records)), ("metric lines", len(run.records)),
            *_artifacts(run.path)]


def headline(run: StageRun) -> str:
    """One line for the pipeline overview (already HTML)."""
    r = run.records
    if run.stage == "reward" and _last(r, "eval/accuracy") is not None:
        return f"held-out accuracy {_number(_last(r, 'eval/accuracy'))}"
    if run.stage == "ppo" and _first(r, "objective/score") is not None:
        return (f"score {_number(_first(r, 'objective/score'))} → "
                f"{_number(_last(r, 'objective/score'))}")
    if _last(r, "eval/loss") is not None:
        return f"eval loss {_number(_last(r, 'eval/loss'))}"
    steps = _steps(r)
    return f"{steps} steps" if steps is not None else "nothing logged yet"


def final_metrics_table(records: list[dict]) -> str:
    """Every numeric metric's last value and the step it was logged at."""
    last: dict[str, tuple[object, object]] = {}
    for record in records:
        for key, value in record.items():
            if key != "step" and _is_number(value):
                last[key] = (record.get("step"), value)
    if not last:
        return '<p class="muted">Nothing logged yet.</p>'
    rows = "".join(f'<tr><td><code>{escape(key)}</code></td><td class="num">{_number(step)}'
                   f'</td><td class="num">{_number(value)}</td></tr>'
                   for key, (step, value) in sorted(last.items()))
    return ('<table class="metrics"><thead><tr><th>metric</th><th>step</th><th>last value</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>")


# -- sections and the page --------------------------------------------------------------------


@dataclass
class _Ids:
    """Element ids of one section's parts: `part` alone, or `section-part` in a pipeline."""

    section: str
    prefixed: bool

    def __call__(self, part: str) -> str:
        return f"{self.section}-{part}" if self.prefixed else part


def _h3(ids: _Ids, part: str, title: str) -> str:
    return f'<h3 id="{escape(ids(part))}">{escape(title)}</h3>'


def stage_section(run: StageRun, ids: _Ids) -> str:
    """One stage's section: summary, curves, stage extras, every metric, config."""
    scores = read_eval_scores(run.path) if run.stage == "reward" else {}
    summary = {"reward": lambda: reward_summary(run, scores), "ppo": lambda: ppo_summary(run),
               "sft": lambda: sft_summary(run)}.get(run.stage, lambda: generic_summary(run))()
    images = _curve_images(run.records, stage_panels(run.stage, run.records))
    parts = [f'<h2>{escape(STAGE_TITLES[run.stage])} <span class="folder">'
             f"{escape(run.path.name)}/</span></h2>",
             _h3(ids, "summary", "Summary"), _table(summary),
             _h3(ids, "curves", "Curves"),
             f'<div class="plots">{"".join(images)}</div>' if images
             else '<p class="muted">No curves: nothing logged yet.</p>']
    if scores:
        parts += [_h3(ids, "scores", "Held-out scores"),
                  f'<div class="plots">{_histogram_image(scores)}</div>']
    if run.stage == "ppo":
        parts.append(_samples_part(run.path, ids))
    parts += [_h3(ids, "metrics", "Last value of every metric"),
              f"<details><summary>{len(_metric_keys(run.records))} metrics</summary>"
              f"{final_metrics_table(run.records)}</details>",
              _h3(ids, "config", "Config"), _config_block(run.path)]
    return f'<section id="{escape(ids.section)}" class="stage">{"".join(parts)}</section>'


def _metric_keys(records: list[dict]) -> set[str]:
    return {k for r in records for k, v in r.items() if k != "step" and _is_number(v)}


def _samples_part(run_dir: Path, ids: _Ids) -> str:
    first, last, pairs = sample_pairs(_read_jsonl(run_dir / "samples.jsonl"))
    heading = _h3(ids, "samples", "Sample responses before and after")
    if not pairs:
        return heading + '<p class="muted">No samples.jsonl rows yet.</p>'
    matched = sum(pair.prompt is not None for pair in pairs)
    note = (f"The first and last logged steps ({first} and {last}); {matched} of {len(pairs)} "
            "rows answer the same prompt at both steps (others show their prompt above the "
            "answer). Scores are after normalisation." if last != first else
            f"Only step {first} has samples so far.")
    return (heading + f'<p class="muted">{escape(note)}</p>'
            + samples_table(pairs, f"step {first}", f"step {last}" if last != first else "–"))


def _config_block(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return '<p class="muted">No config.yaml in this run directory.</p>'
    return f'<pre class="config">{escape(path.read_text(encoding="utf-8", errors="replace"))}</pre>'


def comparison_section(root: Path) -> str:
    """The demo's held-out before/after comparison (before_after.jsonl, demo_summary.json)."""
    rows = _read_jsonl(root / "before_after.jsonl")
    if not rows:
        return ""
    try:
        summary = json.loads((root / "demo_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    pairs = [SamplePair(str(row.get("prompt", "")),
                        {"response": row.get("before", ""), "score": row.get("before_score")},
                        {"response": row.get("after", ""), "score": row.get("after_score")})
             for row in rows]
    table = _table([(key.replace("_", " "), value) for key, value in summary.items()]
                   if isinstance(summary, dict) else [])
    return ('<section id="before-after" class="stage"><h2>Held-out prompts before and after '
            f'PPO</h2><h3 id="before-after-summary">Summary</h3>{table}'
            '<h3 id="before-after-samples">Answers</h3>'
            + samples_table(pairs, "before PPO", "after PPO") + "</section>")


def build_report_html(run_dir: str | Path) -> str:
    """The report of a run or a pipeline directory as one self-contained HTML page."""
    root = Path(run_dir)
    runs = find_stage_runs(root)
    pipeline = runs[0].path != root
    seen: dict[str, int] = {}
    sections = []
    for run in runs:
        seen[run.stage] = seen.get(run.stage, 0) + 1
        section_id = run.stage if seen[run.stage] == 1 else f"{run.stage}-{seen[run.stage]}"
        sections.append((run, section_id, stage_section(run, _Ids(section_id, pipeline))))
    extra = comparison_section(root) if pipeline else ""
    name = root.resolve().name
    stages = ", ".join(run.stage for run in runs)
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    header = (f"<header><h1>rlhf report: {escape(name)}</h1><p class=\"meta\">"
              f"{'pipeline' if pipeline else 'stage'}: {escape(stages)} · "
              f"<code>{escape(str(root.resolve()))}</code> · generated {escape(generated)}</p>"
              + (_overview(sections, extra) if pipeline else "") + "</header>")
    body = header + "".join(html for _, _, html in sections) + extra
    return PAGE.format(title=escape(f"rlhf report: {name}"), css=CSS, body=body)


def _overview(sections: list[tuple[StageRun, str, str]], extra: str) -> str:
    rows = "".join(f'<tr><td><a href="#{escape(section_id)}">{escape(run.stage)}</a></td>'
                   f"<td><code>{escape(run.path.name)}/</code></td><td>{headline(run)}</td></tr>"
                   for run, section_id, _ in sections)
    if extra:
        rows += ('<tr><td><a href="#before-after">before / after</a></td><td><code>'
                 'before_after.jsonl</code></td><td>held-out prompts</td></tr>')
    return ('<table class="overview"><thead><tr><th>stage</th><th>folder</th><th>result</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>")


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html (atomically) and return its path."""
    html = build_report_html(run_dir)
    path = Path(run_dir) / "report.html"
    partial = path.with_name(".report.html.tmp")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)
    return path


def report_run(run_dir: str | Path) -> Path:
    """The PNG plots and report.html of a finished stage run (stage read from its files);
    the path of report.html. Commands call this after a stage: stages do not draw."""
    from rlhf.report import plot_ppo_run, plot_reward_run, plot_sft_run

    plots = {"ppo": plot_ppo_run, "reward": plot_reward_run, "sft": plot_sft_run}
    plot = plots.get(detect_stage(run_dir))
    if plot is not None:
        plot(run_dir)
    return write_report(run_dir)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body><main>
{body}
<footer>Written by <code>rlhf report</code>. Self-contained: no scripts, no network.</footer>
</main></body>
</html>
"""

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --zebra: #f6f8fa; --head: #eef1f4;
        --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             sans-serif; }
main { max-width: 1140px; margin: 0 auto; padding: 28px 32px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 21px; margin: 40px 0 8px; padding-bottom: 6px;
     border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 8px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { font-size: 13px; }
header { padding-bottom: 12px; border-bottom: 1px solid var(--line); }
.meta, .muted { color: var(--muted); }
.meta { margin: 0 0 8px; overflow-wrap: anywhere; }
.folder { font-size: 14px; font-weight: normal; color: var(--muted);
          font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 6px 10px; text-align: left;
         vertical-align: top; }
thead th { background: var(--head); font-weight: 600; }
tbody tr:nth-child(even) { background: var(--zebra); }
table.kv th { font-weight: normal; color: var(--muted); min-width: 18em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.samples { width: 100%; table-layout: fixed; }
table.samples col.prompt-col { width: 28%; }
table.samples col.score-col { width: 6.5em; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 14em; overflow-y: auto; }
.prompt { color: var(--muted); font-size: 13px; border-bottom: 1px dashed var(--line);
          margin-bottom: 4px; padding-bottom: 4px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr));
         gap: 16px; }
figure { margin: 0; padding: 6px; border: 1px solid var(--line); border-radius: 6px; }
figure img { display: block; width: 100%; height: auto; }
pre { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px;
      padding: 12px 14px; font-size: 13px; line-height: 1.45; overflow: auto;
      max-height: 36em; }
details summary { cursor: pointer; color: var(--accent); margin: 4px 0; }
footer { margin-top: 48px; padding-top: 12px; border-top: 1px solid var(--line);
         color: var(--muted); font-size: 13px; }
"""
