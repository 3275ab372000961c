"""Sample responses side by side: an RL run's (PPO, critic-free) first and last logged
samples, and the demo's held-out answers before and after PPO. Every piece of text is
HTML-escaped."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from itertools import zip_longest

from rlhf.report.run_files import is_number


@dataclass
class SamplePair:
    """A 'before' and an 'after' answer; `prompt` is set when both answer the same prompt."""

    prompt: str | None
    before: dict | None
    after: dict | None


def sample_pairs(rows: list[dict]) -> tuple[int, int, list[SamplePair]]:
    """(first step, last step, pairs) from samples.jsonl rows, matched by prompt where possible;
    the rest are paired in order."""
    steps = sorted({r["step"] for r in rows if is_number(r.get("step"))})
    if not steps:
        return 0, 0, []
    first, last = steps[0], steps[-1]
    before = [r for r in rows if r.get("step") == first]
    after = [r for r in rows if r.get("step") == last] if last != first else []
    unused = list(after)
    pairs, lonely = [], []
    for row in before:
        match = next((r for r in unused if r.get("prompt") == row.get("prompt")), None)
        if match is None:
            lonely.append(row)
        else:
            unused.remove(match)
            pairs.append(SamplePair(str(row.get("prompt", "")), row, match))
    pairs += [SamplePair(None, b, a) for b, a in zip_longest(lonely, unused)]
    return first, last, pairs


def before_after_pairs(rows: list[dict], after: str = "after") -> list[SamplePair]:
    """The demo's before_after.jsonl rows (prompt, before, before_score, after, after_score,
    and the DPO policy's dpo, dpo_score): before against the `after` column."""
    return [SamplePair(str(row.get("prompt", "")),
                       {"response": row.get("before", ""), "score": row.get("before_score")},
                       {"response": row.get(after, ""), "score": row.get(f"{after}_score")})
            for row in rows]


def _score_cell(row: dict | None) -> str:
    score = None if row is None else row.get("score")
    return f'<td class="num">{f"{score:.4f}" if is_number(score) else "–"}</td>'


def _answer_cell(row: dict | None, with_prompt: bool) -> str:
    if row is None:
        return '<td class="muted">–</td>'
    prompt = (f'<div class="prompt text">{escape(str(row.get("prompt", "")))}</div>'
              if with_prompt else "")
    return f'<td>{prompt}<div class="text">{escape(str(row.get("response", "")))}</div></td>'


def samples_table(pairs: list[SamplePair], before_label: str, after_label: str) -> str:
    """Answers to the same prompt side by side (prompt | before | score | after | score), then
    answers to different prompts (each prompt shown above its answer). All text is escaped."""
    matched = [p for p in pairs if p.prompt is not None]
    others = [p for p in pairs if p.prompt is None]
    head = (f"<th>{escape(before_label)}</th><th>score</th>"
            f"<th>{escape(after_label)}</th><th>score</th>")
    tables = []
    if matched:
        rows = "".join(f'<tr><td><div class="text">{escape(p.prompt)}</div></td>'
                       f"{_answer_cell(p.before, False)}{_score_cell(p.before)}"
                       f"{_answer_cell(p.after, False)}{_score_cell(p.after)}</tr>"
                       for p in matched)
        tables.append('<table class="samples"><colgroup><col class="prompt-col"><col>'
                      '<col class="score-col"><col><col class="score-col"></colgroup>'
                      f"<thead><tr><th>prompt</th>{head}</tr></thead><tbody>{rows}</tbody>"
                      "</table>")
    if others:
        rows = "".join(f"<tr>{_answer_cell(p.before, True)}{_score_cell(p.before)}"
                       f"{_answer_cell(p.after, True)}{_score_cell(p.after)}</tr>"
                       for p in others)
        tables.append('<table class="samples"><colgroup><col><col class="score-col"><col>'
                      '<col class="score-col"></colgroup>'
                      f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return "".join(tables)


SCORE_NOTES = {"ppo": " Scores are after normalisation."}
"""What the score of a stage's samples.jsonl rows is, for the stages the report knows it of."""


def samples_note(first: int, last: int, pairs: list[SamplePair], stage: str = "ppo") -> str:
    """The line above an RL run's samples table (plain text, not yet escaped)."""
    matched = sum(pair.prompt is not None for pair in pairs)
    if last == first:
        return f"Only step {first} has samples so far."
    return (f"The first and last logged steps ({first} and {last}); {matched} of {len(pairs)} "
            "rows answer the same prompt at both steps (others show their prompt above the "
            "answer)." + SCORE_NOTES.get(stage, ""))
