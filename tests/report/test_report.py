"""`rlhf report`: self-contained HTML reports of fake run directories (no training needed)."""

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from rlhf.cli import main
from rlhf.errors import UserError
from rlhf.report import build_report_html, detect_stage, find_stage_runs, write_report
from rlhf.report.samples import sample_pairs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XSS = "<script>alert('x')</script> & \"quotes\""


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def make_reward_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        "run:\n  output_dir: x\ndata:\n  template: pair\nmodel:\n  name_or_path: a<b>\n",
        encoding="utf-8")
    rows = []
    for step in range(1, 11):
        rows.append({"step": step, "train/loss": 0.7 / step, "train/accuracy": 0.5 + step / 25,
                     "train/margin_mean": step / 10, "train/epoch": step / 10})
        if step % 5 == 0:
            rows.append({"step": step, "eval/loss": 0.8 / step, "eval/accuracy": 0.9,
                         "eval/margin_mean": step / 8, "eval/examples": 40})
    _jsonl(path / "metrics.jsonl", rows)
    scores = {"chosen": [1.0 + i / 10 for i in range(40)],
              "rejected": [-1.0 - i / 10 for i in range(40)]}
    (path / "eval_scores.json").write_text(json.dumps(scores), encoding="utf-8")
    return path


def make_ppo_run(path: Path, response: str = "a vivid answer") -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("ppo:\n  kl_coef: 0.1\nsamples_every: 5\n",
                                      encoding="utf-8")
    _jsonl(path / "metrics.jsonl", [
        {"step": s, "objective/score": s / 10, "objective/kl": s / 5, "objective/kl_coef": 0.1,
         "objective/rlhf_reward": s / 20, "policy/entropy": 3 - s / 10,
         "response/length": 10 + s} for s in range(1, 6)]
        + [{"step": s, "eval/score": s / 8, "eval/reward": s / 4 - (s / 4) ** 2,
            "eval/kl": s / 3} for s in (0, 2, 4)])
    _jsonl(path / "samples.jsonl", [
        {"step": 1, "prompt": "shared prompt", "response": "plain", "score": -0.5},
        {"step": 1, "prompt": "only before", "response": "meh", "score": -1.0},
        {"step": 5, "prompt": "only after", "response": "ok", "score": 0.5},
        {"step": 5, "prompt": "shared prompt", "response": response, "score": 1.25},
    ])
    return path


