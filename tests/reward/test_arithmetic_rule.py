"""rlhf.reward.rules:arithmetic_answer: accuracy 1.0, format 0.1, else 0.0; wrong data is named."""

import pytest

from rlhf.data.synthetic import arithmetic_problems
from rlhf.errors import UserError
from rlhf.reward.rules import arithmetic_answer

SUM, DIFFERENCE = "Q: 3 + 4 = ? A:", "Q: 2 - 9 = ? A:"


@pytest.mark.parametrize(("prompt", "response", "score"), [
    (SUM, "7", 1.0),
    (SUM, " 7", 1.0),
    (SUM, " 7 apples", 1.0),
    (SUM, " I think 7", 1.0),        # the first integer counts, wherever it is
    (SUM, " 8", 0.1),                # a wrong number up front: the format reward
    (SUM, " 8 no, 7", 0.1),          # only the first integer is the answer
    (SUM, "\n 71", 0.1),             # 71 is not 7
    (SUM, " I think 8", 0.0),        # text, then a wrong number: neither reward
    (SUM, " seven", 0.0),
    (SUM, "", 0.0),
    (DIFFERENCE, " -7", 1.0),
    (DIFFERENCE, " 7", 0.1),         # the sign matters
    (DIFFERENCE, " it is -7.", 1.0),
    ("Q: 0 - 0 = ? A:", "0", 1.0),
])
def test_hand_cases(prompt: str, response: str, score: float) -> None:
    assert arithmetic_answer([prompt], [response]) == [score]


def test_every_builtin_problem_is_read_and_its_answer_scores_one() -> None:
    rows = arithmetic_problems(400, seed=1)
    prompts = [row["prompt"] for row in rows]
    assert arithmetic_answer(prompts, [f" {row['answer']}" for row in rows]) == [1.0] * 400


def test_a_prompt_of_another_format_is_named() -> None:
    prompt = "The old lighthouse stood at the edge of the cliff."
    with pytest.raises(ValueError, match="prompt 'The old lighthouse .*' is not an arithmetic "
                                         "problem like 'Q: 3 \\+ 4 = \\? A:'") as caught:
        arithmetic_answer([SUM, prompt], [" 7", " 7"])
    assert isinstance(caught.value, UserError)  # the CLI prints it on one line
    with pytest.raises(ValueError, match="builtin:arithmetic"):
        arithmetic_answer(["Q: 3 * 4 = ? A:"], ["12"])
