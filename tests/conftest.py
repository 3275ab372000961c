"""Shared test fixtures. Tests never reach the hub: offline flags are set before any import."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import signal  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def roberta_tokenizer(tmp_path_factory):
    """The real roberta-base tokenizer with its special tokens named (the shared copy only has
    the vocabulary: its bos/eos/pad attributes are None), saved and reloaded like a hub one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHARED_DATA / "roberta-base-tokenizer")
    tokenizer.add_special_tokens({
        "bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"})
    folder = tmp_path_factory.mktemp("roberta-tokenizer")
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """The real GPT-2 tokenizer with pad = eos (GPT-2 has no pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SHARED_DATA / "gpt2-tokenizer")
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(scope="session")
def roberta_tokenizer_dir(roberta_tokenizer, tmp_path_factory) -> Path:
    """A folder holding the real roberta-base tokenizer, as a hub download would."""
    folder = tmp_path_factory.mktemp("roberta-tokenizer-dir")
    roberta_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(gpt2_tokenizer, tmp_path_factory) -> Path:
    """A folder holding the real GPT-2 tokenizer (pad = eos)."""
    folder = tmp_path_factory.mktemp("gpt2-tokenizer-dir")
    gpt2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def gpt2_policy_and_roberta_reward(gpt2_tokenizer_dir, roberta_tokenizer_dir,
                                   tmp_path_factory) -> tuple[Path, Path]:
    """(policy, reward model) folders: a 2-layer GPT-2 policy with the real GPT-2 tokenizer and
    a 2-layer RoBERTa reward model with the real roberta-base tokenizer, random weights: the
    reference workload's shapes in miniature, two tokenizers included."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GPT2Config,
        RobertaConfig,
    )

    folder = tmp_path_factory.mktemp("cross-tokenizer-models")
    gpt2 = AutoTokenizer.from_pretrained(gpt2_tokenizer_dir)
    policy_config = GPT2Config(vocab_size=len(gpt2), n_embd=32, n_layer=2, n_head=2,
                               n_positions=256)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(policy_config).save_pretrained(folder / "policy")
    gpt2.save_pretrained(folder / "policy")
    roberta = AutoTokenizer.from_pretrained(roberta_tokenizer_dir)
    reward_config = RobertaConfig(vocab_size=len(roberta), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=514, type_vocab_size=1, num_labels=1,
                                  pad_token_id=roberta.pad_token_id)
    AutoModelForSequenceClassification.from_config(reward_config).save_pretrained(folder / "rm")
    roberta.save_pretrained(folder / "rm")
    return folder / "policy", folder / "rm"


@pytest.fixture
def cut_and_resumed(tmp_path):
    """A run to the end in tmp_path/full, and in tmp_path/cut a copy of it as if it had died
    just after checkpoint `step` (later checkpoints and the final `saved` folders removed),
    resumed with run.resume=true: `train(out, *extra_overrides)` runs the stage."""
    import shutil

    def run(train, step: int, saved: list[str]) -> tuple[Path, Path]:
        full, cut = tmp_path / "full", tmp_path / "cut"
        train(full)
        shutil.copytree(full, cut)
        for path in cut.glob("checkpoint-*"):
            if int(path.name.split("-")[1]) > step:
                shutil.rmtree(path)
        for name in saved:
            shutil.rmtree(cut / name)
        train(cut, "run.resume=true")
        return full, cut

    return run


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """A run installs SIGINT/SIGTERM handlers while it trains; a test that stops early (an
    expected error) must not leave them installed in the test process."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
