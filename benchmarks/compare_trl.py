"""rlhf against Hugging Face TRL on the same workload, measured in the same run (CPU).

Reward model: rlhf's `reward_update` against the newest `trl.RewardTrainer`. PPO: rlhf's
`train_ppo` against `trl.experimental.ppo.PPOTrainer` of trl 1.12.0 (the last release with
it). Two more PPO comparisons run when named with --only: `ppo-lora` (rlhf with LoRA against
trl 1.12's PPOTrainer with the same peft LoraConfig) and `ppo-value-head` (rlhf's shared-trunk
value head, model.value=shared, against trl 0.11.4's PPOTrainer with its
AutoModelForCausalLMWithValueHead), and `ppo-bf16` (rlhf with run.mixed_precision=bf16 against
trl 1.12's PPOTrainer with bf16=True). TRL is never a dependency of rlhf: it lives in its own
virtual environments, benchmarks/.venv-trl-reward and benchmarks/.venv-trl-ppo, each pinned to
the main venv's torch, transformers, accelerate, datasets and tokenizers (and peft), and
benchmarks/.venv-trl-011 (trl 0.11.4 needs transformers 4.x: the main venv's torch and numpy,
transformers 4.46 and the libraries of its time).

    .venv/bin/python benchmarks/compare_trl.py --setup   # create the TRL venvs (idempotent)
    .venv/bin/python benchmarks/compare_trl.py           # the comparison (~1 h, 2 CPUs)
    .venv/bin/python benchmarks/compare_trl.py --quick   # tiny sizes, one repeat (smoke test)
    .venv/bin/python benchmarks/compare_trl.py --only ppo-lora ppo-value-head   # ~35 min
    .venv/bin/python benchmarks/compare_trl.py --only ppo-bf16 --ppo-sizes gpt2-small

Same workload on both sides: the model folders are built once here (fixed seed, random
weights) and loaded by both; the reward data is tokenised once here (rlhf's sentence-pair
encoding, prompts cut from the left to max length) and both sides train on the same batches
in the same order; PPO prompts are the same dolly prompts, tokenised once here. A third
comparison lets each tool batch the same reward pairs its own default way (rlhf groups by
length, TRL samples at random) and times one whole epoch. Each measurement is its own
process (own timing, own peak RSS), alternating rlhf, TRL, rlhf, TRL, ...; the tables give
medians over the repeats and their ratios. Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "trl_workers"
SHARED = HERE.parents[1] / "shared" / "data"
ROBERTA = SHARED / "roberta-base-tokenizer"
GPT2 = SHARED / "gpt2-tokenizer"
HH = SHARED / "hh-rlhf-harmless-base-test" / "test.jsonl.gz"
DOLLY = SHARED / "dolly-15k-prompts-oneill"
MAIN_PYTHON = Path(sys.executable)
VENVS = {"reward": HERE / ".venv-trl-reward", "ppo": HERE / ".venv-trl-ppo",
         "trl011": HERE / ".venv-trl-011"}
TRL_VERSIONS = {"reward": "1.16.0", "ppo": "1.12.0", "trl011": "0.11.4"}
# Pinned to what the main venv has, so both sides run the same torch, kernels and tokenizers.
PINNED = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors",
          "huggingface_hub", "numpy")
# What each venv takes from the main venv (the others get their own pins below).
SHARED_PINS = {"reward": PINNED, "ppo": PINNED + ("peft",), "trl011": ("torch", "numpy")}
# trl 0.11.4 (the seed's stack, the last release with the value-head PPOTrainer) predates
# transformers 5: it runs on the 4.46 line and the libraries of its time, with the main venv's
# CPU torch; trl 0.11.4 imports rich without declaring it.
OWN_PINS = {"trl011": ("transformers==4.46.3", "tokenizers==0.20.3", "accelerate==1.0.1",
                       "datasets==3.1.0", "huggingface_hub==0.26.5", "safetensors==0.4.5",
                       "tyro==0.8.14", "rich==13.9.4")}
# What each worker imports, checked once the venv is made (trl imports lazily).
TRAINERS = {"reward": "from trl import RewardTrainer",
            "ppo": "from trl.experimental.ppo import PPOTrainer; import peft",
            "trl011": "from trl import PPOTrainer, AutoModelForCausalLMWithValueHead"}
RESULT_PREFIX = "RESULT "

REWARD_SIZES = {  # RobertaConfig keywords
    "distilroberta": {"num_hidden_layers": 6, "hidden_size": 768, "num_attention_heads": 12,
                      "intermediate_size": 3072},
    "tiny": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 4,
             "intermediate_size": 512},
}
PPO_SIZES = {  # GPT2Config keywords
    "gpt2-small": {},
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4},
}


# -- setup -------------------------------------------------------------------------------------


def pinned_requirements(kind: str) -> list[str]:
    """trl plus the main venv's versions of the packages both sides share."""
    versions = {name: importlib.metadata.version(name) for name in SHARED_PINS[kind]}
    versions["torch"] = versions["torch"].split("+")[0]  # the local CPU wheel satisfies it
    return ([f"trl=={TRL_VERSIONS[kind]}"]
            + [f"{name}=={versions[name]}" for name in SHARED_PINS[kind]]
            + list(OWN_PINS.get(kind, ())))


