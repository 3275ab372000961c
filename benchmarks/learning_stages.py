"""The pieces of `benchmarks/learning.py` before RL: the SFT policy, gold-labelled pairs, proxy
reward models and their accuracy against the gold, and best-of-n on the held-out prompts.

Each function is one stage as a user would run it (the stage functions of `rlhf`, in process),
writing into a work folder; see learning.py for the whole benchmark.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

GOLD = "rlhf.reward.gold:gold_descriptiveness"
PROMPTS = "builtin:descriptiveness"
MAX_PROMPT_TOKENS = 32  # as demo_configs/ppo.yaml
MAX_NEW_TOKENS = 16  # as demo_configs/ppo.yaml: RL, labels and best-of-n sample the same length
EVAL_PROMPTS = 64


def train_sft_policy(work: Path, *, examples: int, epochs: int) -> Path:
    """The demo's SFT stage on the demo's data (25 % vivid continuations): the start policy and
    the reference of every later stage."""
    from rlhf.data.synthetic import descriptiveness_pairs
    from rlhf.demo import VIVID_SFT_FRACTION, stage_config
    from rlhf.stages.sft import train_sft

    rng = random.Random(0)  # the demo's draw (rlhf.demo._write_sft_data)
    data = work / "data" / "sft.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    with open(data, "w", encoding="utf-8") as handle:
        for pair in descriptiveness_pairs(2000, seed=0)[:examples]:
            response = pair["chosen"] if rng.random() < VIVID_SFT_FRACTION else pair["rejected"]
            handle.write(json.dumps({"prompt": pair["prompt"], "response": response}) + "\n")
    train_sft(stage_config("sft", work, False, [f"data.path={data}", "run.progress=false",
                                                 f"train.epochs={epochs}"]))
    return work / "sft" / "model"


def write_test_prompts(work: Path) -> Path:
    """The synthetic task's test-split prompts as a prompt file (label-pairs reads `train`)."""
    from rlhf.data.sources import load_rows

    rows = load_rows(PROMPTS, split="test", test_split=None)[0]
    path = work / "data" / "test_prompts.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"prompt": row["prompt"]}) + "\n" for row in rows)
    return path


def label_gold_pairs(work: Path, sft: Path, *, train_pairs: int, test_pairs: int,
                     bt_temperature: float) -> dict:
    """`rlhf label-pairs` from the SFT policy: `train_pairs` on the train prompts (proxies
    train on their first N) and `test_pairs` on the test prompts (held-out accuracy)."""
    from rlhf.rl.gold_labels import label_pairs_file

    counts = {}
    for part, prompts, pairs, seed in (("train", PROMPTS, train_pairs, 0),
                                       ("test", str(write_test_prompts(work)), test_pairs, 1)):
        counts[part] = label_pairs_file(
            str(sft), prompts, str(work / "data" / f"gold_{part}.jsonl"), reward=GOLD,
            pairs=pairs, temperature=1.0, bt_temperature=bt_temperature,
            max_new_tokens=MAX_NEW_TOKENS, max_prompt_tokens=MAX_PROMPT_TOKENS,
            template="prompt", batch_size=64, seed=seed)
        print(f"[learning] gold pairs ({part}): {counts[part]}", flush=True)
    return counts


def pairs_file(work: Path, size: int) -> Path:
    """{"train": the first `size` train pairs, "test": every held-out pair}: one JSON file with
    named splits, read by train-reward and train-dpo alike."""
    path = work / "data" / f"pairs_{size}.json"
    if not path.exists():
        train, test = ([json.loads(line) for line in open(work / "data" / f"gold_{part}.jsonl")]
                       for part in ("train", "test"))
        path.write_text(json.dumps({"train": train[:size], "test": test}, indent=1))  # several lines: a one-line object reads as JSON lines
    return path


def train_proxy(work: Path, size: int, epochs: int) -> dict:
    """The demo's reward stage (tiny RoBERTa) on `size` gold-labelled pairs; its held-out
    metrics against the (noisy) Bradley-Terry labels."""
    from rlhf.demo import stage_config
    from rlhf.stages.reward import train_reward

    cfg = stage_config("reward", work, False, [
        f"data.path={pairs_file(work, size)}", f"run.output_dir={work / f'proxy_{size}'}",
        "run.progress=false", "run.eval_every=0", f"train.epochs={epochs}"])
    return train_reward(cfg)


