"""Fixtures of the data tests."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CORPUS = ["### Instruction:\nWhat is the capital of France?\n\n### Context:\nParis is the capital "
          "and largest city of France, on the Seine.\n\n### Response:\n",
          "Tell me about the cat that sat on the mat in the old house by the river."] * 5


def tiny_bpe_tokenizer(bos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained in milliseconds; `bos` makes its normal call prepend <s>."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<eos>", "<s>", "<|user|>", "<|assistant|>", "<|system|>"]
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>",
                                        pad_token="<eos>", bos_token="<s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tiny_bpe():
    """`tiny_bpe_tokenizer`, the tiny byte-level BPE with a chat template of the prompt tests."""
    return tiny_bpe_tokenizer