def setup(kind: str) -> None:
    """Create one TRL virtual environment; nothing to do when it already has these pins."""
    venv = VENVS[kind]
    python = venv / "bin" / "python"
    requirements = pinned_requirements(kind)
    stamp = venv / "compare_trl_requirements.json"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == requirements:
        print(f"[setup] {venv.name}: up to date ({requirements[0]})", flush=True)
        return
    print(f"[setup] {venv.name}: installing {' '.join(requirements)}", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    torch_pin = next(r for r in requirements if r.startswith("torch=="))
    subprocess.run(pip + [torch_pin], check=True)  # torch first: the CPU build, never CUDA
    subprocess.run(pip + requirements, check=True)
    check = subprocess.run([str(python), "-c", f"import torch, trl; {TRAINERS[kind]}; "
                            "print(torch.__version__, trl.__version__)"],
                           check=True, capture_output=True, text=True)
    torch_version, trl_version = check.stdout.split()
    main_torch = importlib.metadata.version("torch")
    if torch_version != main_torch or trl_version != TRL_VERSIONS[kind]:
        raise SystemExit(f"{venv}: got torch {torch_version}, trl {trl_version}; expected torch "
                         f"{main_torch} (as in the main venv) and trl {TRL_VERSIONS[kind]}")
    stamp.write_text(json.dumps(requirements))
    print(f"[setup] {venv.name}: torch {torch_version}, trl {trl_version}", flush=True)


# -- the shared inputs: models, reward pairs, prompts --------------------------------------------


def roberta_tokenizer():
    """The shared roberta-base tokenizer with its special tokens declared, as on the hub."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ROBERTA))
    tokenizer.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                                  "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                                  "mask_token": "<mask>"})
    return tokenizer


def gpt2_tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(GPT2))
    tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has no pad token; both sides pad with EOS
    return tokenizer


def build_reward_model(folder: Path, size: str, seed: int) -> Path:
    """A random-weight RoBERTa sequence classifier (one output) with the roberta tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, RobertaConfig

    if (folder / "config.json").exists():
        return folder
    tokenizer = roberta_tokenizer()
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514,
                           type_vocab_size=1, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                           **REWARD_SIZES[size])
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_ppo_models(folder: Path, size: str, seed: int) -> tuple[Path, Path]:
    """A random-weight GPT-2 policy and a GPT-2 sequence classifier (reward and value model)."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        GPT2Config,
    )

    policy, reward = folder / "policy", folder / "reward"
    tokenizer = gpt2_tokenizer()
    if not (policy / "config.json").exists():
        torch.manual_seed(seed)
        AutoModelForCausalLM.from_config(GPT2Config(**PPO_SIZES[size])).save_pretrained(policy)
        tokenizer.save_pretrained(policy)
    if not (reward / "config.json").exists():
        torch.manual_seed(seed + 1)
        config = GPT2Config(num_labels=1, pad_token_id=tokenizer.pad_token_id,
                            **PPO_SIZES[size])
        AutoModelForSequenceClassification.from_config(config).save_pretrained(reward)
        tokenizer.save_pretrained(reward)
    return policy, reward


def tokenized_train_pairs(tokenizer_folder: Path, args):
    """HH harmless-base's training split (rlhf's seeded split), tokenised by rlhf as
    sentence pairs cut from the left to max length: what both sides of a reward run train on."""
    from rlhf.data.preferences import load_preferences
    from rlhf.data.reward_text import tokenize_preferences
    from rlhf.models import load_tokenizer

    tokenizer = load_tokenizer(str(tokenizer_folder))
    train, _ = load_preferences(str(HH), test_fraction=0.1, seed=args.seed, tokenizer=tokenizer)
    return tokenize_preferences(train, tokenizer, template="pair", separator="\n",
                                max_length=args.max_length)


def write_pairs(path: Path, data, order: list[int]) -> dict:
    """The pairs at `order`, as chosen and rejected id lists, written to `path` for both sides."""
    pairs = {"chosen": [data.input_ids[i][0] for i in order],
             "rejected": [data.input_ids[i][1] for i in order]}
    path.write_text(json.dumps(pairs))
    return pairs


def reward_pairs(path: Path, tokenizer_folder: Path, args) -> dict:
    """The training pairs of the first warm-up + timed steps, in rlhf's own (length-grouped,
    seeded) batch order."""
    from rlhf.data.batching import epoch_batches

    data = tokenized_train_pairs(tokenizer_folder, args)
    lengths = [max(len(ids) for ids in example) for example in data.input_ids]
    steps = args.reward_warmup + max(args.reward_steps.values())
    batches = epoch_batches(len(data.best), args.batch_size, seed=args.seed, epoch=0,
                            lengths=lengths)[:steps]
    return write_pairs(path, data, [index for batch in batches for index in batch])


def epoch_pairs(path: Path, tokenizer_folder: Path, args) -> dict:
    """The first `args.epoch_pairs` training pairs in the dataset's order: each side orders
    them for its one epoch as it does by default."""
    return write_pairs(path, tokenized_train_pairs(tokenizer_folder, args),
                       list(range(args.epoch_pairs)))


def token_counts(pairs: dict, batch_size: int, first: int, steps: int) -> tuple[float, float]:
    """(real, padded) tokens per timed step: chosen and rejected padded to the batch's longest."""
    real = padded = 0
    for step in range(first, first + steps):
        rows = slice(step * batch_size, (step + 1) * batch_size)
        ids = pairs["chosen"][rows] + pairs["rejected"][rows]
        real += sum(len(row) for row in ids)
        padded += max(len(row) for row in ids) * len(ids)
    return real / steps, padded / steps


