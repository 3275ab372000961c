"""DPO data: pairs as a causal LM reads them, masks checked token by token, one shared prompt,
truncation, pad == EOS, best-of-N expansion, chat templates, one 2B-row batch."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from rlhf.builtin_models import builtin_tokenizer
from rlhf.data.dpo import (
    IDENTICAL,
    IDENTICAL_AFTER_CUT,
    collate_pairs,
    expand_pairs,
    fit_pair,
    tokenize_preference_pairs,
)
from rlhf.data.preferences import PreferenceData, normalize_rows
from rlhf.data.synthetic import descriptiveness_pairs
from rlhf.errors import UserError

WORDS = ["<eos>", "<pad>", "<s>", "[UNK]", "a", "b", "c", "d", "e", "f", "g"]
ID = {word: index for index, word in enumerate(WORDS)}
EOS, PAD, BOS = ID["<eos>"], ID["<pad>"], ID["<s>"]
A, B, C, D, E, F, G = (ID[w] for w in "abcdefg")


def word_tokenizer(*, pad_is_eos: bool, bos: bool = False) -> PreTrainedTokenizerFast:
    """Whitespace words -> fixed ids, so masks can be checked id by id. With `bos`, encoding
    with special tokens puts <s> first (like Llama)."""
    backend = Tokenizer(models.WordLevel(ID, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", BOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<eos>", unk_token="[UNK]",
        pad_token="<eos>" if pad_is_eos else "<pad>", bos_token="<s>" if bos else None)


def pairs(prompts: list[str], chosen: list[str], rejected: list[str]) -> PreferenceData:
    responses = [list(pair) for pair in zip(chosen, rejected, strict=True)]
    return PreferenceData(prompts=prompts, responses=responses, best=[0] * len(prompts))


# -- tokens and masks ------------------------------------------------------------------------


@pytest.mark.parametrize("pad_is_eos", [True, False])
def test_masks_cover_exactly_the_response_and_its_eos(pad_is_eos: bool) -> None:
    tokenizer = word_tokenizer(pad_is_eos=pad_is_eos)
    pad = tokenizer.pad_token_id
    tok = tokenize_preference_pairs(pairs(["a b c", "a"], ["d e", "f"], ["g", "f g d"]),
                                    tokenizer, max_length=32)
    assert tok.prompt_ids == [[A, B, C], [A]]
    assert tok.chosen_ids == [[D, E, EOS], [F, EOS]]
    assert tok.rejected_ids == [[G, EOS], [F, G, D, EOS]]
    assert tok.examples == [0, 1] and tok.truncated == 0 and tok.lengths() == [6, 5]
    batch = collate_pairs(tok, [1, 0], pad)
    # rows: chosen of pairs 1, 0, then rejected of pairs 1, 0
    assert batch["input_ids"].tolist() == [[A, F, EOS, pad, pad, pad],
                                           [A, B, C, D, E, EOS],
                                           [A, F, G, D, EOS, pad],
                                           [A, B, C, G, EOS, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6,
                                                [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]]
    # prompt False; response and its EOS True; padding False even where pad id == EOS id
    assert batch["response_mask"].tolist() == [[0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1],
                                               [0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0]]
    assert batch["response_mask"].dtype == torch.bool == batch["attention_mask"].dtype
    assert batch["pair_index"].tolist() == [1, 0]


def test_gpt2_style_pad_equal_to_eos_keeps_the_eos_in_the_response_mask() -> None:
    tokenizer = builtin_tokenizer("builtin:tiny-gpt2")  # BOS = EOS = <|endoftext|>, no pad
    eos = tokenizer.eos_token_id
    rows = descriptiveness_pairs(6, seed=0)
    prefs = normalize_rows(rows, source="test")
    tok = tokenize_preference_pairs(prefs, tokenizer, max_length=256)
    batch = collate_pairs(tok, list(range(6)), pad_id=eos)  # (12, T)
    ids, mask, attention = batch["input_ids"], batch["response_mask"], batch["attention_mask"]
    responses = tok.chosen_ids + tok.rejected_ids
    for row in range(12):
        n_prompt, n_real = len(tok.prompt_ids[row % 6]), len(responses[row])
        assert mask[row].sum() == n_real and mask[row, n_prompt:n_prompt + n_real].all()
        last = int(mask[row].nonzero().max())
        assert ids[row, last] == eos and attention[row, last]  # the EOS is trained on
        assert not mask[row, last + 1:].any() and not attention[row, last + 1:].any()
        assert (ids[row, last + 1:] == eos).all()  # padding is EOS too, and masked out
    assert tokenizer.decode(tok.prompt_ids[0]) == rows[0]["prompt"]
    assert tokenizer.decode(tok.chosen_ids[0][:-1]) == rows[0]["chosen"]


def test_the_prompt_is_identical_in_chosen_and_rejected() -> None:
    tokenizer = builtin_tokenizer("builtin:tiny-gpt2")
    tok = tokenize_preference_pairs(normalize_rows(descriptiveness_pairs(4, seed=1),
                                                   source="test"), tokenizer, max_length=24)
    assert tok.prompt_truncated == 4  # every prompt was cut, once for both responses
    batch = collate_pairs(tok, [0, 1, 2, 3], tokenizer.eos_token_id)
    for pair in range(4):
        n_prompt = len(tok.prompt_ids[pair])
        assert torch.equal(batch["input_ids"][pair, :n_prompt],
                           batch["input_ids"][4 + pair, :n_prompt])
        assert not batch["response_mask"][[pair, 4 + pair], :n_prompt].any()
        assert batch["response_mask"][[pair, 4 + pair], n_prompt].all()


def test_hh_style_dialogues_share_their_prompt() -> None:
    rows = [{"chosen": "\n\nHuman: a b\n\nAssistant: c d", "rejected": "\n\nHuman: a b\n\n"
             "Assistant: e"}]
    tokenizer = builtin_tokenizer("builtin:tiny-gpt2")
    tok = tokenize_preference_pairs(normalize_rows(rows, source="hh"), tokenizer, max_length=64)
    assert tokenizer.decode(tok.prompt_ids[0]) == "\n\nHuman: a b\n\nAssistant:"
    assert tokenizer.decode(tok.chosen_ids[0]) == " c d<|endoftext|>"
    assert tokenizer.decode(tok.rejected_ids[0]) == " e<|endoftext|>"


# -- truncation ------------------------------------------------------------------------------


def test_over_long_pairs_lose_the_prompt_start_first_and_are_counted() -> None:
    # longer response f g EOS (3) of max 6: the prompt keeps its last 3 tokens, for both
    tokenizer = word_tokenizer(pad_is_eos=True)
    data = pairs(["a b c d e", "a b", "a"], ["f g", "c", "b"], ["g", "d", "c"])
    tok = tokenize_preference_pairs(data, tokenizer, max_length=6)
    assert tok.prompt_ids[0] == [C, D, E]
    assert (tok.chosen_ids[0], tok.rejected_ids[0]) == ([F, G, EOS], [G, EOS])
    assert tok.prompt_ids[1:] == [[A, B], [A]]  # short pairs untouched
    assert (tok.truncated, tok.prompt_truncated, tok.response_truncated) == (1, 1, 0)
    assert tok.dropped == {IDENTICAL: 0, IDENTICAL_AFTER_CUT: 0}


def test_a_response_too_long_alone_keeps_one_prompt_token_and_loses_its_end() -> None:
    # c d e f g EOS (6) in max 4: one prompt token, the chosen response cut to 3 (no EOS);
    # the rejected c EOS fits whole after the same prompt token
    prompt, chosen, rejected, prompt_cut, response_cut = fit_pair(
        [A, B], [C, D, E, F, G, EOS], [C, EOS], 4)
    assert (prompt, chosen, rejected) == ([B], [C, D, E], [C, EOS])
    assert prompt_cut and response_cut
    assert fit_pair([A], [B, EOS], [C, EOS], 3) == ([A], [B, EOS], [C, EOS], False, False)
    tokenizer = word_tokenizer(pad_is_eos=True)
    tok = tokenize_preference_pairs(pairs(["a b"], ["c d e f g"], ["c"]), tokenizer,
                                    max_length=4)
    assert (tok.truncated, tok.prompt_truncated, tok.response_truncated) == (1, 1, 1)


def test_pairs_without_a_preference_are_dropped_and_counted_by_reason() -> None:
    tokenizer = word_tokenizer(pad_is_eos=True)
    # pair 0 differs only after the cut; pair 1 is whole
    data = pairs(["a", "a"], ["c d e f", "b"], ["c d e g", "c"])
    tok = tokenize_preference_pairs(data, tokenizer, max_length=4)
    assert tok.dropped == {IDENTICAL: 0, IDENTICAL_AFTER_CUT: 1}
    assert len(tok) == 1 and tok.examples == [1]


def test_bad_settings_are_refused() -> None:
    tokenizer = word_tokenizer(pad_is_eos=False)
    with pytest.raises(UserError, match="at least 2"):
        tokenize_preference_pairs(pairs(["a"], ["b"], ["c"]), tokenizer, max_length=1)
    tokenizer.eos_token = None
    with pytest.raises(UserError, match="no EOS token"):
        tokenize_preference_pairs(pairs(["a"], ["b"], ["c"]), tokenizer, max_length=8)
    with pytest.raises(ValueError, match="at least one"):
        collate_pairs(tokenize_preference_pairs(pairs([], [], []), word_tokenizer(
            pad_is_eos=True), max_length=8), [], EOS)


# -- best of N -------------------------------------------------------------------------------


def test_best_of_n_expands_to_n_minus_one_pairs() -> None:
    rows = [{"query": "a", "sample0": "b", "sample1": "c", "sample2": "d", "sample3": "e",
             "best": 2},
            {"query": "b", "sample0": "c", "sample1": "d", "sample2": "c", "sample3": "f",
             "best": 0}]
    prefs = normalize_rows(rows, source="lm-human-preferences")
    assert prefs.listwise and prefs.best == [2, 0]  # how the reward stage holds N responses
    assert expand_pairs(prefs) == [(0, 2, 0), (0, 2, 1), (0, 2, 3), (1, 0, 1), (1, 0, 2),
                                   (1, 0, 3)]
    tok = tokenize_preference_pairs(prefs, word_tokenizer(pad_is_eos=True), max_length=8)
    # example 1's sample2 repeats its best: no preference, dropped and counted
    assert tok.examples == [0, 0, 0, 1, 1]
    assert tok.dropped == {IDENTICAL: 1, IDENTICAL_AFTER_CUT: 0}
    assert tok.chosen_ids == [[D, EOS]] * 3 + [[C, EOS]] * 2
    assert tok.rejected_ids == [[B, EOS], [C, EOS], [E, EOS], [D, EOS], [F, EOS]]
    assert tok.prompt_ids == [[A]] * 3 + [[B]] * 2


# -- special tokens and chat templates -------------------------------------------------------


def test_prompts_get_the_bos_once_and_empty_prompts_start_from_it() -> None:
    tokenizer = word_tokenizer(pad_is_eos=False, bos=True)
    data = pairs(["a b", "<s> a b", ""], ["c", "c", "d"], ["d", "d", "c"])
    tok = tokenize_preference_pairs(data, tokenizer, max_length=16)
    assert tok.prompt_ids == [[BOS, A, B], [BOS, A, B], [BOS]]


def test_conversational_rows_use_the_chat_template(tiny_bpe) -> None:
    tokenizer = tiny_bpe()  # has a chat template; pad = EOS = <eos>
    rows = [{"chosen": [{"role": "user", "content": "What is the capital of France?"},
                        {"role": "assistant", "content": "Paris."}],
             "rejected": [{"role": "user", "content": "What is the capital of France?"},
                          {"role": "assistant", "content": "the river"}]}]
    tok = tokenize_preference_pairs(normalize_rows(rows, source="chat", tokenizer=tokenizer),
                                    tokenizer, max_length=64)
    eos = tokenizer.eos_token_id
    for response, messages in ((tok.chosen_ids[0], rows[0]["chosen"]),
                               (tok.rejected_ids[0], rows[0]["rejected"])):
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        assert rendered.endswith("<eos>")  # the template's end of turn is the EOS
        expected = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        assert tok.prompt_ids[0] + response == expected
        assert response.count(eos) == 1 and response[-1] == eos  # no second EOS
    assert tokenizer.decode(tok.prompt_ids[0]).endswith("<|assistant|>")
