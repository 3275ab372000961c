"""A self-contained HTML report of a run: `rlhf report RUN_DIR` writes `RUN_DIR/report.html`.

The stage of a run (sft, reward, ppo, critic_free, or a generic run) is read from its files.
A directory without metrics.jsonl whose subfolders are runs (the demo's RUN/sft, RUN/reward,
RUN/ppo) is a pipeline: its report has one section per stage, in pipeline order.

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
from dataclasses import dataclass
from datetime import datetime
from html import escape
from importlib.resources import files
from pathlib import Path

from rlhf.report.panels import Panel, stage_panels
from rlhf.report.run_files import (
    SAMPLING_STAGES,
    StageRun,
    detect_stage,
    find_stage_runs,
    read_demo_summary,
    read_eval_scores,
    read_jsonl,
)
from rlhf.report.samples import before_after_pairs, sample_pairs, samples_note, samples_table
from rlhf.report.summaries import (
    final_metrics_table,
    headline,
    kv_table,
    metric_keys,
    stage_summary,
)

STAGE_TITLES = {"sft": "Supervised fine-tuning", "reward": "Reward model",
                "ppo": "PPO", "critic_free": "Critic-free RL", "dpo": "DPO", "run": "Run"}
SCORED_STAGES = ("reward", "dpo")
"""Stages whose held-out scores of chosen and rejected responses are drawn as histograms
(reward-model scores; DPO's implicit rewards)."""


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}"></figure>'


def _curve_images(records: list[dict], panels: list[Panel]) -> list[str]:
    # matplotlib (slow to import) loads when something is drawn, not on `import rlhf.report`
    from rlhf.report.plots import curves_figure, figure_png

    images = []
    for panel in panels:
        figure = curves_figure(records, panel.keys, panel.title, x=panel.x, sqrt_x=panel.sqrt_x)
        if figure is not None:
            images.append(_image(figure_png(figure), panel.title))
    return images


def _histogram_image(scores: dict[str, list[float]]) -> str:
    # matplotlib (slow to import) loads when something is drawn, not on `import rlhf.report`
    from rlhf.report.plots import figure_png, score_histogram_figure

    return _image(figure_png(score_histogram_figure(scores)), "held-out scores of chosen "
                  "and rejected responses")


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
    scores = read_eval_scores(run.path) if run.stage in SCORED_STAGES else {}
    images = _curve_images(run.records, stage_panels(run.stage, run.records))
    parts = [f'<h2>{escape(STAGE_TITLES[run.stage])} <span class="folder">'
             f"{escape(run.path.name)}/</span></h2>",
             _h3(ids, "summary", "Summary"), kv_table(stage_summary(run, scores)),
             _h3(ids, "curves", "Curves"),
             f'<div class="plots">{"".join(images)}</div>' if images
             else '<p class="muted">No curves: nothing logged yet.</p>']
    if scores:
        parts += [_h3(ids, "scores", "Held-out scores"),
                  f'<div class="plots">{_histogram_image(scores)}</div>']
    if run.stage in SAMPLING_STAGES:
        parts.append(_samples_part(run, ids))
    parts += [_h3(ids, "metrics", "Last value of every metric"),
              f"<details><summary>{len(metric_keys(run.records))} metrics</summary>"
              f"{final_metrics_table(run.records)}</details>",
              _h3(ids, "config", "Config"), _config_block(run.path)]
    return f'<section id="{escape(ids.section)}" class="stage">{"".join(parts)}</section>'


def _samples_part(run: StageRun, ids: _Ids) -> str:
    first, last, pairs = sample_pairs(read_jsonl(run.path / "samples.jsonl"))
    heading = _h3(ids, "samples", "Sample responses before and after")
    if not pairs:
        return heading + '<p class="muted">No samples.jsonl rows yet.</p>'
    note = samples_note(first, last, pairs, run.stage)
    return (heading + f'<p class="muted">{escape(note)}</p>'
            + samples_table(pairs, f"step {first}", f"step {last}" if last != first else "–"))


def _config_block(run_dir: Path) -> str:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return '<p class="muted">No config.yaml in this run directory.</p>'
    return f'<pre class="config">{escape(path.read_text(encoding="utf-8", errors="replace"))}</pre>'


def comparison_section(root: Path) -> str:
    """The demo's held-out before/after comparison (before_after.jsonl, demo_summary.json)."""
    rows = read_jsonl(root / "before_after.jsonl")
    if not rows:
        return ""
    summary = read_demo_summary(root)
    table = kv_table([(key.replace("_", " "), value) for key, value in summary.items()]
                     if isinstance(summary, dict) else [])
    parts = ['<section id="before-after" class="stage"><h2>Held-out prompts: the SFT policy '
             f'and the tuned ones</h2><h3 id="before-after-summary">Summary</h3>{table}',
             '<h3 id="before-after-samples">Answers: SFT and PPO</h3>',
             samples_table(before_after_pairs(rows), "SFT (before)", "after PPO")]
    if any("dpo" in row for row in rows):
        parts += ['<h3 id="before-after-dpo">Answers: SFT and DPO</h3>',
                  samples_table(before_after_pairs(rows, "dpo"), "SFT (before)", "after DPO")]
    return "".join(parts) + "</section>"


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
    return PAGE.format(title=escape(f"rlhf report: {name}"), css=css(), body=body)


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
    # matplotlib (slow to import) loads when something is drawn, not on `import rlhf.report`
    from rlhf.report.plots import plot_run

    plot_run(run_dir, detect_stage(run_dir))
    return write_report(run_dir)


def css() -> str:
    """The report's style sheet (report.css, shipped as package data)."""
    return files("rlhf.report").joinpath("report.css").read_text(encoding="utf-8")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}</style>
</head>
<body><main>
{body}
<footer>Written by <code>rlhf report</code>. Self-contained: no scripts, no network.</footer>
</main></body>
</html>
"""
