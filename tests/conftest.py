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


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """A run installs SIGINT/SIGTERM handlers while it trains; a test that stops early (an
    expected error) must not leave them installed in the test process."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
