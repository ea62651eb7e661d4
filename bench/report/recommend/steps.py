"""Reading a dimension's steps frame: columns, parameters, repetitions, the steps a figure may use
(clean ones), and a figure taken at the largest x both brokers reached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from bench.report.recommend.verdict import Figure
from bench.results import clean
from bench.results.frames import column, param


def _outage(df: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` of kill-9 steps; an unavailability window longer than its step observed
    counts as its lower bound (``unavailability_at_least_s``), not as missing: dropping it
    would flatter the broker that stayed down longest."""
    col = column(df, metric)
    if metric == "unavailability_s":
        col = col.fillna(column(df, "unavailability_at_least_s"))
    return col


def _problems(steps: pd.DataFrame, publish_side: bool = False) -> list[str]:
    """Steps whose figures cannot be trusted, by the one definition of a clean step
    (:mod:`bench.results.clean`); ``publish_side``: for a figure of sends, creation or lookups
    only."""
    why = clean.unclean(steps, publish_side=publish_side)
    return [f"{sid}: {w}" for sid, w in zip(steps["step_id"], why, strict=True) if w][:5]


def _repetitions(df: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    return list(df.groupby("run_id", sort=True))


def _usable(df: pd.DataFrame, publish_side: bool) -> tuple[pd.DataFrame, list[str]]:
    """The clean steps of ``df`` (bench.results.clean) not excluded by a read rule, and one line
    per step left out, naming it and why."""
    why = clean.unclean(df, publish_side=publish_side)
    if "excluded" in df.columns:
        why = why.where(why.notna(), df["excluded"].where(df["excluded"].notna(), None))
    bad = why.notna() if len(df) else pd.Series([], dtype=bool)
    left = [f"{sid}: {w}" for sid, w in zip(df.loc[bad, "step_id"], why[bad], strict=True)]
    return df[~bad] if len(df) else df, left


def _at_common_max(
    frames_: dict[str, pd.DataFrame], x_of: Callable[[pd.DataFrame], pd.Series], metric: str
) -> tuple[float | None, dict[str, list[float]]]:
    """Each broker's per-repetition ``metric`` at the largest x both brokers measured it."""
    reached = []
    for df in frames_.values():
        ok = df[column(df, metric).notna()]
        reached.append(set(x_of(ok).dropna()))
    common = set.intersection(*reached) if reached else set()
    if not common:
        return None, {b: [] for b in frames_}
    x_max = max(common)
    out: dict[str, list[float]] = {}
    for b, df in frames_.items():
        vals = [float(v) for v in column(df[x_of(df) == x_max], metric).dropna()]
        out[b] = vals
    return x_max, out


def _figure_at_max(
    frames_: dict[str, pd.DataFrame],
    x_of: Callable[[pd.DataFrame], pd.Series],
    metric: str,
    label: str,
    publish_side: bool = False,
    settings_of: Callable[[pd.DataFrame], tuple[pd.DataFrame, str]] | None = None,
) -> tuple[Figure, Figure]:
    """Both brokers' ``metric`` at the largest x both measured, from their usable steps."""
    usable: dict[str, pd.DataFrame] = {}
    left: dict[str, list[str]] = {}
    setting: dict[str, str] = {}
    for b, df in frames_.items():
        df, setting[b] = settings_of(df) if settings_of else (df, "")
        usable[b], left[b] = _usable(df, publish_side)
    x_max, vals = _at_common_max(usable, x_of, metric)
    a, b = frames_
    detail = f"at {label} {x_max:,.6g}" if x_max is not None else "no common point"

    def fig(x: str) -> Figure:
        d = detail + (f", {setting[x]}" if setting[x] else "")
        near = [w for w in left[x] if x_max is None or f"={x_max:g}" in w or "topics=" not in w]
        return Figure(x, vals[x], d, left_out=near[:5])

    return fig(a), fig(b)


def is_client_bound(value: Any) -> bool:
    """A step's ``client_bound`` metric as read back from a frame (bool, numpy bool or NaN)."""
    return str(value) == "True"  # True and numpy.True_ alike; False, None and NaN are not


def _no_broker(step_id: str, broker: str) -> str:
    prefix = broker + "-"
    return step_id[len(prefix) :] if step_id.startswith(prefix) else step_id


def _offered(df: pd.DataFrame) -> pd.Series:
    return column(df, "offered_rate_per_s").fillna(column(df, "params.rate_per_s"))


def _bound_mask(df: pd.DataFrame) -> pd.Series:
    return (
        df["client_bound"].map(is_client_bound)
        if "client_bound" in df.columns
        else (pd.Series(False, index=df.index))
    )


def _mode_keys(df: pd.DataFrame) -> list[tuple[Any, Any]]:
    return list(zip(param(df, "send_mode"), param(df, "connection_mode"), strict=True))
