"""How `rlhf` seeds its random streams, per process and on purpose.

- `rlhf.engine.run.Run` seeds Python's `random`, NumPy and torch's CPU and every CUDA generator with
  `run.seed + rank`: each process draws its own noise (dropout, when a user turns it on).
- Model weights that are drawn rather than loaded (a reward or value head, the built-in tiny
  models) come from `run.seed` alone, on torch's CPU generator only, forked and restored
  around construction (`weights_seeded`): every process builds the same weights, and building
  a model shifts no other stream. `torch.manual_seed` there would also reseed every CUDA
  generator, to the same state on every process, undoing the per-process seeding.
- Data order, PPO prompt order, response lengths, sampling noise and minibatch order come from
  generators keyed by (seed, epoch or iteration, example), not from these streams, so results
  do not depend on the number of processes and a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def weights_seeded(seed: int) -> Iterator[None]:
    """Inside: torch's CPU generator seeded with `seed`. After: every generator as before."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        yield
