"""Group sampling: each response is seeded by (seed, iteration, prompt, sample index), so a
prompt's k responses are the same whatever else is in the batch or on the process."""

from rlhf.rl.generation import row_seed
from rlhf.rl.schedule import IterationSchedule


def schedule(seed: int = 0) -> IterationSchedule:
    return IterationSchedule(100, batch_size=4, epochs=1, total_prompts=0, seed=seed,
                             min_new_tokens=None, max_new_tokens=8)


def test_group_seeds_are_prompt_major_and_keyed_by_prompt_and_sample() -> None:
    seeds = schedule().group_row_seeds(5, [7, 3], samples=3)
    assert seeds == [row_seed(0, 5, prompt, sample) for prompt in (7, 3) for sample in range(3)]
    assert len(set(seeds)) == 6  # every response its own stream


def test_a_prompts_seeds_do_not_depend_on_its_batch() -> None:
    alone = schedule().group_row_seeds(2, [9], samples=4)
    in_a_batch = schedule().group_row_seeds(2, [1, 9, 4], samples=4)
    assert in_a_batch[4:8] == alone


def test_seeds_change_with_run_seed_and_iteration() -> None:
    base = schedule().group_row_seeds(0, [1], samples=2)
    assert schedule(seed=1).group_row_seeds(0, [1], samples=2) != base
    assert schedule().group_row_seeds(1, [1], samples=2) != base
