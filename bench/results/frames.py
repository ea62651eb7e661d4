"""Stored records as pandas frames, with nested dicts flattened into dotted columns.

A step's ``metrics`` become top-level columns (``publish_tps``, ``publish_latency_us.p99``,
``errors_by_kind.Timeout``); ``params``, ``window`` and ``loss`` keep their prefix
(``params.rate_per_s``, ``window.start``, ``loss.lost``). Every frame has the contract's
columns even when empty, so callers can filter without checking first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from bench.results.schema import SERIES_KEYS

STEP_COLUMNS: tuple[str, ...] = (
    "run_id",
    "scenario",
    "step_id",
    "point",
    "kind",
    "profile",
    "broker",
    "topology",
    "index",
    "group",
    "status",
    "error",
    "started_at",
    "ended_at",
    "window.start",
    "window.end",
)
EVENT_COLUMNS: tuple[str, ...] = ("run_id", "t", "kind", "scenario", "step_id", "broker", "detail")
RESOURCE_COLUMNS: tuple[str, ...] = ("run_id", "t", "name", "kind", "scenario", "step_id", "broker")

_REPETITION = re.compile(r"-rep=\d+$")


def point_key(step_id: str) -> str:
    """The sweep point a step measures, without its repetition number.

    Kill-9 steps are repeated and their ids end in ``-rep=N`` (the scenario model puts the
    repetition last); the repetitions of one point share this key, so their spread is the
    point's noise.
    """
    return _REPETITION.sub("", step_id)


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Return ``d`` with nested mappings flattened: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


def step_row(record: Mapping[str, Any], run_id: str = "") -> dict[str, Any]:
    """Flatten one step record into one frame row (see the module docstring)."""
    row: dict[str, Any] = {"run_id": run_id}
    for key, value in record.items():
        if key == "metrics":
            row.update(flatten(value or {}))
        elif key in ("params", "window", "loss"):
            if isinstance(value, Mapping):
                row.update(flatten(value, key))
        else:
            row[key] = value
    row["point"] = point_key(str(record.get("step_id", "")))
    if record.get("status") != "skipped" and not row.get("engine"):
        # Migration: steps recorded before the JVM engine existed ran on the Python one.
        row["engine"] = "python"
    return row


def _frame(rows: Sequence[Mapping[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    cols = list(columns)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    df = pd.DataFrame.from_records(list(rows))
    for c in cols:
        if c not in df.columns:
            df[c] = None
    return df


def steps_frame(records: Sequence[Mapping[str, Any]], run_id: str = "") -> pd.DataFrame:
    """One row per step, metrics flattened (see :func:`step_row`). ``cold_start`` is True on
    the first step each broker ran of each scenario: the runner brings the broker up fresh for
    it, so it runs on a cold JVM (the report says so beside its figures)."""
    df = _frame([step_row(r, run_id) for r in records], STEP_COLUMNS)
    df["cold_start"] = False
    ran = df[df["status"] != "skipped"] if len(df) else df
    if len(ran):
        first = ran.sort_values("started_at").groupby(["scenario", "broker"]).head(1).index
        df.loc[first, "cold_start"] = True
    return df


def series_frame(rows: Sequence[Mapping[str, Any]], run_id: str = "") -> pd.DataFrame:
    """Per-second rows with a ``run_id`` column, sorted by step and time."""
    df = _frame([{"run_id": run_id, **r} for r in rows], ("run_id", *SERIES_KEYS))
    if len(df):
        df = df.sort_values(["scenario", "step_id", "t"], kind="stable").reset_index(drop=True)
    return df


def resources_frame(rows: Sequence[Mapping[str, Any]], run_id: str = "") -> pd.DataFrame:
    """Resource rows with nested dicts (per-interface rates) flattened."""
    return _frame([flatten({"run_id": run_id, **r}) for r in rows], RESOURCE_COLUMNS)


def events_frame(rows: Sequence[Mapping[str, Any]], run_id: str = "") -> pd.DataFrame:
    """Events in time order; ``detail`` stays a dict (it is free-form)."""
    df = _frame([{"run_id": run_id, **r} for r in rows], EVENT_COLUMNS)
    if len(df):
        df = df.sort_values("t", kind="stable").reset_index(drop=True)
    return df


def concat(frames_: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate frames of several runs (empty ones are skipped; columns are unioned)."""
    non_empty = [f for f in frames_ if len(f)]
    if not non_empty:
        return frames_[0].iloc[0:0].copy() if frames_ else pd.DataFrame()
    return pd.concat(non_empty, ignore_index=True, sort=False)


def drain_unfinished(steps: pd.DataFrame) -> pd.Series:
    """Per step: True where the drain ended before every acknowledged message arrived, so
    ``loss.lost`` is an upper bound (the rule: :func:`bench.results.clean.drain_unfinished`)."""
    from bench.results.clean import drain_unfinished as unfinished

    if not len(steps):
        return pd.Series([], dtype=bool)
    return pd.Series([unfinished(r) for r in steps.to_dict("records")], index=steps.index)


def column(df: pd.DataFrame, *names: str) -> pd.Series:
    """The first of ``names`` that is a column of ``df`` (as float), else all-NaN."""
    for n in names:
        if n in df.columns:
            return pd.to_numeric(df[n], errors="coerce")
    return pd.Series([math.nan] * len(df), index=df.index, dtype=float)


def param(df: pd.DataFrame, name: str) -> pd.Series:
    """The step parameter ``name`` (``params.<name>``, else the metric of that name)."""
    for col in (f"params.{name}", name):
        if col in df.columns:
            return df[col]
    return pd.Series([None] * len(df), index=df.index, dtype=object)