def ppo_prompts(path: Path, policy: Path, args) -> dict:
    """The dolly prompts of a `train_ppo` run with data.max_samples = batch size, tokenised by
    rlhf exactly as the run does; TRL gets these ids (it needs pre-tokenised prompts)."""
    from rlhf.data.prompts import load_prompts
    from rlhf.models import load_tokenizer

    tokenizer = load_tokenizer(str(policy))
    _, ids = load_prompts(str(DOLLY), template="dolly", tokenizer=tokenizer,
                          max_prompt_tokens=args.max_prompt_tokens, context_chars=500,
                          max_samples=args.batch_size, seed=args.seed)
    prompts = {"input_ids": ids, "path": str(DOLLY), "max_prompt_tokens": args.max_prompt_tokens,
               "context_chars": 500, "query_width": max(len(row) for row in ids),
               "prompt_lengths": [len(row) for row in ids]}
    path.write_text(json.dumps(prompts))
    return prompts


# -- running one measurement -----------------------------------------------------------------------


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads), "WANDB_MODE": "disabled",
                "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONHASHSEED": "0"})
    return env


def run_worker(python: Path, script: str, spec: dict, work: Path) -> dict:
    """One measurement in its own process; adds its wall time and whole-process peak RSS."""
    folder = Path(tempfile.mkdtemp(prefix=script.split(".")[0] + "-", dir=work))
    spec = spec | {"output_dir": str(folder)}
    (folder / "spec.json").write_text(json.dumps(spec))
    log = folder / "log.txt"
    started = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen([str(python), str(WORKERS / script), str(folder / "spec.json")],
                                   stdout=handle, stderr=subprocess.STDOUT, cwd=folder,
                                   env=worker_env(spec["threads"]))
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    output = log.read_text(errors="replace")
    results = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not results:
        raise SystemExit(f"{script} failed (exit {process.returncode}); its output:\n"
                         f"{output[-6000:]}")
    result = json.loads(results[-1][len(RESULT_PREFIX):])
    shutil.rmtree(folder, ignore_errors=True)
    return result | {"wall_s": wall, "process_peak_rss_mb": usage.ru_maxrss / 1024}


