"""Batching: the seeded epoch orders of every stage, and padding to tensors.

`epoch_batches` orders examples (reward, SFT, DPO) and `prompt_batches` orders PPO's prompts,
each keyed by (seed, epoch) only, so a resumed run sees the same batches as an uninterrupted
one. `pad_sequences` and `left_pad` make (ids, mask) tensors with masks from the lengths;
`collate_preferences` lays a batch of preference examples out for one forward pass.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from rlhf.algo.masking import within_lengths
from rlhf.data.reward_text import TokenizedPreferences

# Length grouping sorts within windows of this many batches: padding shrinks, but which examples
# meet in a batch still changes every epoch (the "megabatch" trick of fairseq/HF's
# LengthGroupedSampler).
GROUP_BATCHES = 50


def epoch_batches(n_examples: int, batch_size: int, *, seed: int, epoch: int,
                  lengths: list[int] | None = None, drop_last: bool = True) -> list[list[int]]:
    """Example indices of every batch of one epoch, in training order.

    The order depends only on (seed, epoch), never on global RNG state, so a resumed run
    replays the same batches. With `lengths`, examples of similar length share a batch and the
    batch order is shuffled. With `drop_last`, a random remainder of n_examples % batch_size
    examples sits this epoch out, so every batch is full.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if lengths is not None and len(lengths) != n_examples:
        raise ValueError(f"{len(lengths)} lengths for {n_examples} examples")
    rng = random.Random(f"epoch_batches:{seed}:{epoch}")
    order = list(range(n_examples))
    rng.shuffle(order)
    if drop_last:
        order = order[:n_examples - n_examples % batch_size]
    if lengths is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    window = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_to_longest(sequences: list[list[int]], pad_value: int,
                   side: str = "right") -> torch.Tensor:
    """(B, T) long tensor of the sequences, padded with `pad_value` to the longest (T)."""
    if not sequences:
        raise ValueError("padding needs at least one sequence")
    if side not in ("right", "left"):
        raise ValueError(f"padding side must be 'right' or 'left', got {side!r}")
    width = max(len(sequence) for sequence in sequences)
    padded = torch.full((len(sequences), width), pad_value, dtype=torch.long)  # (B, T)
    for row, sequence in enumerate(sequences):
        start = 0 if side == "right" else width - len(sequence)
        padded[row, start:start + len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return padded


def pad_sequences(sequences: list[list[int]], pad_id: int,
                  side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), both (B, T) with T the longest sequence; mask True on real tokens.

    The mask comes from the lengths, never from `ids == pad_id` (pad may equal EOS).
    """
    if pad_id is None:
        raise ValueError("pad_id is None: give the tokenizer a pad token first")
    ids = pad_to_longest(sequences, pad_id, side)  # (B, T)
    lengths = torch.tensor([len(sequence) for sequence in sequences])  # (B,)
    mask = within_lengths(lengths, ids.shape[1])  # (B, T) real tokens first
    return ids, mask if side == "right" else mask.flip(1)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), both (B, T): real tokens flush right, so every row's next token is
    generated at the same position; mask True on real tokens."""
    return pad_sequences(sequences, pad_id, side="left")


def prompt_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Epoch `epoch`'s shuffled prompt indices cut into full batches (the remainder is dropped).

    The permutation depends only on (seed, epoch), through its own generator, never on the
    global RNG, so a resumed run sees the same batches as an uninterrupted one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed % 2**64, epoch % 2**64]).permutation(n).tolist()
    return [order[start:start + batch_size] for start in range(0, n - batch_size + 1, batch_size)]


def collate_preferences(tok: TokenizedPreferences, indices: list[int], pad_id: int,
                        padding_side: str = "right") -> dict:
    """Padded tensors for the examples at `indices`, every response in one forward pass.

    Rows are response-major: all first responses of the batch, then all second ones, ... so
    `rewards.view(n_responses, B).T` is (B, N) and, for pairs, chosen = rewards[:B] and
    rejected = rewards[B:]. Padding is dynamic (to the longest row of this batch).
    `extra_inputs` holds the other per-token model inputs (name -> (B*N, T) tensor), e.g.
    BERT's `token_type_ids`; pass them to the model with the ids.
    """
    if not indices:
        raise ValueError("collate_preferences needs at least one example index")
    n_responses = len(tok.input_ids[indices[0]])

    def rows(per_example: list[list[list[int]]]) -> list[list[int]]:
        return [per_example[i][position] for position in range(n_responses) for i in indices]

    input_ids, attention_mask = pad_sequences(rows(tok.input_ids), pad_id, padding_side)
    # Other per-token inputs (BERT's token_type_ids) are padded with their own value, the way
    # the tokenizer's own `pad` does (`pad_token_type_id` for types).
    extra_inputs = {name: pad_to_longest(rows(values), tok.pad_values.get(name, 0), padding_side)
                    for name, values in tok.extra_inputs.items()}  # each (B*N, T)
    margin = None
    if tok.margins is not None:
        margin = torch.tensor([tok.margins[i] for i in indices], dtype=torch.float32)  # (B,)
    return {
        "input_ids": input_ids,  # (B*N, T)
        "attention_mask": attention_mask,  # (B*N, T) bool
        "extra_inputs": extra_inputs,
        "best": torch.tensor([tok.best[i] for i in indices], dtype=torch.long),  # (B,)
        "margin": margin,
        "n_responses": n_responses,
    }
