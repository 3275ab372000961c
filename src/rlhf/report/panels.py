"""Which curves each stage shows: one table for the PNG files of a run directory and the
curves of report.html.

A panel with a `file` is also written as that PNG next to metrics.jsonl; one without is drawn
in report.html only. Stages in AUTO_PANEL_STAGES (SFT and generic runs) also draw, in the
HTML report, every other numeric metric, grouped by name so that train/X and eval/X share a
plot. A panel none of whose keys was logged (objective/kl of a critic-free run without a KL
penalty) draws nothing: no PNG file, no figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.report.run_files import is_number


@dataclass(frozen=True)
class Panel:
    """Metric keys drawn together against the optimizer step, or against another metric."""

    keys: tuple[str, ...]
    title: str
    file: str | None = None
    """PNG file name in the run directory; None: drawn in report.html only."""
    file_title: str | None = None
    """The PNG file's title when it differs from the HTML one."""
    x: str = "step"
    """The horizontal axis: 'step', or a metric logged on the same lines (e.g. a KL)."""
    sqrt_x: bool = False
    """Draw against the square root of `x` (rewards against sqrt(KL), as Gao et al. 2022)."""

    @property
    def png_title(self) -> str:
        return self.file_title or self.title


LOSS = ("train/loss", "eval/loss")
HELD_OUT = ("eval/score", "eval/reward")
RL_HELD_OUT_PANELS = (
    Panel(HELD_OUT, "held-out rewards against sqrt(KL to the reference)", "eval_vs_kl.png",
          x="eval/kl", sqrt_x=True),
    Panel(HELD_OUT, "held-out rewards: training reward (score) and eval.reward", "eval.png"),
    Panel(("objective/score",), "training score against KL to the reference", x="objective/kl"),
)
"""An RL run's held-out evaluation (`eval` section; nothing is drawn without it) and its
training score against KL: optimising a reward is a trade against KL, not a race in steps."""

STAGE_PANELS: dict[str, tuple[Panel, ...]] = {
    "sft": (
        Panel(LOSS, "language-model loss (nats per token)", "loss.png",
              file_title="SFT loss (nats per response token)"),
    ),
    "reward": (
        Panel(LOSS, "reward-model loss", "loss.png"),
        Panel(("train/accuracy", "eval/accuracy"), "preference accuracy", "accuracy.png"),
        Panel(("train/margin_mean", "eval/margin_mean"), "score margin (chosen - rejected)"),
    ),
    "ppo": (
        Panel(("objective/score", "objective/rlhf_reward"), "reward-model score", "score.png"),
        Panel(("objective/kl",), "KL to the reference (nats per sequence)", "kl.png"),
        Panel(("objective/kl_coef",), "KL coefficient beta", "kl_coef.png"),
        Panel(("policy/entropy",), "policy entropy (nats per token)", "entropy.png"),
        Panel(("response/length",), "response length (tokens)", "length.png"),
        *RL_HELD_OUT_PANELS,
    ),
    "critic_free": (
        Panel(("objective/score", "objective/raw_score"), "score (optimised) and raw score",
              "score.png"),
        Panel(("objective/kl",), "KL to the reference (nats per sequence)", "kl.png"),
        Panel(("group/reward_std", "group/zero_signal_fraction"),
              "group signal: score std within a group, share of groups without any",
              "groups.png"),
        Panel(("policy/entropy",), "policy entropy (nats per token)", "entropy.png"),
        Panel(("policy/clipfrac_low", "policy/clipfrac_high"),
              "clipped tokens (low: A < 0, high: A > 0)", "clipfrac.png"),
        Panel(("response/length",), "response length (tokens)", "length.png"),
        *RL_HELD_OUT_PANELS,
    ),
    "dpo": (
        Panel(LOSS, "preference loss", "loss.png"),
        Panel(("train/accuracy", "eval/accuracy"),
              "reward accuracy (chosen's implicit reward higher)", "accuracy.png"),
        Panel(("train/margin_mean", "eval/margin_mean"),
              "implicit reward margin (chosen - rejected)", "margin.png"),
        Panel(("eval/chosen_reward", "eval/rejected_reward"),
              "held-out implicit rewards beta * log(pi / pi_ref)"),
        Panel(("train/chosen_logprob", "train/rejected_logprob"),
              "policy log-probs of chosen and rejected responses"),
    ),
}
SCORES_FILE = "scores.png"
"""A reward run's histogram of held-out scores (eval_scores.json), beside its curves."""
AUTO_PANEL_STAGES = ("sft", "run")
NOT_PLOTTED = {"step", "train/epoch"}
MAX_AUTO_PANELS = 12


def file_panels(stage: str) -> list[Panel]:
    """The panels a stage writes as PNG files, in order."""
    return [panel for panel in STAGE_PANELS.get(stage, ()) if panel.file is not None]


def auto_panels(records: list[dict], covered: set[str]) -> list[Panel]:
    """Metrics not yet drawn, grouped by name so that train/X and eval/X share a plot."""
    groups: dict[str, list[str]] = {}
    for record in records:
        for key, value in record.items():
            if key in NOT_PLOTTED or key in covered or not is_number(value):
                continue
            keys = groups.setdefault(key.split("/", 1)[-1], [])
            if key not in keys:
                keys.append(key)
    return [Panel(tuple(keys), name) for name, keys in groups.items()][:MAX_AUTO_PANELS]


def stage_panels(stage: str, records: list[dict]) -> list[Panel]:
    """The curves a stage's report draws: its own panels, then (sft, generic) everything else."""
    own = list(STAGE_PANELS.get(stage, ()))
    if stage not in AUTO_PANEL_STAGES:
        return own
    covered = {key for panel in own for key in panel.keys}
    return own + auto_panels(records, covered)