def alternate(name: str, runs: list[tuple[str, Path, str, dict]], repeats: int,
              work: Path) -> dict[str, list[dict]]:
    """rlhf, TRL, rlhf, TRL, ...: each side `repeats` times, each run its own process."""
    results: dict[str, list[dict]] = {side: [] for side, *_ in runs}
    for repeat in range(repeats):
        for side, python, script, spec in runs:
            result = run_worker(python, script, spec, work)
            results[side].append(result)
            shown = {k: v for k, v in result.items() if not isinstance(v, (list, dict))}
            print(f"[{name}] repeat {repeat + 1}/{repeats} {side}: {json.dumps(shown)}",
                  flush=True)
    return results


def med(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


# -- the two comparisons -------------------------------------------------------------------------


def compare_reward(args, models: Path, work: Path) -> list[dict]:
    rows = []
    for size in args.reward_sizes:
        model = build_reward_model(models / f"reward-{size}", size, args.seed)
        data = work / "reward_pairs.json"
        pairs = reward_pairs(data, model, args)
        steps = args.reward_steps[size]
        spec = {"model": str(model), "data": str(data), "batch_size": args.batch_size,
                "warmup": args.reward_warmup, "steps": steps, "lr": 1e-5, "max_grad_norm": 1.0,
                "max_length": args.max_length, "threads": args.threads, "seed": args.seed}
        results = alternate(f"reward {size}", [
            ("rlhf", MAIN_PYTHON, "reward_rlhf.py", spec),
            ("trl", VENVS["reward"] / "bin" / "python", "reward_trl.py", spec)],
            args.repeats, work)
        real, padded = token_counts(pairs, args.batch_size, args.reward_warmup, steps)
        rows.append({"size": size, "steps": steps, "results": results, "real_tokens": real,
                     "padded_tokens": padded})
    return rows


def compare_reward_epoch(args, models: Path, work: Path) -> list[dict]:
    """One whole epoch over the same pairs, each side batching them as it does by default
    (rlhf: length-grouped; TRL: random). TRL given rlhf's grouped batches is `compare_reward`."""
    size = args.reward_sizes[0]  # distilroberta unless --quick
    model = build_reward_model(models / f"reward-{size}", size, args.seed)
    data = work / "epoch_pairs.json"
    epoch_pairs(data, model, args)
    spec = {"model": str(model), "data": str(data), "batch_size": args.batch_size,
            "epoch": True, "lr": 1e-5, "max_grad_norm": 1.0, "max_length": args.max_length,
            "threads": args.threads, "seed": args.seed}
    results = alternate(f"reward epoch {size}", [
        ("rlhf", MAIN_PYTHON, "reward_rlhf.py", spec),
        ("trl", VENVS["reward"] / "bin" / "python", "reward_trl.py", spec)], args.repeats, work)
    return [{"size": size, "pairs": args.epoch_pairs, "results": results}]


def compare_ppo(args, models: Path, work: Path) -> list[dict]:
    rows = []
    for size in args.ppo_sizes:
        policy, reward = build_ppo_models(models / f"ppo-{size}", size, args.seed)
        prompts_file = work / f"prompts-{size}.json"
        prompts = ppo_prompts(prompts_file, policy, args)
        for new_tokens in args.new_tokens:
            iterations = args.ppo_iterations[size]
            spec = {"policy": str(policy), "reward": str(reward), "prompts": str(prompts_file),
                    "new_tokens": new_tokens, "warmup": args.ppo_warmup,
                    "iterations": iterations, "lr": 3e-6, "temperature": args.temperature,
                    "threads": args.threads, "seed": args.seed}
            results = alternate(f"ppo {size} N={new_tokens}", [
                ("rlhf", MAIN_PYTHON, "ppo_rlhf.py", spec),
                ("trl", VENVS["ppo"] / "bin" / "python", "ppo_trl.py", spec)],
                args.repeats, work)
            rows.append({"size": size, "new_tokens": new_tokens, "iterations": iterations,
                         "results": results, "query_width": prompts["query_width"],
                         "prompt_lengths": prompts["prompt_lengths"]})
    return rows


# The same-math PPO variants (issue: LoRA against trl 1.12 with peft, the shared trunk against
# trl 0.11.4's value-head model). peft's own default for GPT-2 is [c_attn]; r 16 and alpha 32
# are TRL's ModelConfig defaults; dropout 0 so that the update computes the function the
# rollout sampled from (TRL's default 0.05 would make the first ratio differ from 1).
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["c_attn"]}
VARIANTS = {
    # name: (rlhf variant, TRL venv, TRL worker, TRL label, spec overrides)
    "ppo-lora": ("lora", "ppo", "ppo_trl.py", "trl 1.12 PPOTrainer + peft",
                 {"variant": "lora", "lora": LORA}),
    # bf16 on both sides (issue 18): rlhf's run.mixed_precision=bf16, trl's bf16=True.
    "ppo-bf16": ("separate", "ppo", "ppo_trl.py", "trl 1.12 PPOTrainer, bf16=True",
                 {"bf16": True}),
    # Temperature 1: trl 0.11 computes log-probs from raw logits whatever the temperature.
    "ppo-value-head": ("shared", "trl011", "ppo_trl011.py", "trl 0.11.4 PPOTrainer (value head)",
                       {"variant": "shared", "temperature": 1.0, "ratio_threshold": 10.0}),
}


