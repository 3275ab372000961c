"""End to end: the critic-free methods on tiny models (marked slow)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rlhf.reward.rules
from rlhf.config import CriticFreeConfig, load_config
from rlhf.report import report_run
from rlhf.stages.critic_free.train import start_critic_free, train_critic_free

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "critic_free"
DOLLY = ROOT.parent / "shared" / "data" / "dolly-15k-prompts-oneill"
METHODS = ["grpo", "rloo", "dr_grpo", "dapo", "reinforce_pp", "reinforce"]
SHORT = ["train.batch_size=4", "algo.total_prompts=12", "samples_every=1"]


def tiny(method: str, out: Path, *overrides: str) -> CriticFreeConfig:
    return load_config(CriticFreeConfig, CONFIGS / f"{method}_tiny.yaml",
                       [f"run.output_dir={out}", "run.progress=false", *overrides])


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").open()]


def test_tiny_grpo_raises_the_score_with_bounded_kl(tmp_path: Path) -> None:
    """The shipped config as it is (62 iterations); every method's config does the same in
    BENCHMARKS.md (benchmarks/critic_free_vs_ppo.py, 3 seeds)."""
    out = tmp_path / "run"
    train_critic_free(tiny("grpo", out, "run.save_every=0"))
    rows = records(out)
    scores = [r["objective/score"] for r in rows]
    assert sum(scores[-5:]) / 5 > sum(scores[:5]) / 5 + 0.1, scores  # from about 0.09
    assert max(r["objective/kl"] for r in rows) < 10.0


@pytest.mark.parametrize("method", METHODS)
def test_each_method_runs_logs_documented_metrics_and_saves_no_value_model(
        method: str, tmp_path: Path) -> None:
    out = tmp_path / method
    cfg = tiny(method, out, *SHORT)
    train_critic_free(cfg)
    report_run(out)  # what `rlhf train-critic-free` does after the stage
    rows = records(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    documented = (ROOT / "docs" / "metrics.md").read_text().split("## Critic-free RL")[1]
    for key in rows[-1]:
        assert key == "step" or f"`{key}`" in documented, key
    assert ("objective/kl" in rows[-1]) == (cfg.algo.kl_penalty != "none")
    assert ("loss/kl" in rows[-1]) == (cfg.algo.kl_penalty == "loss")
    assert ("baseline/value" in rows[-1]) == (method == "reinforce")
    assert (out / "policy" / "model.safetensors").is_file() and not (out / "value").exists()
    for name in ("samples.jsonl", "score.png", "report.html"):
        assert (out / name).is_file(), name
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    k = cfg.generate.num_samples
    if k > 1:  # rows are prompt-major: a prompt's k responses follow each other
        assert len({s["prompt"] for s in samples[:k] if s["step"] == 1}) == 1


def test_lora_run_resumes_exactly_with_the_adapter_disabled_reference(cut_and_resumed) -> None:
    settings = [*SHORT, "lora.r=4", "run.save_every=1", "run.keep_last=10"]
    full, cut = cut_and_resumed(
        lambda out, *extra: train_critic_free(tiny("grpo", out, *settings, *extra)),
        step=1, saved=["policy", "policy-adapter"])
    for weights in ("policy/model.safetensors", "policy-adapter/adapter_model.safetensors"):
        a, b = load_file(full / weights), load_file(cut / weights)
        for key in a:
            assert torch.equal(a[key], b[key]), (weights, key)
    strip = [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
             for r in records(full)]
    assert strip == [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
                     for r in records(cut)]
    assert records(full)[0]["objective/kl"] == 0.0  # policy == base at the first iteration


def test_without_a_kl_term_no_reference_is_loaded(tmp_path: Path) -> None:
    session = start_critic_free(tiny("dapo", tmp_path / "run", *SHORT))
    assert session.models.reference is None
    session.run.finish()


def test_dynamic_sampling_drops_groups_of_equal_scores_and_takes_no_step(
        tmp_path: Path, monkeypatch) -> None:
    """A reward that scores every response the same leaves no signal in any group: every
    group is dropped (counted), no optimizer step is taken, the policy stays as it was."""
    monkeypatch.setattr(rlhf.reward.rules, "vivid_word_fraction",
                        lambda prompts, responses: [0.5] * len(responses))
    out = tmp_path / "run"
    train_critic_free(tiny("dapo", out, "train.batch_size=2", "algo.total_prompts=4",
                           "run.save_every=0"))
    rows = records(out)
    assert [r["group/dropped_groups"] for r in rows] == [2.0, 2.0]
    assert all(r["group/zero_signal_fraction"] == 1.0 for r in rows)
    assert "policy/grad_norm" not in rows[-1]  # no step was taken
    start = tmp_path / "start"
    session = start_critic_free(tiny("dapo", start, "train.batch_size=2",
                                     "algo.total_prompts=4"))
    initial = {k: v.detach().clone() for k, v in session.policy.state_dict().items()}
    session.run.finish()
    final = load_file(out / "policy" / "model.safetensors")
    assert all(torch.equal(initial[k], final[k]) for k in final)


@pytest.mark.skipif(not DOLLY.exists(), reason="needs ../shared/data")
def test_the_reference_workload_config_runs_with_a_reward_model_of_another_tokenizer(
        tmp_path: Path, gpt2_policy_and_roberta_reward: tuple[Path, Path]) -> None:
    """GRPO's reference-workload config on tiny stand-ins for GPT-2 and the argilla RoBERTa
    reward model (each with its real tokenizer) and real dolly prompts (every such config
    shares these sections; tests/config/test_shipped_configs.py)."""
    policy, reward = gpt2_policy_and_roberta_reward
    out = tmp_path / "run"
    cfg = load_config(CriticFreeConfig, CONFIGS / "grpo_dolly_gpt2.yaml", [
        f"run.output_dir={out}", "run.progress=false", "run.save_every=0", f"data.path={DOLLY}",
        "data.max_samples=64", f"model.policy={policy}", f"model.reward={reward}",
        "train.batch_size=2", "algo.total_prompts=4", "algo.num_minibatches=2"])
    train_critic_free(cfg)
    rows = records(out)
    assert len(rows) == 2 and rows[0]["group/reward_std"] > 0  # the reward model tells apart
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert samples and all(isinstance(s["response"], str) for s in samples)


def test_gspo_clips_whole_responses(tmp_path: Path) -> None:
    """algo.ratio=sequence (GSPO): one ratio per response, so a response is clipped with all
    its tokens or not at all; with GSPO's narrow ranges the second epoch clips some."""
    out = tmp_path / "run"
    train_critic_free(tiny("grpo", out, "train.batch_size=2", "algo.total_prompts=4",
                           "algo.ratio=sequence", "algo.clip_low=3e-4", "algo.clip_high=4e-4",
                           "algo.update_epochs=2", "algo.num_minibatches=1"))
    rows = records(out)
    clipped = [r["policy/clipfrac_low"] + r["policy/clipfrac_high"] for r in rows]
    assert all(0 < c < 1 for c in clipped), clipped
    # With every response 12 tokens long, the clipped share of tokens is a whole number of the
    # 8 responses per epoch, averaged over 2 epochs: a multiple of 1/16.
    assert all(r["response/length"] == 12 for r in rows)
    assert all(abs(c * 16 - round(c * 16)) < 1e-6 for c in clipped), clipped
