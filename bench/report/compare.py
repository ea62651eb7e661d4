"""Run-to-run comparison: what changed between two stored runs, and whether it is beyond noise.

Figures are matched on (scenario, broker, sweep point, metric): the sweep point is the step id
without its repetition suffix (:func:`bench.results.frames.point_key`), and the metrics are the
kind's headline metrics (:data:`bench.results.schema.HEADLINE_METRICS`). Each side may hold
several values of a figure (kill-9 repetitions, or several runs per side); then the verdict
uses that spread:

the one noise rule of :func:`bench.results.noise.beyond_noise` (Welch's t-test with 2+ values a
side, ``alpha`` 0.05; a prediction interval with 2+ on one side; else a relative change of at
least ``threshold_pct``, default 10 %). Only clean steps count
(:mod:`bench.results.clean`).

Every row says which of the two was used.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.recommend import title
from bench.results import frames
from bench.results.clean import is_clean
from bench.results.noise import beyond_noise
from bench.results.schema import HEADLINE_METRICS
from bench.results.store import Run, load_run

DEFAULT_THRESHOLD_PCT = 10.0
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Difference:
    """One figure in both runs (or only one of them)."""

    scenario: str
    broker: str
    point: str
    metric: str
    direction: str
    a: list[float]
    b: list[float]
    change_pct: float | None
    beyond_noise: bool | None
    """None when the figure is missing on one side."""
    method: str
    """``welch p=0.003`` or ``threshold 10%``: how ``beyond_noise`` was decided."""

    @property
    def a_mean(self) -> float | None:
        """Mean of side A (None if absent)."""
        return statistics.fmean(self.a) if self.a else None

    @property
    def b_mean(self) -> float | None:
        """Mean of side B (None if absent)."""
        return statistics.fmean(self.b) if self.b else None

    @property
    def verdict(self) -> str:
        """``better``/``worse`` (beyond noise, by the metric's direction), ``within noise``,
        ``only in A``/``only in B``."""
        if not self.b:
            return "only in A"
        if not self.a:
            return "only in B"
        if not self.beyond_noise or self.change_pct is None:
            return "within noise"
        up = self.change_pct > 0
        return "better" if up == (self.direction == "higher") else "worse"


def _values(steps: pd.DataFrame) -> dict[tuple[str, str, str, str], list[float]]:
    out: dict[tuple[str, str, str, str], list[float]] = {}
    if not len(steps):
        return out
    # One definition of clean (bench.results.clean): a loss figure needs a clean step, the
    # others a step clean on the publish side (kill -9 send errors are what it measures).
    for rec in steps.to_dict("records"):
        for metric in HEADLINE_METRICS.get(str(rec["kind"]), {}):
            if not is_clean(rec, publish_side=not metric.startswith("loss.")):
                continue
            v = rec.get(metric)
            if v is None or isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not math.isfinite(float(v)):
                continue
            key = (str(rec["scenario"]), str(rec["broker"]), str(rec["point"]), metric)
            out.setdefault(key, []).append(float(v))
    return out


def _direction(scenario_kind: dict[str, str], scenario: str, metric: str) -> str:
    return HEADLINE_METRICS.get(scenario_kind.get(scenario, ""), {}).get(metric, "higher")


def compare_runs(
    runs_a: Sequence[Run],
    runs_b: Sequence[Run],
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
) -> list[Difference]:
    """Compare the figures of ``runs_a`` (before) with ``runs_b`` (after)."""
    sa = frames.concat([r.steps for r in runs_a])
    sb = frames.concat([r.steps for r in runs_b])
    kinds: dict[str, str] = {}
    for df in (sa, sb):
        if len(df):
            kinds.update(dict(zip(df["scenario"].astype(str), df["kind"].astype(str), strict=True)))
    va, vb = _values(sa), _values(sb)
    out: list[Difference] = []
    for key in sorted(set(va) | set(vb)):
        scenario, broker, point, metric = key
        a, b = va.get(key, []), vb.get(key, [])
        direction = _direction(kinds, scenario, metric)
        change: float | None = None
        beyond: bool | None = None
        method = "-"
        if a and b:
            noise = beyond_noise(a, b, alpha=alpha, threshold_pct=threshold_pct)
            change, beyond, method = noise.change_pct, noise.beyond, noise.method
        out.append(
            Difference(scenario, broker, point, metric, direction, a, b, change, beyond, method)
        )
    return out


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def rows(diffs: Sequence[Difference], *, only_beyond: bool = False) -> list[list[str]]:
    """Table rows (strings) for text or HTML output."""
    out = []
    for d in diffs:
        if only_beyond and not (d.beyond_noise or d.verdict.startswith("only")):
            continue
        change = "-" if d.change_pct is None else f"{d.change_pct:+.1f}%"
        out.append(
            [
                d.scenario,
                title(d.broker),
                d.point,
                d.metric,
                _num(d.a_mean),
                _num(d.b_mean),
                change,
                d.verdict.upper() if d.beyond_noise else d.verdict,
                d.method,
            ]
        )
    return out


COLUMNS = ["scenario", "broker", "point", "metric", "A", "B", "change", "verdict", "noise test"]


def format_text(diffs: Sequence[Difference], *, only_beyond: bool = False) -> str:
    """A plain-text table, one difference a line, widest columns padded."""
    body = rows(diffs, only_beyond=only_beyond)
    if not body:
        return "no differences" + (" beyond the noise" if only_beyond else "")
    table = [COLUMNS, *body]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    beyond = sum(1 for d in diffs if d.beyond_noise)
    worse = sum(1 for d in diffs if d.verdict == "worse")
    lines.append(f"{len(diffs)} figures compared; {beyond} beyond the noise ({worse} worse).")
    return "\n".join(lines)


def render_compare_html(
    diffs: Sequence[Difference],
    runs_a: Sequence[Run],
    runs_b: Sequence[Run],
    out: str | Path,
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
) -> Path:
    """Write the comparison as one self-contained HTML file."""
    from bench.report.html import Table, render_html

    context: dict[str, Any] = {
        "title": "Run comparison",
        "a": ", ".join(r.run_id for r in runs_a),
        "b": ", ".join(r.run_id for r in runs_b),
        "table": Table("Differences", COLUMNS, rows(diffs)),
        "beyond": sum(1 for d in diffs if d.beyond_noise),
        "worse": sum(1 for d in diffs if d.verdict == "worse"),
        "total": len(diffs),
        "threshold_pct": threshold_pct,
        "alpha": alpha,
        "synthetic": [r.run_id for r in (*runs_a, *runs_b) if r.metadata.get("synthetic")],
    }
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(context, "compare.html.j2"), encoding="utf-8")
    return path


def compare_dirs(
    a: str | Path, b: str | Path, **kw: Any
) -> tuple[list[Difference], list[Run], list[Run]]:
    """Load two run directories and compare them."""
    ra, rb = [load_run(a)], [load_run(b)]
    return compare_runs(ra, rb, **kw), ra, rb
