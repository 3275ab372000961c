"""Which prompts each iteration of an RL run uses, and how long their responses may be."""

from __future__ import annotations

import math

from rlhf.data.batching import prompt_batches
from rlhf.errors import UserError
from rlhf.rl.generation import row_seed


class IterationSchedule:
    """Which prompts each iteration uses, and how long its responses may be.

    Both depend only on (seed, iteration), never on RNG state, so resume picks up exactly
    where the run stopped.
    """

    def __init__(self, n_prompts: int, *, batch_size: int, epochs: int, total_prompts: int,
                 seed: int, min_new_tokens: int | None, max_new_tokens: int):
        """`total_prompts` prompts in all (0: `epochs` passes over the prompt set), drawn
        `batch_size` per iteration; response limits from [min_new_tokens, max_new_tokens]."""
        self.batch_size = batch_size
        self.per_epoch = n_prompts // self.batch_size
        if self.per_epoch == 0:
            raise UserError(f"train.batch_size {self.batch_size} is larger than the {n_prompts} "
                            "prompts; lower train.batch_size")
        total_prompts = total_prompts or epochs * self.per_epoch * self.batch_size
        self.iterations = math.ceil(total_prompts / self.batch_size)
        self.seed = seed
        self.n_prompts = n_prompts
        self.min_new, self.max_new = min_new_tokens, max_new_tokens
        self._epoch, self._batches = -1, []

    def local_prompts(self, iteration: int, accelerator) -> list[int]:
        """This process's share of the iteration's prompt indices."""
        epoch, position = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = prompt_batches(self.n_prompts, self.batch_size, seed=self.seed,
                                           epoch=epoch)
        batch = self._batches[position]
        share = len(batch) // accelerator.num_processes
        return batch[accelerator.process_index * share:][:share]

    def row_seeds(self, iteration: int, indices: list[int]) -> list[int]:
        """Sampling seeds keyed by (seed, iteration, prompt): the same samples however many
        processes share the batch."""
        return [row_seed(self.seed, iteration, index) for index in indices]

    def group_row_seeds(self, iteration: int, indices: list[int], samples: int) -> list[int]:
        """Seeds of `samples` responses per prompt, prompt-major, keyed by (seed, iteration,
        prompt, sample index)."""
        return [row_seed(self.seed, iteration, index, sample)
                for index in indices for sample in range(samples)]

    def response_lengths(self, iteration: int, indices: list[int]) -> list[int]:
        """Each prompt's response length limit: max_new_tokens, or a draw from [min, max]
        keyed by (seed, iteration, prompt), like trl 0.11.4's per-sample LengthSampler."""
        if self.min_new is None:
            return [self.max_new] * len(indices)
        choices = self.max_new - self.min_new + 1
        return [self.min_new + row_seed("length", self.seed, iteration, index) % choices
                for index in indices]

    def first_prompts(self, count: int) -> list[int]:
        """The first `count` prompts of the training order (the first iterations' prompts)."""
        order = [i for batch in prompt_batches(self.n_prompts, self.batch_size, seed=self.seed,
                                               epoch=0) for i in batch]
        return order[:count]
