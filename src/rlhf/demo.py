"""`rlhf demo`: the whole RLHF pipeline offline on a laptop CPU in a few minutes.

It mirrors the reference workload's task (people preferring more vividly descriptive
continuations) on the package's own synthetic data and built-in tiny models:

1. data: scene openings with a plain and a vivid continuation (`builtin:` sources), and
   byte-level BPE tokenizers trained on them (`builtin:tiny-gpt2`, `builtin:tiny-roberta`);
2. SFT: a tiny GPT-2-style policy learns to continue scenes in plain English;
3. reward model: a tiny RoBERTa-style encoder learns vivid > plain (held-out accuracy);
4. PPO: the policy is tuned against that reward model (it reads text with its own tokenizer);
5. DPO: the same SFT policy is optimised directly on the preference pairs instead;
6. report: the same held-out prompts answered by the SFT, PPO and DPO policies, scored by the
   reward model, with each one's KL to the SFT policy, and `report.html`.

Every stage is an ordinary config in `rlhf/demo_configs/` (package data, so the demo runs from
an installed package); the demo only points each stage at the
previous stage's output, so any stage can be rerun or changed alone.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from rlhf.config import DPOConfig, PPOConfig, RewardConfig, SFTConfig, load_config
from rlhf.data.prompts import load_prompts
from rlhf.data.synthetic import descriptiveness_pairs
from rlhf.errors import UserError
from rlhf.models import load_policy
from rlhf.report import report_run, write_report
from rlhf.reward.scorers import RewardModelScorer
from rlhf.rl.compare import compare_policies
from rlhf.rl.generation import stop_token_ids
from rlhf.stages.dpo.train import train_dpo
from rlhf.stages.ppo.train import train_ppo
from rlhf.stages.reward import train_reward
from rlhf.stages.sft import train_sft

CONFIG_DIR = Path(__file__).resolve().parent / "demo_configs"  # package data
STAGES = ("sft", "reward", "ppo", "dpo")

# Smaller sizes for CI: the same code path, a fraction of the work.
QUICK_OVERRIDES = {
    "sft": ["train.epochs=1", "data.max_samples=1200"],
    "reward": ["data.max_samples=600"],
    "ppo": ["ppo.total_episodes=640"],
    "dpo": ["data.max_samples=400"],
}

# What the demo must show (checked and printed at the end).
MIN_REWARD_ACCURACY = 0.95
MIN_SCORE_GAIN_IN_STD = 1.0
EVAL_PROMPTS = 64
# Share of SFT examples with the vivid continuation: enough for PPO to find vivid text, few
# enough that the SFT policy's mean score leaves room to rise.
VIVID_SFT_FRACTION = 0.25


@dataclass
class DemoResult:
    reward_accuracy: float
    score_gain_in_std: float
    kl_mean: float
    kl_target: float
    report: Path

    def failures(self) -> list[str]:
        found = []
        if self.reward_accuracy < MIN_REWARD_ACCURACY:
            found.append(f"reward-model accuracy {self.reward_accuracy:.3f} < "
                         f"{MIN_REWARD_ACCURACY}")
        if self.score_gain_in_std < MIN_SCORE_GAIN_IN_STD:
            found.append(f"score gain {self.score_gain_in_std:.2f} std < "
                         f"{MIN_SCORE_GAIN_IN_STD}")
        if self.kl_mean >= self.kl_target:
            found.append(f"mean KL {self.kl_mean:.2f} >= target {self.kl_target}")
        return found


def _header(step: int, text: str) -> None:
    print(f"\n=== [{step}/6] {text} ===", flush=True)


def stage_config(stage: str, output_dir: Path, quick: bool, extra: list[str]):
    """The stage's YAML from demo_configs/ with the run directory (and quick sizes) set."""

    path = CONFIG_DIR / f"{stage}.yaml"
    if not path.is_file():
        raise UserError(f"demo config {path} not found: the installed package is incomplete; "
                        "reinstall rlhf")
    schema = {"sft": SFTConfig, "reward": RewardConfig, "ppo": PPOConfig, "dpo": DPOConfig}[stage]
    overrides = [f"run.output_dir={output_dir / stage}", *extra]
    return load_config(schema, path, overrides + (QUICK_OVERRIDES[stage] if quick else []))