def gold_accuracy(work: Path, size: int) -> dict:
    """The proxy on the held-out pairs: how often it orders a pair as the gold does (ties of
    the gold left out) and as the noisy label does."""
    from rlhf.reward.scorers import RewardModelScorer

    rows = [json.loads(line) for line in open(work / "data" / "gold_test.jsonl")]
    scorer = RewardModelScorer.from_pretrained(str(work / f"proxy_{size}" / "model"))
    prompts = [row["prompt"] for row in rows]
    chosen = scorer(prompts, [row["chosen"] for row in rows])  # (P,)
    rejected = scorer(prompts, [row["rejected"] for row in rows])  # (P,)
    agree_label = (chosen > rejected).float().mean()
    gold_order = [(row["chosen_gold"] > row["rejected_gold"]) for row in rows]
    untied = [i for i, row in enumerate(rows) if row["chosen_gold"] != row["rejected_gold"]]
    agree_gold = sum(bool((chosen[i] > rejected[i]) == gold_order[i]) for i in untied)
    return {"pairs": size, "test_pairs": len(rows), "accuracy_vs_label": float(agree_label),
            "accuracy_vs_gold": agree_gold / max(len(untied), 1)}


def eval_prompts(sft: Path):
    """(token ids, texts) of the RL runs' held-out prompts (their `eval` section's choice)."""
    from rlhf.config import PPOConfig, load_config
    from rlhf.demo import CONFIG_DIR
    from rlhf.models import load_tokenizer
    from rlhf.rl.evaluation import EVAL_PROMPT_SEED
    from rlhf.rl.setup import load_run_prompts

    cfg = load_config(PPOConfig, CONFIG_DIR / "ppo.yaml", [f"model.policy={sft}"])
    data = replace(cfg.data, split="test", max_samples=EVAL_PROMPTS)
    return load_run_prompts(data, load_tokenizer(str(sft)), EVAL_PROMPT_SEED)


def sample_best_of(work: Path, sft: Path, best_of: int) -> Path:
    """`rlhf generate --best-of N --reward-model GOLD --keep-candidates` on the held-out
    prompts: every candidate with its gold score; the proxies score them afterwards."""
    from rlhf.commands import generate_file

    _, texts = eval_prompts(sft)
    prompts = work / "data" / "eval_prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": text}) + "\n" for text in texts))
    output = work / "best_of_n.jsonl"
    generate_file(str(sft), str(prompts), str(output), template="prompt",
                  max_new_tokens=MAX_NEW_TOKENS, temperature=1.0, batch_size=256,
                  max_prompt_tokens=MAX_PROMPT_TOKENS, seed=0, best_of=best_of,
                  reward_model=GOLD, keep_candidates=True)
    return output


def best_of_n_points(work: Path, size: int, best_of: int) -> list[dict]:
    """For n = 1, 2, 4, ..., best_of: the proxy picks among each prompt's first n candidates;
    mean gold and proxy score of the picks against sqrt(best_of_n_kl(n))."""
    import torch

    from rlhf.algo.best_of_n import best_of_n, best_of_n_kl
    from rlhf.reward.scorers import RewardModelScorer

    lines = [json.loads(line) for line in open(work / "best_of_n.jsonl")]
    scorer = RewardModelScorer.from_pretrained(str(work / f"proxy_{size}" / "model"))
    texts = [c["response"] for line in lines for c in line["candidates"]]
    proxy = scorer([line["prompt"] for line in lines for _ in line["candidates"]],
                   texts).view(len(lines), best_of)  # (P, N)
    gold = torch.tensor([[c["score"] for c in line["candidates"]] for line in lines])  # (P, N)
    points, n = [], 1
    while n <= best_of:
        pick = best_of_n(proxy[:, :n])[:, None]  # (P, 1)
        kl = best_of_n_kl(n)
        points.append({"n": n, "kl": kl, "sqrt_kl": kl ** 0.5,
                       "gold": float(gold.gather(1, pick).mean()),
                       "proxy": float(proxy.gather(1, pick).mean()),
                       "gold_std": float(gold[:, 0].std()), "proxy_std": float(proxy[:, 0].std())})
        n *= 2
    return points
