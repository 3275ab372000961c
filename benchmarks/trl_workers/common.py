"""Helpers shared by the compare_trl.py workers; standard library only (they run in the main
venv and in the TRL venvs alike). A worker reads one JSON spec file (argv[1]), measures, and
prints one JSON line starting with RESULT_PREFIX."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

RESULT_PREFIX = "RESULT "


def read_spec() -> dict:
    with open(sys.argv[1], encoding="utf-8") as handle:
        return json.load(handle)


def set_threads(threads: int) -> None:
    """The same intra-op thread count on both sides (the driver also sets OMP_NUM_THREADS)."""
    import torch

    torch.set_num_threads(threads)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepClock:
    """Wall-clock time at the end of each step; intervals between consecutive step ends."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def mark(self) -> None:
        self.ends.append(time.perf_counter())

    def intervals(self, warmup: int) -> list[float]:
        """Seconds of each step after the first `warmup` steps (step k = end k - end k-1)."""
        return [b - a for a, b in zip(self.ends[warmup - 1:], self.ends[warmup:], strict=False)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def emit(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def optimizer_name(optimizer) -> str:
    """'AdamW(fused=True)' for an optimizer, unwrapping accelerate's AcceleratedOptimizer."""
    inner = getattr(optimizer, "optimizer", optimizer)
    return f"{type(inner).__name__}(fused={inner.defaults.get('fused')})"


class Phases:
    """Seconds spent inside wrapped functions, added up per phase name; `cut()` at each step
    end keeps that step's totals, `medians(warmup)` gives each phase's median over the timed
    steps. Nested phases (a forward inside another timed call) are the caller's business."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.steps: list[dict[str, float]] = []
        self._at_cut: dict[str, float] = {}

    def wrap(self, function, phase):
        """`function` timed into `phase` (a name, or a callable of the call's arguments that
        returns one)."""
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                name = phase(*args, **kwargs) if callable(phase) else phase
                self.add(name, time.perf_counter() - start)
        return timed

    def add(self, name: str, seconds: float) -> None:
        self.total[name] = self.total.get(name, 0.0) + seconds

    def cut(self) -> None:
        self.steps.append({name: value - self._at_cut.get(name, 0.0)
                           for name, value in self.total.items()})
        self._at_cut = dict(self.total)

    def medians(self, warmup: int) -> dict[str, float]:
        timed = self.steps[warmup:]
        names = sorted({name for step in timed for name in step})
        return {name: median([step.get(name, 0.0) for step in timed]) for name in names}
