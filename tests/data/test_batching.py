"""epoch_batches, prompt_batches, padding and collate_preferences."""

import random

import pytest
import torch

from rlhf.data.batching import collate_preferences, epoch_batches, left_pad, prompt_batches
from rlhf.data.reward_text import TokenizedPreferences


def padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in batch) * len(batch) - sum(lengths[i] for i in batch)
               for batch in batches)


def test_epoch_batches_are_deterministic_and_ignore_global_rng() -> None:
    first = epoch_batches(103, 8, seed=1, epoch=0)
    random.seed(123)
    torch.manual_seed(123)
    assert epoch_batches(103, 8, seed=1, epoch=0) == first
    assert epoch_batches(103, 8, seed=1, epoch=1) != first
    assert epoch_batches(103, 8, seed=2, epoch=0) != first


def test_epoch_batches_cover_the_examples() -> None:
    batches = epoch_batches(103, 8, seed=0, epoch=0)
    seen = [i for batch in batches for i in batch]
    assert len(batches) == 12 and all(len(batch) == 8 for batch in batches)
    assert len(set(seen)) == 96 and set(seen) <= set(range(103))
    batches = epoch_batches(103, 8, seed=0, epoch=0, drop_last=False)
    assert sorted(i for batch in batches for i in batch) == list(range(103))
    assert [len(batch) for batch in batches][-1] == 7
    assert epoch_batches(5, 8, seed=0, epoch=0) == []
    # Over epochs, which examples sit out changes.
    dropped = {frozenset(set(range(103)) - {i for b in epoch_batches(103, 8, seed=0, epoch=e)
                                            for i in b}) for e in range(5)}
    assert len(dropped) > 1


@pytest.mark.parametrize("drop_last", [True, False])
def test_length_grouping_reduces_padding_and_stays_random(drop_last: bool) -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(2000)]
    plain = epoch_batches(2000, 16, seed=0, epoch=0, drop_last=drop_last)
    grouped = epoch_batches(2000, 16, seed=0, epoch=0, lengths=lengths, drop_last=drop_last)
    assert sorted(i for b in grouped for i in b) == sorted(i for b in plain for i in b)
    assert padding(grouped, lengths) < 0.2 * padding(plain, lengths)
    assert grouped == epoch_batches(2000, 16, seed=0, epoch=0, lengths=lengths,
                                    drop_last=drop_last)
    next_epoch = epoch_batches(2000, 16, seed=0, epoch=1, lengths=lengths, drop_last=drop_last)
    assert next_epoch != grouped
    # Batch order is shuffled: not sorted by length across the epoch.
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_epoch_batches_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        epoch_batches(10, 0, seed=0, epoch=0)
    with pytest.raises(ValueError):
        epoch_batches(10, 2, seed=0, epoch=0, lengths=[1, 2])


def tokenized(margins: bool = False, n: int = 2) -> TokenizedPreferences:
    # Example e, response r has ids [100 * e + 10 * r + k for k < length].
    lengths = [[3, 1], [2, 4], [1, 1]] if n == 2 else [[1, 2, 3]] * 3
    ids = [[[100 * e + 10 * r + k for k in range(length)] for r, length in enumerate(row)]
           for e, row in enumerate(lengths)]
    return TokenizedPreferences(input_ids=ids, best=[0, 0, 0] if n == 2 else [2, 1, 0],
                                margins=[0.5, 1.0, 2.0] if margins else None,
                                listwise=n > 2, truncated=0)


def test_collate_is_response_major_with_right_padding() -> None:
    batch = collate_preferences(tokenized(margins=True), [2, 0], pad_id=-1)
    assert batch["n_responses"] == 2
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_ids"].tolist() == [
        [200, -1, -1],      # example 2, chosen
        [0, 1, 2],          # example 0, chosen
        [210, -1, -1],      # example 2, rejected
        [10, -1, -1],       # example 0, rejected
    ]
    assert batch["attention_mask"].dtype == torch.bool
    assert batch["attention_mask"].tolist() == [[True, False, False], [True, True, True],
                                                [True, False, False], [True, False, False]]
    assert batch["best"].tolist() == [0, 0] and batch["best"].dtype == torch.long
    assert batch["margin"].tolist() == [2.0, 0.5] and batch["margin"].dtype == torch.float32
    # The layout the training loop relies on: rewards.view(N, B).T is (B, N).
    rewards = batch["input_ids"][:, 0].float()  # stands in for one score per row
    assert rewards.view(2, -1).T.tolist() == [[200.0, 210.0], [0.0, 10.0]]