def compare_ppo_variant(name: str, args, models: Path, work: Path) -> list[dict]:
    """rlhf's `variant` against the TRL that has the same models, alternating runs."""
    _, kind, script, _, overrides = VARIANTS[name]
    rows = []
    for size in args.ppo_sizes:
        policy, reward = build_ppo_models(models / f"ppo-{size}", size, args.seed)
        prompts_file = work / f"prompts-{size}.json"
        prompts = ppo_prompts(prompts_file, policy, args)
        for new_tokens in args.variant_new_tokens:
            iterations = args.ppo_iterations[size]
            spec = {"policy": str(policy), "reward": str(reward), "prompts": str(prompts_file),
                    "new_tokens": new_tokens, "warmup": args.ppo_warmup,
                    "iterations": iterations, "lr": 3e-6, "temperature": args.temperature,
                    "kl_coef": 0.05, "threads": args.threads, "seed": args.seed} | overrides
            results = alternate(f"{name} {size} N={new_tokens}", [
                ("rlhf", MAIN_PYTHON, "ppo_rlhf.py", spec),
                ("trl", VENVS[kind] / "bin" / "python", script, spec)], args.repeats, work)
            rows.append({"size": size, "new_tokens": new_tokens, "iterations": iterations,
                         "spec": {k: v for k, v in spec.items() if k != "output_dir"},
                         "results": results, "query_width": prompts["query_width"],
                         "prompt_lengths": prompts["prompt_lengths"]})
    return rows


# -- report --------------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory = next(line for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f", {int(memory.split()[1]) / 1024**2:.0f} GB RAM"
    except (OSError, StopIteration):
        memory = ""
    return f"{cpu}, {os.cpu_count()} CPUs{memory}, Python {platform.python_version()}"


