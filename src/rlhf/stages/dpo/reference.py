"""The log-probabilities DPO compares: a pair's chosen and rejected response under the policy
(one forward pass over both) and under the fixed reference, which is read from a table computed
once before training (stored in the run directory, so resume does not recompute it), run in
every step, or absent (reference-free losses: log-probs 0)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rlhf.algo.preference import sequence_logprobs
from rlhf.data.dpo import TokenizedPairs, collate_pairs
from rlhf.engine.sequences import next_token_logprobs
from rlhf.errors import UserError

REFERENCE_FILE = "reference_logprobs.safetensors"
"""The precomputed reference log-probs in the run directory: per split, (pairs, 4)."""


@dataclass
class PairLogprobs:
    """(B,) sequence log-probs of a batch of pairs: summed over response tokens (DPO, IPO) and
    averaged (SimPO), for the chosen and the rejected response."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_mean: torch.Tensor
    rejected_mean: torch.Tensor

    def as_table(self) -> torch.Tensor:
        """(B, 4) columns chosen, rejected, chosen_mean, rejected_mean."""
        return torch.stack([self.chosen, self.rejected, self.chosen_mean, self.rejected_mean], 1)

    @classmethod
    def from_table(cls, table: torch.Tensor) -> PairLogprobs:
        return cls(*table.unbind(dim=1))


def pair_logprobs(model, inputs: dict[str, torch.Tensor], device) -> PairLogprobs:
    """The policy's (or reference's) log-probs of a `collate_pairs` batch: chosen and rejected
    rows in one forward pass, split after it."""
    logprobs, mask = next_token_logprobs(model, inputs, device)  # (2B, T - 1) each
    sums, means = sequence_logprobs(logprobs.float(), mask)  # (2B,) each
    pairs = len(sums) // 2
    return PairLogprobs(chosen=sums[:pairs], rejected=sums[pairs:], chosen_mean=means[:pairs],
                        rejected_mean=means[pairs:])


ReferenceSource = Callable[[dict[str, torch.Tensor], str], PairLogprobs]
"""(collated batch, split name) -> the reference's PairLogprobs for the batch's pairs."""


def no_reference(inputs: dict[str, torch.Tensor], split: str) -> PairLogprobs:
    """Reference-free losses: a uniform reference, log-probs 0."""
    zeros = torch.zeros(len(inputs["pair_index"]), device=inputs["input_ids"].device)
    return PairLogprobs(zeros, zeros, zeros, zeros)


def on_the_fly(reference, device) -> ReferenceSource:
    """A reference forward pass in every step (dpo.reference_logprobs=on_the_fly)."""
    @torch.no_grad()
    def read(inputs: dict[str, torch.Tensor], split: str) -> PairLogprobs:
        return pair_logprobs(reference, inputs, device)
    return read


def from_tables(tables: dict[str, torch.Tensor]) -> ReferenceSource:
    """Look the batch's pairs up in the precomputed (pairs, 4) table of their split."""
    def read(inputs: dict[str, torch.Tensor], split: str) -> PairLogprobs:
        table = tables[split]
        return PairLogprobs.from_table(table[inputs["pair_index"].to(table.device)])
    return read


@torch.no_grad()
def compute_table(reference, pairs: TokenizedPairs, *, batch_size: int, pad_id: int,
                  accelerator) -> torch.Tensor:
    """(pairs, 4) reference log-probs of every pair: each process computes a contiguous share,
    then every process gets the whole table."""
    n, processes = len(pairs.examples), accelerator.num_processes
    share = math.ceil(n / processes)
    mine = list(range(accelerator.process_index * share, min(n, (accelerator.process_index + 1)
                                                           * share)))
    parts = [torch.zeros(0, 4, device=accelerator.device)]
    for start in range(0, len(mine), batch_size):
        inputs = collate_pairs(pairs, mine[start:start + batch_size], pad_id)
        with accelerator.autocast():
            parts.append(pair_logprobs(reference, inputs, accelerator.device).as_table())
    table = torch.cat(parts)
    padded = torch.zeros(share, 4, device=accelerator.device)  # gather needs equal shapes
    padded[:len(table)] = table
    return accelerator.gather(padded)[:n]


def stored_tables(run, compute: Callable[[str], torch.Tensor],
                  sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """The reference tables of every split: read from the run directory when resuming (so a
    resumed run compares with exactly the numbers it started with), else computed and written
    atomically by the main process."""
    path = Path(run.output_dir) / REFERENCE_FILE
    if run.config.resume and path.is_file():
        tables = {name: table.to(run.device) for name, table in load_file(str(path)).items()}
        for split, size in sizes.items():
            if len(tables.get(split, ())) != size:
                raise UserError(f"{path} holds reference log-probs of another data set (split "
                                f"{split}: {len(tables.get(split, ()))} pairs, now {size}); "
                                "delete the file to recompute it, or use a new run.output_dir")
        return tables
    tables = {split: compute(split) for split in sizes}
    if run.is_main:
        tmp = path.with_name(path.name + ".tmp")
        save_file({split: table.cpu().contiguous() for split, table in tables.items()}, str(tmp))
        tmp.replace(path)
    run.accelerator.wait_for_everyone()
    return tables
