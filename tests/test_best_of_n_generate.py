"""`rlhf generate --best-of N --reward-model R` end to end on the tiny built-in policy: the best
response is the best candidate, best-of-1 is plain generate, batching changes nothing, and
flag mistakes are one-line errors naming the flags."""

import json
import math
import sys
import types
from pathlib import Path

import pytest

from rlhf.cli import main

REWARD = "rlhf.reward.rules:vivid_word_fraction"
PROMPTS = ["The harbour was quiet.", "The old mill stood by the river.",
           "Snow fell on the town.", "A lamp burned in the window."]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def generate(prompts: Path, output: Path, *extra: str) -> list[dict]:
    """Run `rlhf generate` on the tiny policy; the rows it wrote."""
    assert main(["generate", "--model", "builtin:tiny-gpt2", "--prompts", str(prompts),
                 "--output", str(output), "--max-new-tokens", "6", *extra]) == 0
    return [json.loads(line) for line in output.open(encoding="utf-8")]


def test_best_response_is_the_highest_scored_candidate(prompts: Path, tmp_path: Path,
                                                       capsys) -> None:
    from rlhf.algo.best_of_n import best_of_n_kl
    from rlhf.reward.rules import vivid_word_fraction

    rows = generate(prompts, tmp_path / "out.jsonl", "--best-of", "4", "--reward-model", REWARD,
                    "--keep-candidates")
    assert [r["prompt"] for r in rows] == PROMPTS
    for row in rows:
        scores = [c["score"] for c in row["candidates"]]
        assert row["n"] == len(scores) == 4
        assert row["score"] == max(scores)
        assert row["response"] == row["candidates"][scores.index(max(scores))]["response"]
        rescored = vivid_word_fraction([row["prompt"]] * 4, [c["response"] for c in
                                                             row["candidates"]])
        assert scores == pytest.approx(rescored)
    out = capsys.readouterr().out
    mean_best = sum(r["score"] for r in rows) / len(rows)
    mean_all = sum(c["score"] for r in rows for c in r["candidates"]) / (4 * len(rows))
    assert f"mean best score       {mean_best:.6g}" in out
    assert f"mean candidate score  {mean_all:.6g}" in out
    assert f"{best_of_n_kl(4):.4f} nats" in out


def test_best_of_one_is_plain_generate_and_plain_generate_is_unchanged(prompts: Path,
                                                                       tmp_path: Path) -> None:
    """Each prompt alone, seeded by row_seed(seed, prompt index): what generate wrote before
    best-of-n existed."""
    from rlhf.algo.masking import response_mask_after_stop
    from rlhf.data.batching import left_pad
    from rlhf.models import load_policy
    from rlhf.rl.generation import row_seed, sample_responses, stop_token_ids
    from rlhf.rl.rollout import decode_responses

    plain = generate(prompts, tmp_path / "plain.jsonl", "--seed", "3")
    scored = generate(prompts, tmp_path / "scored.jsonl", "--seed", "3", "--reward-model", REWARD)
    assert all(set(row) == {"prompt", "response"} for row in plain)
    assert [(r["prompt"], r["response"]) for r in scored] == \
        [(r["prompt"], r["response"]) for r in plain]
    assert all(r["n"] == 1 and math.isfinite(r["score"]) for r in scored)

    model, tokenizer = load_policy("builtin:tiny-gpt2")
    stops = stop_token_ids(tokenizer, None)
    for index, prompt in enumerate(PROMPTS):
        ids, mask = left_pad([tokenizer(prompt)["input_ids"]], tokenizer.pad_token_id)
        response = sample_responses(model.eval(), ids, mask, max_new_tokens=6, temperature=0.7,
                                    stop_token_ids=stops, pad_id=tokenizer.pad_token_id,
                                    row_seeds=[row_seed(3, index)])
        text = decode_responses(tokenizer, response, response_mask_after_stop(response, stops),
                                stops)[0]
        assert plain[index]["response"] == text


def test_result_does_not_depend_on_batch_size_and_candidates_nest(prompts: Path,
                                                                  tmp_path: Path) -> None:
    options = ["--reward-model", REWARD, "--keep-candidates"]
    runs = [generate(prompts, tmp_path / f"b{size}.jsonl", "--best-of", "3", "--batch-size",
                     size, *options) for size in ("2", "16")]
    assert runs[0] == runs[1]
    two = generate(prompts, tmp_path / "two.jsonl", "--best-of", "2", *options)
    assert [r["candidates"] for r in two] == [r["candidates"][:2] for r in runs[0]]


def test_a_reward_model_folder_or_name_scores_like_rlhf_score(prompts: Path,
                                                               tmp_path: Path) -> None:
    from rlhf.reward.scorers import RewardModelScorer

    rows = generate(prompts, tmp_path / "out.jsonl", "--best-of", "2", "--reward-model",
                    "builtin:tiny-roberta")
    scorer = RewardModelScorer.from_pretrained("builtin:tiny-roberta")
    expected = scorer([r["prompt"] for r in rows], [r["response"] for r in rows]).tolist()
    assert [r["score"] for r in rows] == pytest.approx(expected, abs=1e-5)
    assert all("candidates" not in r for r in rows)


@pytest.mark.parametrize(("extra", "named"), [
    (["--best-of", "2"], ["--best-of 2", "--reward-model"]),
    (["--keep-candidates"], ["--keep-candidates", "--reward-model"]),
    (["--best-of", "2", "--reward-model", REWARD, "--temperature", "0"],
     ["--best-of 2", "--temperature"]),
    (["--best-of", "2", "--reward-model", "no_such_module:reward"], ["no_such_module"]),
], ids=["best-of-without-reward", "keep-without-reward", "greedy", "unknown-function"])
def test_bad_flag_combinations_are_one_line_errors(prompts: Path, tmp_path: Path, capsys,
                                                   extra: list[str], named: list[str]) -> None:
    assert main(["generate", "--model", "builtin:tiny-gpt2", "--prompts", str(prompts),
                 "--output", str(tmp_path / "out.jsonl"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(name in err for name in named), err


def test_best_of_zero_is_a_usage_error(prompts: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["generate", "--model", "builtin:tiny-gpt2", "--prompts", str(prompts),
              "--output", str(tmp_path / "out.jsonl"), "--best-of", "0"])
    assert stopped.value.code == 2
    assert "--best-of" in capsys.readouterr().err


def test_a_reward_that_is_never_finite_names_the_prompt(prompts: Path, tmp_path: Path,
                                                        capsys, monkeypatch) -> None:
    def broken(prompts: list[str], responses: list[str]) -> list[float]:
        return [math.nan if p == PROMPTS[2] else 1.0 for p in prompts]

    module = types.ModuleType("broken_rewards")
    module.broken = broken
    monkeypatch.setitem(sys.modules, "broken_rewards", module)
    assert main(["generate", "--model", "builtin:tiny-gpt2", "--prompts", str(prompts),
                 "--output", str(tmp_path / "out.jsonl"), "--max-new-tokens", "4",
                 "--best-of", "2", "--reward-model", "broken_rewards:broken"]) == 2
    err = capsys.readouterr().err
    assert "prompt 3" in err and "NaN" in err and "broken_rewards:broken" in err
