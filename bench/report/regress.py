"""Regression detection: did a headline figure move beyond its noise, compared with history?

For each headline figure of the new run (:func:`bench.results.history.headline_figures`) the
last ``window`` values of the same (scenario, broker, sweep point, metric) in the history are
the baseline. A figure is flagged when **both** hold:

1. **Threshold**: it moved at least ``threshold_pct`` (default 10 %) from the baseline's median
   in the metric's worse direction (lower TPS, higher latency, longer outage...). This keeps
   statistically real but operationally meaningless shifts out of the nightly signal.
2. **Significance**: it is beyond the noise by the one rule,
   :func:`bench.results.noise.beyond_noise` (for one value against a history: the one-sided
   prediction-interval t-test, ``p < alpha``, default 0.01). A noisy figure needs a larger
   move.

Fewer than ``min_history`` (default 5) baseline values: not judged (reported as such). A
baseline with no spread at all (sd 0) passes the significance test for any change, leaving the
threshold to decide. Loss is correctness, not performance: an acknowledged message lost where
the baseline lost none is flagged regardless of both tests. The same tests in the better
direction report an improvement (never an error).

Synthetic histories in the tests: a 20 % drop against ±3 % gaussian noise is flagged; values
drawn from that same noise are not.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.errors import BenchError
from bench.results.history import History, headline_figures
from bench.results.noise import beyond_noise
from bench.results.schema import HEADLINE_METRICS
from bench.results.store import Run

DEFAULT_THRESHOLD_PCT = 10.0
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_HISTORY = 5
DEFAULT_WINDOW = 20
CORRECTNESS_METRICS = frozenset({"loss.lost"})


class RegressionFound(BenchError):
    """The nightly run has figures that regressed beyond their noise (exit status 3)."""

    exit_code = 3


@dataclass(frozen=True)
class Assessment:
    """The verdict on one value against its baseline."""

    verdict: str
    """``regression``, ``improvement``, ``ok`` or ``no baseline``."""
    baseline: float | None
    change_pct: float | None
    p_value: float | None
    n_history: int


def assess(
    history: Sequence[float],
    value: float,
    direction: str,
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    min_history: int = DEFAULT_MIN_HISTORY,
    correctness: bool = False,
) -> Assessment:
    """Judge ``value`` against ``history`` (oldest first) by the rules in the module docstring.

    ``direction`` is ``higher`` or ``lower`` (which way is better).
    """
    n = len(history)
    if correctness and n >= 1:
        base = statistics.median(history)
        if base == 0 and value > 0:
            return Assessment("regression", base, math.inf, None, n)
    if n < min_history:
        return Assessment("no baseline", None, None, None, n)
    base = statistics.median(history)
    # A zero baseline has no relative scale: any move is an infinite relative change.
    change = 100 * (value - base) / abs(base) if base else (0.0 if value == 0 else math.inf)
    worse = (value < base) if direction == "higher" else (value > base)
    noise = beyond_noise(
        history, [value], alpha=alpha, threshold_pct=threshold_pct, min_change_pct=0.0
    )
    if abs(change) >= threshold_pct and noise.beyond:
        return Assessment("regression" if worse else "improvement", base, change, noise.p_value, n)
    return Assessment("ok", base, change, noise.p_value, n)


@dataclass(frozen=True)
class Finding:
    """A figure of the new run judged against the history."""

    scenario: str
    broker: str
    step_key: str
    metric: str
    direction: str
    value: float
    baseline: float
    change_pct: float
    p_value: float | None
    n_history: int
    verdict: str

    def describe(self) -> str:
        """One line for the terminal."""
        p = f", p={self.p_value:.2g}" if self.p_value is not None else ""
        return (
            f"{self.verdict.upper()}: {self.scenario} {self.broker} {self.step_key} "
            f"{self.metric}: {self.value:.4g} vs median {self.baseline:.4g} of "
            f"{self.n_history} runs ({self.change_pct:+.1f}%{p}; {self.direction} is better)"
        )


def detect(
    history: History,
    run: Run,
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    min_history: int = DEFAULT_MIN_HISTORY,
    window: int = DEFAULT_WINDOW,
) -> tuple[list[Finding], int]:
    """Judge every headline figure of ``run``; return (regressions and improvements, how many
    figures had no baseline yet). The run itself is excluded from its baseline."""
    kinds = {}
    if len(run.steps):
        kinds = dict(zip(run.steps["scenario"], run.steps["kind"], strict=True))
    found: list[Finding] = []
    unjudged = 0
    for f in headline_figures(run):
        direction = HEADLINE_METRICS.get(str(kinds.get(f.scenario)), {}).get(f.metric, "higher")
        past = history.series(
            f.scenario,
            f.broker,
            f.step_key,
            f.metric,
            exclude_run=run.run_id,
            before=f.started_at,
            limit=window,
        )
        a = assess(
            [p.value for p in past],
            f.value,
            direction,
            threshold_pct=threshold_pct,
            alpha=alpha,
            min_history=min_history,
            correctness=f.metric in CORRECTNESS_METRICS,
        )
        if a.verdict == "no baseline":
            unjudged += 1
        elif a.verdict in ("regression", "improvement"):
            assert a.baseline is not None and a.change_pct is not None
            found.append(
                Finding(
                    f.scenario,
                    f.broker,
                    f.step_key,
                    f.metric,
                    direction,
                    f.value,
                    a.baseline,
                    a.change_pct,
                    a.p_value,
                    a.n_history,
                    a.verdict,
                )
            )
    found.sort(key=lambda x: (x.verdict != "regression", x.scenario, x.broker, x.step_key))
    return found, unjudged
