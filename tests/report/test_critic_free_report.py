"""Reports of critic-free RL runs (`rlhf train-critic-free`), from fake run directories."""

from html import escape
from pathlib import Path

from test_panels import alts
from test_report import _jsonl, assert_self_contained, assert_valid_pngs, make_ppo_run

from rlhf.report import build_report_html, detect_stage, find_stage_runs, report_run
from rlhf.report.panels import STAGE_PANELS, file_panels

CONFIG = """run:
  output_dir: {path}
data:
  prompts: builtin:prompts
model:
  name_or_path: builtin:tiny-gpt2
generate:
  num_samples: 4
algo:
  advantage: grpo
  loss_aggregation: token_mean
  kl_penalty: {kl_penalty}
  kl_estimator: k1
  kl_coef: 0.05
  clip_low: 0.2
  clip_high: 0.28
  ratio: token
  dynamic_sampling: false
train:
  lr: 1.0e-05
samples_every: 5
"""


def metrics_row(step: int, kl: bool) -> dict:
    row = {"step": step, "objective/score": step / 10, "objective/raw_score": step / 8,
           "objective/score_std": 0.5, "objective/kl_coef": 0.05,
           "group/reward_std": 0.4 - step / 50, "group/zero_signal_fraction": step / 20,
           "group/dropped_groups": 0, "advantage/mean": 0.0, "advantage/std": 1.0,
           "loss/policy": -0.01, "policy/entropy": 3 - step / 10, "policy/approx_kl": 0.001,
           "policy/clipfrac_low": 0.01, "policy/clipfrac_high": 0.02 * step,
           "policy/ratio_mean": 1.0, "policy/ratio_max": 1.3, "response/length": 10 + step,
           "response/ended_fraction": 0.9}
    if kl:
        row |= {"objective/kl": step / 5, "objective/non_score_reward": -step / 100,
                "objective/rlhf_reward": step / 10 - step / 100}
    return row


def make_critic_free_run(path: Path, kl: bool = True) -> Path:
    """A finished critic-free run as the stage leaves it: config, metrics, samples, policy/."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        CONFIG.format(path=path, kl_penalty="reward" if kl else "none"), encoding="utf-8")
    _jsonl(path / "metrics.jsonl", [metrics_row(step, kl) for step in range(1, 6)])
    _jsonl(path / "samples.jsonl", [
        {"step": 1, "prompt": "shared prompt", "response": "first <try>", "score": -0.5},
        {"step": 5, "prompt": "shared prompt", "response": "better answer", "score": 0.75},
    ])
    (path / "policy").mkdir()
    return path


def test_critic_free_runs_are_told_from_ppo_runs(tmp_path: Path) -> None:
    run = make_critic_free_run(tmp_path / "cf")
    assert detect_stage(run) == "critic_free"  # samples.jsonl and policy/ alone say PPO
    assert detect_stage(make_ppo_run(tmp_path / "ppo")) == "ppo"
    (run / "config.yaml").unlink()
    assert detect_stage(run) == "critic_free"  # group/ metrics only it logs
    named = tmp_path / "critic-free"
    named.mkdir()
    _jsonl(named / "metrics.jsonl", [{"step": 1, "custom/thing": 1.0}])
    assert detect_stage(named) == "critic_free"


def test_critic_free_pngs_summary_and_samples(tmp_path: Path) -> None:
    run = make_critic_free_run(tmp_path / "cf")
    report_run(run)
    expected = {"score.png", "kl.png", "groups.png", "entropy.png", "clipfrac.png",
                "length.png"}
    held_out = {"eval_vs_kl.png", "eval.png"}  # drawn only when the run has eval/ metrics
    assert {panel.file for panel in file_panels("critic_free")} == expected | held_out
    assert {p.name for p in run.glob("*.png")} == expected
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="critic_free"' in html and "Critic-free RL" in html
    drawn = [panel for panel in STAGE_PANELS["critic_free"] if panel.file not in held_out]
    assert alts(html) == [escape(panel.title) for panel in drawn]
    summary = html[html.index('id="summary"'):html.index('id="curves"')]
    assert "grpo, token_mean aggregation, KL penalty in the reward" in summary
    assert "score at start (step 1)" in summary and "score at end (step 5)" in summary
    assert "final KL (nats per sequence)" in summary
    assert "share of groups without signal at the end" in summary and "0.25" in summary
    assert "iterations" in summary and "policy/" in summary
    samples = html[html.index('id="samples"'):html.index('id="metrics"')]
    assert "shared prompt" in samples and "better answer" in samples
    assert "first &lt;try&gt;" in samples and "0.7500" in samples
    assert_valid_pngs(html, at_least=6)
    assert_self_contained(html)


def test_a_run_without_kl_still_reports(tmp_path: Path) -> None:
    run = make_critic_free_run(tmp_path / "cf", kl=False)
    report_run(run)
    assert "kl.png" not in {p.name for p in run.glob("*.png")}
    assert len(list(run.glob("*.png"))) == 5
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "no KL penalty" in html and "final KL" not in html
    kl_title = STAGE_PANELS["critic_free"][1].title
    assert escape(kl_title) not in alts(html) and len(alts(html)) == 5
    assert 'id="samples"' in html


def test_pipeline_puts_critic_free_after_ppo_with_a_headline(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_critic_free_run(root / "a-cf")
    make_ppo_run(root / "b-ppo")
    assert [run.stage for run in find_stage_runs(root)] == ["ppo", "critic_free"]
    html = build_report_html(root)
    assert html.index('<section id="ppo"') < html.index('<section id="critic_free"')
    assert 'id="critic_free-samples"' in html
    overview = html[html.index('class="overview"'):html.index("</table>")]
    assert "score 0.1 → 0.5" in overview


LOGGED_KEYS = (
    "objective/score", "objective/raw_score", "objective/score_std", "objective/kl",
    "objective/kl_coef", "objective/non_score_reward", "objective/rlhf_reward",
    "group/reward_std", "group/zero_signal_fraction", "group/dropped_groups", "advantage/mean",
    "advantage/std", "baseline/value", "loss/policy", "loss/kl", "policy/entropy",
    "policy/approx_kl", "policy/clipfrac_low", "policy/clipfrac_high", "policy/ratio_mean",
    "policy/ratio_max", "policy/grad_norm", "response/length", "response/ended_fraction",
    "time/generate", "time/forward", "time/score", "time/update", "time/iteration",
    "throughput/tokens_per_s", "train/lr", "train/skipped_batches", "train/overflow_steps")


def test_every_critic_free_key_is_documented_in_its_section() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text("utf-8")
    section = docs.split("## Critic-free RL (`rlhf train-critic-free`)")[1].split("\n## ")[0]
    assert set(metrics_row(1, kl=True)) - {"step"} <= set(LOGGED_KEYS)
    for key in LOGGED_KEYS:
        assert f"`{key}`" in section, key
