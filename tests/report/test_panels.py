"""report.panels is the one table behind a run's PNG files and its report's curves."""

import re
from pathlib import Path

from test_report import make_ppo_run, make_reward_run, make_sft_run

from rlhf.report import build_report_html, report_run
from rlhf.report.html import css
from rlhf.report.panels import SCORES_FILE, STAGE_PANELS, file_panels, stage_panels


def alts(html: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"', html)


def test_png_files_are_the_panels_with_a_file(tmp_path: Path) -> None:
    for stage, make in (("sft", make_sft_run), ("reward", make_reward_run),
                        ("ppo", make_ppo_run)):
        run = make(tmp_path / stage)
        report_run(run)
        expected = {panel.file for panel in file_panels(stage)}
        expected |= {SCORES_FILE} if stage == "reward" else set()
        assert {p.name for p in run.glob("*.png")} == expected


def test_report_curves_follow_the_table(tmp_path: Path) -> None:
    html = build_report_html(make_ppo_run(tmp_path / "ppo"))
    assert alts(html) == [panel.title for panel in STAGE_PANELS["ppo"]]
    html = build_report_html(make_reward_run(tmp_path / "rm"))
    assert alts(html)[:3] == [panel.title for panel in STAGE_PANELS["reward"]]
    sft = make_sft_run(tmp_path / "sft")
    titles = [panel.title for panel in stage_panels("sft", [{"step": 1, "train/lr": 1.0}])]
    assert alts(build_report_html(sft)) == titles == [STAGE_PANELS["sft"][0].title, "lr"]


def test_css_is_package_data_and_inline(tmp_path: Path) -> None:
    sheet = css()
    assert sheet.startswith(":root") and sheet.endswith("}\n")
    assert f"<style>\n{sheet}</style>" in build_report_html(make_sft_run(tmp_path / "sft"))


def test_held_out_rewards_are_drawn_against_sqrt_kl(tmp_path: Path) -> None:
    from rlhf.report.plots import series

    records = [{"step": 0, "eval/kl": 0.0, "eval/score": 1.0}, {"step": 1, "objective/kl": 2.0},
               {"step": 2, "eval/kl": 4.0, "eval/score": 2.0},
               {"step": 4, "eval/kl": -0.01, "eval/score": 3.0}]  # a k1 estimate below 0
    assert series(records, "eval/score") == ([0, 2, 4], [1.0, 2.0, 3.0])
    assert series(records, "eval/score", "eval/kl", sqrt_x=True) == ([0.0, 2.0, 0.0],
                                                                     [1.0, 2.0, 3.0])
    run = make_ppo_run(tmp_path / "ppo")
    (run / "metrics.jsonl").write_text("\n".join(  # a run without the evaluation
        line for line in (run / "metrics.jsonl").read_text().splitlines()
        if "eval/" not in line) + "\n")
    report_run(run)
    assert not (run / "eval_vs_kl.png").exists()  # nothing to draw: no file