def run_demo(output_dir: str | Path, *, quick: bool = False) -> DemoResult:
    """Run every stage into `output_dir` and check what the demo must show."""

    output_dir = Path(output_dir)
    _header(1, "data and tokenizers (built in, offline)")
    sft_data = _write_sft_data(output_dir)
    _header(2, "SFT: teach a tiny GPT-2-style policy to continue scenes")
    train_sft(stage_config("sft", output_dir, quick, [f"data.path={sft_data}"]))
    report_run(output_dir / "sft")
    _header(3, "reward model: vivid continuations preferred to plain ones")
    reward_metrics = train_reward(stage_config("reward", output_dir, quick, []))
    report_run(output_dir / "reward")
    _header(4, "PPO: tune the policy against the reward model")
    ppo_cfg = stage_config("ppo", output_dir, quick, [
        f"model.policy={output_dir / 'sft' / 'model'}",
        f"model.reward={output_dir / 'reward' / 'model'}"])
    train_ppo(ppo_cfg)
    report_run(output_dir / "ppo")
    _header(5, "DPO: optimise the same SFT policy directly on the preference pairs")
    train_dpo(stage_config("dpo", output_dir, quick,
                           [f"model.name_or_path={output_dir / 'sft' / 'model'}"]))
    report_run(output_dir / "dpo")
    _header(6, "SFT, PPO and DPO on held-out prompts, and the report")
    comparison = _before_after(output_dir, ppo_cfg)
    report = write_report(output_dir)
    result = DemoResult(reward_accuracy=reward_metrics["eval/accuracy"],
                        score_gain_in_std=comparison["score_gain_in_reference_std"],
                        kl_mean=comparison["kl_mean"], kl_target=ppo_cfg.ppo.kl_target,
                        report=report)
    _print_result(result, comparison)
    return result


def _write_sft_data(output_dir: Path) -> Path:
    """SFT examples continuing each scene plainly or vividly at random (seeded).

    The SFT policy must sometimes write vivid text: if it never does, every rollout gets the
    same reward-model score and PPO has nothing to learn from.
    """


    pairs = descriptiveness_pairs(2000, seed=0)
    example = pairs[0]
    print(f"prompt:   {example['prompt']}\nvivid:    {example['chosen']}\n"
          f"plain:    {example['rejected']}", flush=True)
    rng = random.Random(0)
    path = output_dir / "data" / "sft.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for pair in pairs:
            response = pair["chosen"] if rng.random() < VIVID_SFT_FRACTION else pair["rejected"]
            handle.write(json.dumps({"prompt": pair["prompt"], "response": response}) + "\n")
    return path


def _before_after(output_dir: Path, cfg) -> dict[str, float]:
    """Answer the same held-out prompts with the SFT policy and with the PPO and DPO policies
    (same sampling seed), score all with the reward model, and measure each one's KL to SFT."""

    reference, tokenizer = load_policy(str(output_dir / "sft" / "model"))
    scorer = RewardModelScorer.from_pretrained(str(output_dir / "reward" / "model"))
    prompts, prompt_ids = load_prompts(
        cfg.data.path, split="test", template=cfg.data.template, tokenizer=tokenizer,
        max_prompt_tokens=cfg.data.max_prompt_tokens, max_samples=EVAL_PROMPTS, seed=1)
    compared = {}
    folders = {"ppo": output_dir / "ppo" / "policy", "dpo": output_dir / "dpo" / "model"}
    for name, folder in folders.items():
        policy, _ = load_policy(str(folder))
        compared[name] = compare_policies(
            policy.eval(), reference.eval(), tokenizer, scorer, prompt_ids, prompts.prompts,
            max_new_tokens=cfg.generate.max_new_tokens, temperature=cfg.generate.temperature,
            stop_token_ids=stop_token_ids(tokenizer, cfg.generate.stop_token),
            seed=cfg.run.seed)
    ppo, dpo = compared["ppo"], compared["dpo"]
    rows = [{"prompt": p, "before": b, "before_score": bs, "after": a, "after_score": a_s,
             "dpo": d, "dpo_score": d_s}
            for p, b, bs, a, a_s, d, d_s in zip(
                ppo.prompts, ppo.reference_responses, ppo.reference_scores.tolist(),
                ppo.policy_responses, ppo.policy_scores.tolist(), dpo.policy_responses,
                dpo.policy_scores.tolist(), strict=True)]
    with open(output_dir / "before_after.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    summary = ppo.summary() | {f"dpo_{key}": value for key, value in dpo.summary().items()
                               if not key.startswith("reference_")}
    (output_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    for row in rows[:3]:
        print(f"\nprompt: {row['prompt']}\n  SFT ({row['before_score']:+.2f}): {row['before']}"
              f"\n  PPO ({row['after_score']:+.2f}): {row['after']}"
              f"\n  DPO ({row['dpo_score']:+.2f}): {row['dpo']}")
    return summary


def _print_result(result: DemoResult, comparison: dict[str, float]) -> None:
    print("\n=== result ===")
    print(f"reward-model held-out accuracy: {result.reward_accuracy:.3f} "
          f"(needs >= {MIN_REWARD_ACCURACY})")
    print(f"PPO score gain on held-out prompts: {comparison['score_gain']:+.3f} = "
          f"{result.score_gain_in_std:.2f} reference std (needs >= {MIN_SCORE_GAIN_IN_STD})")
    print(f"mean KL to the SFT policy: {result.kl_mean:.2f} nats (target {result.kl_target})")
    print(f"DPO, the same prompts: score gain {comparison['dpo_score_gain']:+.3f} = "
          f"{comparison['dpo_score_gain_in_reference_std']:.2f} reference std, mean KL to the "
          f"SFT policy {comparison['dpo_kl_mean']:.2f} nats")
    print(f"report: {result.report.resolve()}", flush=True)