def cpu_flags() -> str:
    """The flags that decide which float32/bf16 kernels oneDNN can use on this CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
                return " ".join(flag for flag in wanted if flag in flags) or "none of avx2/512"
    except OSError:
        pass
    return "unknown"


def print_reward(rows: list[dict], args) -> None:
    print(f"\n### Reward model: pairs/s (batch {args.batch_size} pairs, max length "
          f"{args.max_length}, {args.reward_warmup} warm-up step(s), median of {args.repeats} "
          "runs per side)\n")
    print_header(["model", "timed steps", "real / padded tokens per step", "rlhf pairs/s",
                  "TRL pairs/s", "**speed ratio rlhf / TRL**"])
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        speed = med(ours, "pairs_per_s") / med(theirs, "pairs_per_s")
        print(f"| {row['size']} | {row['steps']} | {row['real_tokens']:.0f} / "
              f"{row['padded_tokens']:.0f} | {med(ours, 'pairs_per_s'):.2f} | "
              f"{med(theirs, 'pairs_per_s'):.2f} | **{speed:.2f}x** | "
              f"{memory_cells(ours, theirs)} |")
    print()
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        print(f"- {row['size']}: first-step loss rlhf {ours[0]['losses'][0]:.6f}, TRL "
              f"{theirs[0]['losses'][0]:.6f} (same weights, same batch: they should agree); "
              f"per-run pairs/s rlhf {rounded(ours, 'pairs_per_s')}, TRL "
              f"{rounded(theirs, 'pairs_per_s')}")
    print_settings(rows)


def print_reward_epoch(rows: list[dict], args) -> None:
    print(f"\n### Reward model, each tool's default batching (rlhf length-grouped, TRL random): "
          f"one epoch over the same {args.epoch_pairs} pairs (batch {args.batch_size}, median of "
          f"{args.repeats} runs per side)\n")
    print_header(["model", "rlhf real / padded tokens", "TRL real / padded tokens",
                  "rlhf epoch s", "TRL epoch s", "**speed ratio rlhf / TRL**"])
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        mine, trl = med(ours, "epoch_s"), med(theirs, "epoch_s")
        print(f"| {row['size']} | {tokens_cell(ours)} | {tokens_cell(theirs)} | {mine:.1f} | "
              f"{trl:.1f} | **{trl / mine:.2f}x** | {memory_cells(ours, theirs)} |")
    print()
    for row in rows:
        print(f"- {row['size']}: per-run epoch s rlhf {rounded(row['results']['rlhf'], 'epoch_s')}"
              f", TRL {rounded(row['results']['trl'], 'epoch_s')}")


def tokens_cell(runs: list[dict]) -> str:
    return f"{runs[0]['tokens']['real']} / {runs[0]['tokens']['padded']}"


def print_header(columns: list[str]) -> None:
    """A markdown table header: the given columns, then the three peak-memory columns."""
    columns = columns + ["rlhf peak RSS (MB)", "TRL peak RSS (MB)", "RSS ratio rlhf / TRL"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def memory_cells(ours: list[dict], theirs: list[dict]) -> str:
    """The three peak-memory cells of a row: rlhf, TRL (medians) and their ratio."""
    mine, trl = med(ours, "peak_rss_mb"), med(theirs, "peak_rss_mb")
    return f"{mine:.0f} | {trl:.0f} | {mine / trl:.2f}"


def rounded(runs: list[dict], key: str) -> list[float]:
    return [round(run[key], 2) for run in runs]


def print_settings(rows: list[dict]) -> None:
    """What each side actually ran with (read back from the trainers, not assumed)."""
    for side in ("rlhf", "trl"):
        seen = {json.dumps(run["settings"], sort_keys=True)
                for row in rows for run in row["results"][side]}
        print(f"- {side} settings: {'; '.join(sorted(seen))}")


def print_ppo(rows: list[dict], args) -> None:
    print(f"\n### PPO: seconds per iteration (batch {args.batch_size}, 4 PPO epochs x 1 "
          f"minibatch, {args.ppo_warmup} warm-up iteration(s), median of {args.repeats} runs "
          "per side)\n")
    print_header(["policy size", "new tokens", "timed iterations", "rlhf s/iter", "TRL s/iter",
                  "TRL net of gc.collect", "TRL gc.collect s/iter", "**speed-up vs TRL**",
                  "speed-up vs TRL net of gc"])
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        mine, trl = med(ours, "iteration_s_median"), med(theirs, "iteration_s_median")
        net = med(theirs, "net_iteration_s_median")
        print(f"| {row['size']} | {row['new_tokens']} | {row['iterations']} | {mine:.2f} | "
              f"{trl:.2f} | {net:.2f} | {med(theirs, 'gc_s_median'):.2f} | "
              f"**{trl / mine:.2f}x** | {net / mine:.2f}x | {memory_cells(ours, theirs)} |")
    print()
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        lengths = [x for r in ours for x in r["response_length"]]
        generated = [x for r in theirs for x in r["response_length"]]
        eos = sum(x for r in theirs for x in r["eos_tokens"])
        phases = {key: round(statistics.median(r["phases"].get(key, 0.0) for r in ours), 2)
                  for key in ours[0]["phases"]}
        print(f"- {row['size']} N={row['new_tokens']}: mean response length rlhf "
              f"{statistics.mean(lengths):.2f} tokens; TRL generated "
              f"{statistics.mean(generated):.2f} tokens per row, {eos} of them EOS; prompts "
              f"{row['prompt_lengths']} tokens (left-padded to {row['query_width']}); rlhf "
              f"phases (s) {phases}; TRL gc.collect calls per run {theirs[0]['gc_calls']}; "
              f"per-run s/iter rlhf {rounded(ours, 'iteration_s_median')}, TRL "
              f"{rounded(theirs, 'iteration_s_median')}")
    print_settings(rows)


PHASES = ("generate", "rollout forward", "score", "update forward", "backward", "optimizer")


def phase_table(run: dict) -> dict[str, float]:
    """One run's phases (s per iteration; medians over its timed iterations) and `other`: the
    iteration's rest (losses, GAE, statistics, bookkeeping)."""
    phases = {name: run["phases"].get(name, 0.0) for name in PHASES}
    phases["other"] = run["iteration_s_median"] - sum(phases.values())
    return phases