def make_sft_run(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("model:\n  name_or_path: builtin:tiny-gpt2\n",
                                      encoding="utf-8")
    _jsonl(path / "metrics.jsonl", [
        {"step": s, "train/loss": 4 / s, "train/lr": 1e-3} for s in range(1, 6)]
        + [{"step": 5, "eval/loss": 1.0}])
    (path / "model").mkdir()
    (path / "model" / "config.json").write_text(
        json.dumps({"architectures": ["GPT2LMHeadModel"]}), encoding="utf-8")
    return path


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(data)
            for data in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def assert_valid_pngs(html: str, at_least: int) -> None:
    images = embedded_pngs(html)
    assert len(images) >= at_least
    for png in images:
        assert png.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            assert image.format == "PNG" and image.width > 100 and image.height > 100


def assert_self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html


def test_reward_report_sections_images_and_summary(tmp_path: Path) -> None:
    run = make_reward_run(tmp_path / "rm")
    path = write_report(run)
    assert path == run / "report.html"
    html = path.read_text(encoding="utf-8")
    for element in ('id="reward"', 'id="summary"', 'id="curves"', 'id="scores"',
                    'id="config"', 'id="metrics"'):
        assert element in html
    assert "held-out accuracy" in html and "0.9" in html
    assert "name_or_path: a&lt;b&gt;" in html  # config text is escaped, inside <pre>
    assert re.search(r"<pre[^>]*>.*name_or_path", html, re.S)
    assert "rm" in html and "generated" in html
    assert_valid_pngs(html, at_least=4)  # loss, accuracy, margin, histogram
    assert_self_contained(html)


def test_ppo_report_samples_are_matched_and_escaped(tmp_path: Path) -> None:
    html = build_report_html(make_ppo_run(tmp_path / "ppo", response=XSS))
    for element in ('id="ppo"', 'id="samples"', 'id="config"', 'id="curves"'):
        assert element in html
    assert XSS not in html and "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    assert "score at start (step 1)" in html and "last KL coefficient" in html
    samples = html[html.index('id="samples"'):html.index('id="metrics"')]
    assert samples.index("shared prompt") < samples.index("only before")
    assert "1.2500" in samples and "-0.5000" in samples
    assert_valid_pngs(html, at_least=5)  # score, KL, KL coef, entropy, length
    assert_self_contained(html)


def test_sample_pairs_match_by_prompt_then_in_order() -> None:
    rows = [{"step": 1, "prompt": "a", "response": "1"}, {"step": 1, "prompt": "b"},
            {"step": 3, "prompt": "x"}, {"step": 9, "prompt": "c"},
            {"step": 9, "prompt": "b", "response": "2"}]
    first, last, pairs = sample_pairs(rows)
    assert (first, last) == (1, 9)
    assert pairs[0].prompt == "b" and pairs[0].after["response"] == "2"
    assert pairs[1].prompt is None
    assert (pairs[1].before["prompt"], pairs[1].after["prompt"]) == ("a", "c")
    assert sample_pairs([]) == (0, 0, [])


def test_stage_detection(tmp_path: Path) -> None:
    assert detect_stage(make_reward_run(tmp_path / "one")) == "reward"
    assert detect_stage(make_ppo_run(tmp_path / "two")) == "ppo"
    assert detect_stage(make_sft_run(tmp_path / "three")) == "sft"
    generic = tmp_path / "four"
    generic.mkdir()
    _jsonl(generic / "metrics.jsonl", [{"step": 1, "custom/thing": 2.0}])
    assert detect_stage(generic) == "run"
    html = build_report_html(generic)
    assert 'id="run"' in html and "custom/thing" in html
    assert_valid_pngs(html, at_least=1)


def test_sft_report_draws_loss_and_other_metrics(tmp_path: Path) -> None:
    html = build_report_html(make_sft_run(tmp_path / "sft"))
    assert 'id="sft"' in html and "eval perplexity" in html
    assert_valid_pngs(html, at_least=2)  # loss, lr


def test_pipeline_joins_stages_in_pipeline_order(tmp_path: Path) -> None:
    root = tmp_path / "pipe"
    make_ppo_run(root / "a-ppo")  # folder names sort against pipeline order on purpose
    make_reward_run(root / "b-rm")
    make_sft_run(root / "c-sft")
    _jsonl(root / "before_after.jsonl", [{"prompt": "p", "before": "<b>old</b>",
                                          "before_score": 0.1, "after": "new",
                                          "after_score": 0.9}])
    assert [run.stage for run in find_stage_runs(root)] == ["sft", "reward", "ppo"]
    html = write_report(root).read_text(encoding="utf-8")
    positions = [html.index(f'<section id="{stage}"') for stage in ("sft", "reward", "ppo")]
    assert positions == sorted(positions)
    for element in ('id="ppo-samples"', 'id="reward-scores"', 'id="sft-config"',
                    'id="before-after"'):
        assert element in html
    assert html.index('id="ppo"') < html.index('id="before-after"')
    assert "&lt;b&gt;old&lt;/b&gt;" in html
    assert_valid_pngs(html, at_least=11)
    assert_self_contained(html)


def test_errors_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        build_report_html(tmp_path / "missing")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(UserError, match="no metrics.jsonl"):
        build_report_html(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2,\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"metrics.jsonl:2"):
        build_report_html(broken)


def test_cli_report(tmp_path: Path, capsys) -> None:
    run = make_reward_run(tmp_path / "rm")
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert (run / "report.html").is_file()
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
