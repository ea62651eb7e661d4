"""What the per-kind sections share: tables, sections, number formats, curves and their labels."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.report.charts import Chart, Line
from bench.report.recommend import is_client_bound, title
from bench.results.frames import column, param

MS = 1e-3
"""Latencies are stored in microseconds and charted in milliseconds."""


KIND_TITLES: dict[str, str] = {
    "topic-growth": "Topic growth",
    "send-frequency": "Send frequency",
    "subscribe-frequency": "Subscribe frequency",
    "kill-9-recovery": "kill -9 recovery",
}


@dataclass
class Table:
    """A table of plain strings (escaped by the template)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Section:
    """One scenario's part of the report."""

    kind: str
    scenario: str
    title: str
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt(v: Any, digits: int = 3) -> str:
    """A value for a table cell: numbers to ``digits`` significant digits, None as a dash."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 10**digits):
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def _limited_by(df: pd.DataFrame, x_of: Any, offered: float | None) -> str:
    """Who limited a curve from its saturation point on: "our client" if any of those steps
    was client-bound, else "broker"; without a saturation point, "our client" if any step was
    client-bound, else "-" (nothing limited it), as without the figures."""
    x = x_of(df)
    rows = df if offered is None else df[x >= offered]
    values = [v for v in param(rows, "client_bound") if str(v) in ("True", "False")]
    if any(is_client_bound(v) for v in values):
        return "our client"
    return "broker" if values and offered is not None else "-"


def _strip_broker(text: str, broker: str) -> str:
    return text[len(broker) + 1 :] if text.startswith(broker + "-") else text


def _curve(df: pd.DataFrame, x: pd.Series, y: pd.Series) -> tuple[list[float], list[float]]:
    """Mean of ``y`` per distinct ``x`` (repetitions pooled), sorted by x."""
    d = pd.DataFrame({"x": x.to_numpy(), "y": y.to_numpy()}).dropna()
    if d.empty:
        return [], []
    g = d.groupby("x", sort=True)["y"].mean()
    return [float(v) for v in g.index], [float(v) for v in g.to_numpy()]


def _group_labels(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Short labels for (broker, group): the group's parts that differ between groups."""
    parts = {
        (str(b), str(g)): _strip_broker(str(g), str(b)).split("-")
        for b, g in df[["broker", "group"]].drop_duplicates().itertuples(index=False)
    }
    common = set.intersection(*(set(p) for p in parts.values())) if parts else set()
    return {k: "-".join(x for x in p if x not in common) for k, p in parts.items()}


def _engines(df: pd.DataFrame) -> str:
    """`` [jvm]``: the load engine(s) behind rows of ``df``, named beside every curve."""
    if "engine" not in df:
        return ""
    engines = sorted({str(e) for e in df["engine"].dropna()})
    return f" [{'+'.join(engines)}]" if engines else ""


def _lines(
    df: pd.DataFrame,
    x_of: Any,
    metric: str,
    *,
    label_suffix: str = "",
    style_offset: int = 0,
    by_group: bool = True,
    scale: float = 1.0,
) -> list[Line]:
    """One line per broker (and sweep group), mean over repetitions, ``y`` times ``scale``."""
    out: list[Line] = []
    labels = _group_labels(df) if by_group and len(df) else {}
    for broker, bdf in df.groupby("broker", sort=True):
        groups = list(bdf.groupby("group", sort=True)) if by_group else [("", bdf)]
        for i, (group, gdf) in enumerate(groups):
            xs, ys = _curve(gdf, x_of(gdf), column(gdf, metric) * scale)
            if not xs:
                continue
            label = title(str(broker)) + _engines(gdf)
            sub = labels.get((str(broker), str(group)), "")
            if sub:
                label += f" {sub}"
            out.append(Line(label + label_suffix, str(broker), xs, ys, style=i + style_offset))
    return out


def _refusals(steps: pd.DataFrame, x_of: Callable[[pd.DataFrame], pd.Series]) -> dict[str, float]:
    """Per broker: the topic count at which it refused further topics (``create_stopped``)."""
    if "create_stopped" not in steps.columns:
        return {}
    stopped = steps[steps["create_stopped"].map(lambda v: isinstance(v, str) and bool(v))]
    return {str(b): float(x_of(g).min()) for b, g in stopped.groupby("broker")}


def _value(r: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` in record ``r`` that holds a value (NaN counts as none)."""
    for k in keys:
        v = r.get(k)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            return v
    return None


def _event_time(
    r: Mapping[str, Any], ev: pd.DataFrame, metric: str, kinds: tuple[str, ...]
) -> float | None:
    """The step's ``metric`` (killed_at, restarted_at), else its first event of ``kinds``."""
    v = _value(r, metric)
    if v is not None:
        return float(v)
    if len(ev):
        k = ev[
            (ev["step_id"] == r["step_id"])
            & (ev["run_id"] == r["run_id"])
            & ev["kind"].isin(list(kinds))
        ]
        if len(k):
            return float(k["t"].iloc[0])
    return None