def print_ppo_variant(name: str, rows: list[dict], args) -> None:
    rlhf_variant, _, _, label, _ = VARIANTS[name]
    print(f"\n### PPO, rlhf {rlhf_variant} against {label}: seconds per iteration (batch "
          f"{args.batch_size}, 4 PPO epochs x 1 minibatch, {args.ppo_warmup} warm-up "
          f"iteration(s), median of {args.repeats} runs per side)\n")
    print_header(["policy size", "new tokens", "timed iterations", "rlhf s/iter", "TRL s/iter",
                  "**speed-up vs TRL**"])
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        mine, trl = med(ours, "iteration_s_median"), med(theirs, "iteration_s_median")
        print(f"| {row['size']} | {row['new_tokens']} | {row['iterations']} | {mine:.2f} | "
              f"{trl:.2f} | **{trl / mine:.2f}x** | {memory_cells(ours, theirs)} |")
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        print(f"\nPhases at {row['size']} N={row['new_tokens']} (s per iteration, median over "
              "runs):\n")
        print("| phase | rlhf | TRL | TRL - rlhf |\n|---|---|---|---|")
        for phase in PHASES + ("other",):
            mine = statistics.median(phase_table(run)[phase] for run in ours)
            trl = statistics.median(phase_table(run)[phase] for run in theirs)
            print(f"| {phase} | {mine:.2f} | {trl:.2f} | {trl - mine:+.2f} |")
    print()
    for row in rows:
        ours, theirs = row["results"]["rlhf"], row["results"]["trl"]
        mine = [x for r in ours for x in r["response_length"]]
        trl = [x for r in theirs for x in r["response_length"]]
        print(f"- {row['size']} N={row['new_tokens']}: mean response length rlhf "
              f"{statistics.mean(mine):.2f}, TRL {statistics.mean(trl):.2f} tokens; EOS "
              f"sampled by TRL {sum(x for r in theirs for x in r['eos_tokens'])}; per-run s/iter "
              f"rlhf {rounded(ours, 'iteration_s_median')}, TRL "
              f"{rounded(theirs, 'iteration_s_median')}; per-run peak RSS MB rlhf "
              f"{[round(r['peak_rss_mb']) for r in ours]}, TRL "
              f"{[round(r['peak_rss_mb']) for r in theirs]}")
    print_settings(rows)