def test_collate_left_padding_and_listwise() -> None:
    batch = collate_preferences(tokenized(), [0, 1], pad_id=9, padding_side="left")
    assert batch["input_ids"].tolist() == [[9, 0, 1, 2], [9, 9, 100, 101], [9, 9, 9, 10],
                                           [110, 111, 112, 113]]
    assert batch["attention_mask"][0].tolist() == [False, True, True, True]
    assert batch["margin"] is None
    listwise = collate_preferences(tokenized(n=3), [1, 2], pad_id=0)
    assert listwise["n_responses"] == 3 and listwise["input_ids"].shape == (6, 3)
    assert listwise["best"].tolist() == [1, 0]
    assert listwise["input_ids"][:, 0].tolist() == [100, 200, 110, 210, 120, 220]


def test_collate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        collate_preferences(tokenized(), [], pad_id=0)
    with pytest.raises(ValueError):
        collate_preferences(tokenized(), [0], pad_id=0, padding_side="middle")
    with pytest.raises(ValueError):
        collate_preferences(tokenized(), [0], pad_id=None)


def test_collate_pads_extra_inputs_with_their_own_value() -> None:
    # BERT-style token types ride along with the ids, cut the same, padded with
    # pad_token_type_id (7 here, to tell it from the ids' pad), on the same side.
    tok = tokenized()
    tok.extra_inputs = {"token_type_ids": [[[r] * len(ids) for r, ids in enumerate(example)]
                                           for example in tok.input_ids]}
    tok.pad_values = {"token_type_ids": 7}
    right = collate_preferences(tok, [2, 0], pad_id=-1)
    assert right["extra_inputs"]["token_type_ids"].tolist() == [
        [0, 7, 7], [0, 0, 0], [1, 7, 7], [1, 7, 7]]
    left = collate_preferences(tok, [0, 1], pad_id=9, padding_side="left")
    assert left["extra_inputs"]["token_type_ids"].tolist() == [
        [7, 0, 0, 0], [7, 7, 0, 0], [7, 7, 7, 1], [1, 1, 1, 1]]
    assert collate_preferences(tokenized(), [0], pad_id=0)["extra_inputs"] == {}


def test_left_pad_puts_real_tokens_flush_right() -> None:
    ids, mask = left_pad([[5, 6, 7], [8], []], pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert mask.tolist() == [[True, True, True], [False, False, True], [False, False, False]]


def test_left_pad_keeps_tokens_equal_to_the_pad_id() -> None:
    # GPT-2 pads with EOS: the mask comes from lengths, never from ids == pad_id.
    ids, mask = left_pad([[0, 4], [0]], pad_id=0)
    assert ids.tolist() == [[0, 4], [0, 0]]
    assert mask.tolist() == [[True, True], [False, True]]


def test_prompt_batches_are_deterministic_full_and_cover_each_epoch() -> None:
    batches = prompt_batches(10, 3, seed=1, epoch=0)
    assert len(batches) == 3 and all(len(batch) == 3 for batch in batches)
    flat = [i for batch in batches for i in batch]
    assert len(set(flat)) == 9 and set(flat) <= set(range(10))
    torch.manual_seed(123)
    assert prompt_batches(10, 3, seed=1, epoch=0) == batches
    assert prompt_batches(10, 3, seed=1, epoch=1) != batches
    assert prompt_batches(10, 3, seed=2, epoch=0) != batches
    full = prompt_batches(12, 4, seed=0, epoch=5)
    assert sorted(i for batch in full for i in batch) == list(range(12))
    assert prompt_batches(2, 3, seed=0, epoch=0) == []
