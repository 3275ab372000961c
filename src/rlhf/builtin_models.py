"""Tiny random-weight models with a tokenizer trained on the package's own synthetic corpus.

`builtin:tiny-roberta` (an encoder reward model, scored at `<s>`) and `builtin:tiny-gpt2` (a
decoder: a policy, or a reward model scored at its last real token) let every stage run
offline in seconds, with no hub and no files outside the package: the demo, the tiny configs and
the tests use them. The tokenizer is a byte-level BPE trained in about a second; the weights are
drawn from the seed, so the same name and seed always give the same model.
"""

from __future__ import annotations

import functools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
)

from rlhf.data.synthetic import descriptiveness_corpus
from rlhf.errors import UserError
from rlhf.seeding import weights_seeded

PREFIX = "builtin:"
VOCAB_SIZE = 2048
CORPUS_SIZE = 4000


def is_builtin(name_or_path: str) -> bool:
    return name_or_path.startswith(PREFIX)


def _kind(name_or_path: str) -> str:
    kind = name_or_path[len(PREFIX):]
    if kind not in ("tiny-roberta", "tiny-gpt2"):
        raise UserError(f"unknown built-in model '{name_or_path}'; use builtin:tiny-roberta or "
                        "builtin:tiny-gpt2")
    return kind


@functools.lru_cache(maxsize=2)
def _train_bpe(special_tokens: tuple[str, ...]) -> Tokenizer:
    """Byte-level BPE (GPT-2/RoBERTa style) trained on the synthetic corpus; deterministic."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(descriptiveness_corpus(CORPUS_SIZE, seed=1234), trainer)
    return tokenizer


def builtin_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """The tokenizer of a built-in model: RoBERTa-style specials or GPT-2's single EOS."""
    if _kind(name_or_path) == "tiny-roberta":
        backend = Tokenizer.from_str(
            _train_bpe(("<s>", "<pad>", "</s>", "<unk>", "<mask>")).to_str())
        # Sentence pairs read <s> A </s></s> B </s>, exactly like roberta-base.
        backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
        return PreTrainedTokenizerFast(
            tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
            cls_token="<s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
            model_max_length=512)
    backend = Tokenizer.from_str(_train_bpe(("<|endoftext|>",)).to_str())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=256)


def builtin_config(name_or_path: str, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """A 2-layer, 64-wide architecture config matching the tokenizer."""
    if _kind(name_or_path) == "tiny-roberta":
        return RobertaConfig(
            vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=256, max_position_embeddings=514,
            type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return GPT2Config(
        vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)


def build_builtin(name_or_path: str, model_class, seed: int, tokenizer=None, **config_overrides):
    """Instantiate `model_class` (an Auto* class) for a built-in name with seeded random weights.

    The architecture is sized for `tokenizer` when given (e.g. a tiny model over the real
    RoBERTa vocabulary), else for the built-in tokenizer. Every other random stream is left
    untouched (`rlhf.seeding`).
    """
    tokenizer = tokenizer or builtin_tokenizer(name_or_path)
    config = builtin_config(name_or_path, tokenizer)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    with weights_seeded(seed):
        model = model_class.from_config(config)
    return model, tokenizer