def write_json(name: str, rows: list[dict], args, header: dict) -> Path:
    """Every run's result, the settings and the machine, for the record."""
    sizes = "_".join(args.ppo_sizes)
    path = HERE / "results" / f"compare_trl_{name}_{sizes}.json".replace("-", "_")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(header | {"comparison": name, "rows": rows}, indent=1) + "\n")
    return path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create the TRL venvs, then stop")
    parser.add_argument("--only", nargs="+",
                        choices=["reward", "reward-epoch", "ppo", *VARIANTS],
                        help="run these comparisons only (ppo-lora and ppo-value-head run only "
                             "when named here)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one repeat, few steps: a smoke test of the harness")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reward-sizes", nargs="+", choices=list(REWARD_SIZES),
                        default=["distilroberta", "tiny"])
    parser.add_argument("--ppo-sizes", nargs="+", choices=list(PPO_SIZES),
                        default=["gpt2-small", "tiny"])
    parser.add_argument("--new-tokens", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--variant-new-tokens", nargs="+", type=int, default=[32],
                        help="new tokens of the ppo-lora / ppo-value-head comparisons")
    parser.add_argument("--reward-warmup", type=int, default=1)
    parser.add_argument("--reward-steps", type=int, help="timed steps (default 4, tiny 32)")
    parser.add_argument("--ppo-warmup", type=int, default=1)
    parser.add_argument("--ppo-iterations", type=int,
                        help="timed iterations (default gpt2-small 1, tiny 3)")
    parser.add_argument("--epoch-pairs", type=int, default=64,
                        help="pairs in the one-epoch reward comparison (default 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-prompt-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path,
                        help="keep the built model folders here and reuse them (default: a "
                             "temporary folder, removed afterwards)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.reward_sizes, args.ppo_sizes = 1, ["tiny"], ["tiny"]
        args.epoch_pairs = 16
    # Tuned so that the whole default comparison takes about an hour on 2 CPUs: a
    # GPT-2-small PPO iteration alone takes ~50 s (32 new tokens) there.
    args.reward_steps = {"distilroberta": args.reward_steps or 4, "tiny": args.reward_steps or 32}
    args.ppo_iterations = {"gpt2-small": args.ppo_iterations or 1,
                           "tiny": args.ppo_iterations or 3}
    if args.epoch_pairs % args.batch_size:
        parser.error("--epoch-pairs must be a multiple of --batch-size (full batches only)")
    if args.reward_warmup < 1 or args.ppo_warmup < 1:
        parser.error("at least one warm-up step/iteration: timing starts at its end")
    return args


NEEDS = {"reward": "reward", "reward-epoch": "reward", "ppo": "ppo", "ppo-lora": "ppo",
         "ppo-bf16": "ppo", "ppo-value-head": "trl011"}  # the TRL venv each comparison runs in


def main() -> None:
    args = parse_args()
    if args.setup:  # with --only: the venvs those comparisons need
        for kind in sorted({NEEDS[name] for name in args.only}) if args.only else VENVS:
            setup(kind)
        return
    chosen = args.only or ["reward", "reward-epoch", "ppo"]
    missing = sorted({str(VENVS[NEEDS[name]]) for name in chosen
                      if not (VENVS[NEEDS[name]] / "bin" / "python").exists()})
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run {Path(__file__).name} --setup first")
    os.environ.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compare-trl-") as tmp:
        work = Path(tmp)
        models = args.models_dir or work / "models"
        reward_rows = compare_reward(args, models, work) if "reward" in chosen else []
        epoch_rows = compare_reward_epoch(args, models, work) if "reward-epoch" in chosen else []
        ppo_rows = compare_ppo(args, models, work) if "ppo" in chosen else []
        variant_rows = {name: compare_ppo_variant(name, args, models, work)
                        for name in VARIANTS if name in chosen}
    versions = {"torch (every side)": importlib.metadata.version("torch"),
                "rlhf side": f"transformers {importlib.metadata.version('transformers')}, "
                             f"accelerate {importlib.metadata.version('accelerate')}, "
                             f"peft {importlib.metadata.version('peft')}"}
    for name, rows in [("reward", reward_rows), ("reward", epoch_rows), ("ppo", ppo_rows),
                       *variant_rows.items()]:
        for row in rows:
            trl_run = row["results"]["trl"][0]
            versions[f"{name} TRL side"] = (f"trl {trl_run['trl']}, transformers "
                                            f"{trl_run['transformers']}")
    header = {"command": f".venv/bin/python benchmarks/{Path(__file__).name} "
                         f"{' '.join(sys.argv[1:])}".rstrip(),
              "machine": machine(), "cpu_flags": cpu_flags(), "threads": args.threads,
              "versions": versions, "date": time.strftime("%Y-%m-%d %H:%M"),
              "wall_min": round((time.perf_counter() - started) / 60, 1)}
    print(f"\nCommand: `{header['command']}`")
    print(f"Machine: {machine()}; CPU flags: {header['cpu_flags']}; {args.threads} torch threads "
          f"per side; load average at the end {os.getloadavg()}")
    print("Versions: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))
    print(f"Total wall time: {header['wall_min']:.1f} min")
    lengths = {
        "reward": "reward " + ", ".join(f"{size} {args.reward_warmup} warm-up + "
                                        f"{args.reward_steps[size]} timed steps"
                                        for size in args.reward_sizes),
        "reward-epoch": f"reward epoch {args.reward_sizes[0]} {args.epoch_pairs} pairs, timed "
                        "whole"}
    for name in ("ppo", *VARIANTS):
        lengths[name] = f"{name} " + ", ".join(f"{size} {args.ppo_warmup} warm-up + "
                                               f"{args.ppo_iterations[size]} timed iteration(s)"
                                               for size in args.ppo_sizes)
    print("Run lengths: " + "; ".join(lengths[name] for name in chosen)
          + f"; {args.repeats} alternating runs per side")
    if reward_rows:
        print_reward(reward_rows, args)
    if epoch_rows:
        print_reward_epoch(epoch_rows, args)
    if ppo_rows:
        print_ppo(ppo_rows, args)
    for name, rows in variant_rows.items():
        print_ppo_variant(name, rows, args)
        if not args.quick:
            print(f"\n(written to {write_json(name, rows, args, header)})")


if __name__ == "__main__":
    main()
