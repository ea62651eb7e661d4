"""The HTML report: stored runs -> frames -> charts and a recommendation -> one HTML file.

:func:`render_report` reads only run directories (so any report can be regenerated), and
writes one self-contained file: charts are inline SVG, styles are inline, nothing is fetched
when it is opened. The template is rendered by jinja2 with autoescaping on, so every string that
comes from a file or a broker (scenario, topic and step names, error messages, metadata) is
escaped; only the SVG that matplotlib produced (which escapes its own text) is marked safe.

Several run directories may be given: their steps are pooled, and a sweep point measured in
several runs (or a repeated kill-9 step) counts as repetitions of that point, whose spread the
recommendation and the warnings use. Curves show the mean over repetitions.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from bench.report import charts
from bench.report.charts import Chart, Line, Mark, Panel
from bench.report.recommend import (
    Recommendation,
    Settings,
    find_knee,
    find_saturation,
    is_client_bound,
    recommend,
    title,
)
from bench.results import clean, frames
from bench.results.check import check_run
from bench.results.frames import column, param
from bench.results.schema import HEADLINE_METRICS, ResultsError
from bench.results.store import Run, load_run, without_steps

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


@dataclass
class ReportWarning:
    """A warning: ``level`` is ``error`` or ``warn``; ``steps`` (folded away in the page) are
    the steps it is about, one line each."""

    level: str
    text: str
    steps: list[str] = field(default_factory=list)
    banner: bool = False
    """Shown above the recommendation too (a synthetic run must never pass for a measurement)."""


def _cause(why: str) -> str:
    """The cause of a step's not being clean, without its counts and details (the key that
    groups warnings): ``"12 send errors"`` -> ``"send errors"``."""
    head = why.split(":")[0] if not why.startswith("the drain") else why
    head = head.split(" (")[0]
    return re.sub(r"(?<![\w.])[\d,.]+\s+", "", head).strip()


# -- helpers ------------------------------------------------------------------------------------


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


# -- sections -----------------------------------------------------------------------------------


def _topic_growth(steps: pd.DataFrame, scenario: str, s: Settings) -> Section:
    sec = Section("topic-growth", scenario, f"Topic growth: {scenario}")

    def x_of(d: pd.DataFrame) -> pd.Series:
        # The topics that existed: fewer than the step's target when creation broke off.
        target = column(d, "topic_count").fillna(column(d, "params.topic_count"))
        return column(d, "topics_created").fillna(target)

    tps = _lines(steps, x_of, "publish_tps")
    marks: list[Mark] = []
    refused = _refusals(steps, x_of)
    for line in tps:
        knee = find_knee(line.x, line.y, s.knee_drop_pct)
        stop = refused.get(line.broker)
        if stop is not None and (knee is None or knee.x >= stop):
            y_at = dict(zip(line.x, line.y, strict=True)).get(stop)
            marks.append(Mark(stop, f"refused at {stop:,.0f}", line.broker, y_at))
            sec.notes.append(
                f"{line.label}: creation refused by the broker at {stop:,.0f} topics (publish "
                f"TPS held within {s.knee_drop_pct:g}% of its best up to there)."
            )
        elif knee is not None:
            marks.append(Mark(knee.x, f"knee: {knee.x:,.0f} topics", line.broker, knee.y))
            sec.notes.append(
                f"{line.label}: knee at {knee.x:,.0f} topics (publish TPS {knee.y:,.0f}); at "
                f"{knee.drop_x:,.0f} topics it fell to {knee.drop_y:,.0f}, more than "
                f"{s.knee_drop_pct:g}% below its best."
            )
        else:
            sec.notes.append(
                f"{line.label}: no knee up to {max(line.x):,.0f} topics, the sweep's end (publish "
                f"TPS stayed within {s.knee_drop_pct:g}% of its best)."
            )
    lookup = _lines(steps, x_of, "lookup_latency_us.p50", label_suffix=" p50", scale=MS)
    lookup += _lines(
        steps, x_of, "lookup_latency_us.p99", label_suffix=" p99", style_offset=1, scale=MS
    )
    panels = [
        Panel("Publish TPS (knee or refusal marked)", "topics", "msg/s", tps, marks, logx=True),
        Panel("Consume TPS", "topics", "msg/s", _lines(steps, x_of, "consume_tps"), logx=True),
        Panel("Lookup latency p50 / p99", "topics", "ms", lookup, logx=True, logy=True),
        Panel(
            "Topic-creation rate",
            "topics",
            "topics/s",
            _lines(steps, x_of, "create_rate_per_s"),
            logx=True,
        ),
        Panel(
            "Publish latency p99",
            "topics",
            "ms",
            _lines(steps, x_of, "publish_latency_us.p99", scale=MS),
            logx=True,
            logy=True,
        ),
        Panel(
            "Broker CPU (mean)",
            "topics",
            "% of one core",
            _lines(steps, x_of, "broker_cpu_pct"),
            logx=True,
        ),
    ]
    sec.charts.append(
        charts.render(
            f"{scenario}: throughput, lookups and topic creation against topic count",
            panels,
            caption=f"Measured window only (warm-up excluded). Knee: the last topic count at which "
            f"publish TPS is within {s.knee_drop_pct:g}% of its best so far.",
        )
    )
    timeouts = steps[column(steps, "lookup_timeouts").fillna(0) > 0]
    for r in timeouts.itertuples():
        sec.notes.append(
            f"{title(str(r.broker))} {r.step_id}: lookup timeouts "
            f"{fmt(getattr(r, 'lookup_timeouts', None))}."
        )
    return sec


def _refusals(steps: pd.DataFrame, x_of: Callable[[pd.DataFrame], pd.Series]) -> dict[str, float]:
    """Per broker: the topic count at which it refused further topics (``create_stopped``)."""
    if "create_stopped" not in steps.columns:
        return {}
    stopped = steps[steps["create_stopped"].map(lambda v: isinstance(v, str) and bool(v))]
    return {str(b): float(x_of(g).min()) for b, g in stopped.groupby("broker")}


def _send_frequency(steps: pd.DataFrame, scenario: str, s: Settings) -> Section:
    sec = Section("send-frequency", scenario, f"Send frequency: {scenario}")

    def x_of(d: pd.DataFrame) -> pd.Series:
        return column(d, "offered_rate_per_s").fillna(column(d, "params.rate_per_s"))

    modes = pd.DataFrame(
        {
            "send": param(steps, "send_mode").astype(str),
            "conn": param(steps, "connection_mode").astype(str),
        },
        index=steps.index,
    )
    limits: list[list[str]] = []
    for (send, conn), idx in modes.groupby(["send", "conn"], sort=True).groups.items():
        d = steps.loc[idx]
        # Sweep and ramp points of one mode form one curve per broker.
        tps = _lines(d, x_of, "publish_tps", by_group=False)
        marks = []
        for broker, bdf in d.groupby("broker", sort=True):
            sat = find_saturation(
                list(x_of(bdf)),
                list(column(bdf, "publish_tps")),
                [v if isinstance(v, bool) else None for v in param(bdf, "saturated")],
                s.saturation_fraction,
            )
            if sat is None:
                continue
            if sat.offered is not None and sat.achieved is not None:
                marks.append(
                    Mark(
                        sat.offered,
                        f"saturation: {sat.achieved:,.0f} msg/s",
                        str(broker),
                        sat.achieved,
                    )
                )
            limits.append(
                [
                    title(str(broker)),
                    str(send),
                    str(conn),
                    fmt(sat.offered) if sat.offered is not None else "not reached",
                    fmt(sat.max_achieved),
                    _limited_by(bdf, x_of, sat.offered),
                ]
            )
        lat = _lines(
            d, x_of, "publish_latency_us.p99", by_group=False, label_suffix=" ack", scale=MS
        )
        lat += _lines(
            d,
            x_of,
            "publish_intended_latency_us.p99",
            by_group=False,
            label_suffix=" intended",
            style_offset=1,
            scale=MS,
        )
        panels = [
            Panel(
                "Achieved publish TPS (saturation marked)",
                "offered msg/s",
                "msg/s",
                tps,
                marks,
                logx=True,
                logy=True,
                diagonal=True,
            ),
            Panel(
                "Consume TPS",
                "offered msg/s",
                "msg/s",
                _lines(d, x_of, "consume_tps", by_group=False),
                logx=True,
                logy=True,
            ),
            Panel(
                "Publish latency p99 (from send / from intended send)",
                "offered msg/s",
                "ms",
                lat,
                logx=True,
                logy=True,
            ),
            Panel(
                "End-to-end latency p99",
                "offered msg/s",
                "ms",
                _lines(d, x_of, "e2e_latency_us.p99", by_group=False, scale=MS),
                logx=True,
                logy=True,
            ),
            Panel(
                "CPU (mean): the broker and our load generator",
                "offered msg/s",
                "% of one core",
                _lines(d, x_of, "broker_cpu_pct", by_group=False, label_suffix=" broker")
                + _lines(
                    d,
                    x_of,
                    "client_cpu_pct",
                    by_group=False,
                    label_suffix=" our workers",
                    style_offset=1,
                ),
                logx=True,
            ),
        ]
        sec.charts.append(
            charts.render(
                f"{scenario}: send={send}, connections={conn}",
                panels,
                caption="Saturation: the first offered rate whose achieved rate is below "
                f"{s.saturation_fraction:g} x offered (or flagged saturated by the runner). "
                "Intended-time latency counts the wait a late send caused (coordinated omission).",
            )
        )
    if limits:
        sec.tables.append(
            Table(
                "Saturation and TPS limit",
                [
                    "broker",
                    "send mode",
                    "connections",
                    "saturates at offered msg/s",
                    "max achieved msg/s",
                    "limited by",
                ],
                limits,
                note='"our client": from the saturation point on, the machine\'s CPU was '
                "saturated and our worker processes took at least a third of it, so the broker "
                "was starved; that maximum is a floor of the broker's limit, not the limit "
                "(bench calibrate measures the client's CPU per message).",
            )
        )
    return sec


def _subscribe_frequency(steps: pd.DataFrame, scenario: str, s: Settings) -> Section:
    sec = Section("subscribe-frequency", scenario, f"Subscribe frequency: {scenario}")
    sweep = param(steps, "sweep")
    for name, xcol, xlabel in (
        ("fanout", "fanout", "subscriptions per topic"),
        ("churn", "churn_per_s", "subscribe+unsubscribe ops/s"),
    ):
        d = steps[sweep == name]
        if d.empty:
            continue

        def x_of(df: pd.DataFrame, col: str = xcol) -> pd.Series:
            return column(df, col).fillna(column(df, f"params.{col}"))

        sub = _lines(
            d, x_of, "subscribe_latency_us.p50", by_group=False, label_suffix=" p50", scale=MS
        )
        sub += _lines(
            d,
            x_of,
            "subscribe_latency_us.p99",
            by_group=False,
            label_suffix=" p99",
            style_offset=1,
            scale=MS,
        )
        logx = name == "fanout" or bool((x_of(d) > 0).all())
        panels = [
            Panel(
                "Consume TPS (all subscriptions)",
                xlabel,
                "msg/s",
                _lines(d, x_of, "consume_tps", by_group=False),
                logx=logx,
            ),
            Panel("Subscribe latency", xlabel, "ms", sub, logx=logx, logy=True),
            Panel(
                "Time to first message p99",
                xlabel,
                "ms",
                _lines(d, x_of, "first_message_latency_us.p99", by_group=False, scale=MS),
                logx=logx,
                logy=True,
            ),
            Panel(
                "Publish latency p99 (effect on publishers)",
                xlabel,
                "ms",
                _lines(d, x_of, "publish_latency_us.p99", by_group=False, scale=MS),
                logx=logx,
                logy=True,
            ),
        ]
        sec.charts.append(
            charts.render(
                f"{scenario}: {name} sweep",
                panels,
                caption="Measured window only (warm-up excluded).",
            )
        )
        fails = d[column(d, "subscribe_failures").fillna(0) > 0]
        for r in fails.itertuples():
            sec.notes.append(
                f"{title(str(r.broker))} {r.step_id}: "
                f"{fmt(getattr(r, 'subscribe_failures', None))} subscribe failures."
            )
    return sec


def _kill_recovery(
    steps: pd.DataFrame, series: pd.DataFrame, events: pd.DataFrame, scenario: str
) -> Section:
    sec = Section("kill-9-recovery", scenario, f"kill -9 recovery: {scenario}")
    points = pd.DataFrame(
        {
            "path": param(steps, "path").astype(str),
            "policy": param(steps, "restart_policy").astype(str),
        },
        index=steps.index,
    )
    ser = series[series["scenario"] == scenario] if len(series) else series
    # The runner's step events name the step but not always the scenario.
    ev = (
        events[events["scenario"].isna() | (events["scenario"] == scenario)]
        if len(events)
        else events
    )
    for (path, policy), idx in points.groupby(["path", "policy"], sort=True).groups.items():
        d = steps.loc[idx]
        tps_panels: list[Panel] = []
        err_panels: list[Panel] = []
        for broker, bdf in d.groupby("broker", sort=True):
            tps_lines: list[Line] = []
            err_lines: list[Line] = []
            restarts: dict[float, list[str]] = {}
            multi = d["run_id"].nunique() > 1
            for i, r in enumerate(bdf.sort_values(["run_id", "step_id"]).to_dict("records")):
                rs = ser[(ser["step_id"] == r["step_id"]) & (ser["run_id"] == r["run_id"])]
                kill_t = _event_time(r, ev, "killed_at", ("kill",))
                if rs.empty or kill_t is None:
                    continue
                x = [float(v) - kill_t for v in pd.to_numeric(rs["t"])]
                rep = fmt(_value(r, "params.repetition", "repetition"))
                label = f"rep {rep}" + (f" ({r['run_id']})" if multi else "")
                if r.get("engine"):
                    label += f" [{r['engine']}]"
                tps_lines.append(
                    Line(
                        label, str(broker), x, list(pd.to_numeric(rs["acked"])), style=i, step=True
                    )
                )
                err_lines.append(
                    Line(
                        label,
                        str(broker),
                        x,
                        list(pd.to_numeric(rs["send_errors"])),
                        style=i,
                        step=True,
                    )
                )
                restart = _event_time(r, ev, "restarted_at", ("restart", "supervisor_restart"))
                if restart is not None and not _value(r, "excluded"):
                    restarts.setdefault(round(restart - kill_t, 1), []).append(rep)
            marks = [Mark(0.0, "kill -9", str(broker)), *_restart_marks(restarts, str(broker))]
            offered = column(bdf, "offered_rate_per_s").dropna()
            spans = [x for line in tps_lines for x in line.x]
            if len(offered) and spans:
                # The offered rate, so a reader sees what "back to full TPS" means.
                rate = float(offered.max())
                tps_lines.append(
                    Line(
                        f"offered {rate:,.0f}/s",
                        str(broker),
                        [min(spans), max(spans)],
                        [rate, rate],
                        style=3,
                        step=True,
                    )
                )
            b = title(str(broker))
            tps_panels.append(
                Panel(f"{b}: acknowledged msg/s", "s since kill", "msg/s", tps_lines, marks)
            )
            err_panels.append(
                Panel(f"{b}: send errors/s", "s since kill", "errors/s", err_lines, marks)
            )
        if tps_panels:
            sec.charts.append(
                charts.render(
                    f"{scenario}: path={path}, restart={policy}",
                    tps_panels + err_panels,
                    caption="Per-second counters of the framework, aligned on the kill (0 s). "
                    "Vertical lines: the kill and the restarts, named in the legend; the flat "
                    "line is the offered rate.",
                )
            )
    rows = []
    for r in steps.sort_values(["broker", "step_id", "run_id"]).to_dict("records"):

        def get(key: str, r: dict[str, Any] = r) -> str:
            return fmt(_value(r, f"params.{key}", key) if key in _PARAM_KEYS else r.get(key))

        rows.append(
            [
                title(str(r["broker"])),
                get("path"),
                get("restart_policy"),
                get("repetition"),
                str(r["run_id"]),
                str(r["status"]),
                get("time_to_first_error_s"),
                _outage_cell(r, get),
                get("time_to_recover_tps_s"),
                get("clients_recovered"),
                ("≤ " if clean.drain_unfinished(r) else "") + get("loss.lost"),
                get("loss.duplicated"),
                get("loss.reordered"),
                get("loss.received_not_acked"),
                get("counter_resets"),
            ]
        )
    sec.tables.append(
        Table(
            "Per repetition",
            [
                "broker",
                "path",
                "restart",
                "rep",
                "run",
                "status",
                "first error s",
                "unavailable s",
                "to full TPS s",
                "clients recovered",
                "lost",
                "duplicated",
                "reordered",
                "received not acked",
                "counter resets",
            ],
            rows,
            note="Unavailable: kill to the first acknowledged publish on a topic the killed broker "
            "served (>= N: none within the N s the step observed). To full TPS: back within "
            "10% of the pre-kill rate. Lost: acknowledged, never consumed after the drain.",
        )
    )
    return sec


_PARAM_KEYS = ("path", "restart_policy", "repetition")


def _restart_marks(restarts: Mapping[float, list[str]], broker: str) -> list[Mark]:
    """One marker line per cluster of restart times (seconds after the kill): restarts within
    3 s of each other share a line and one label naming their range and repetitions, so the
    labels of repetitions restarted alike do not overlap."""
    groups: list[list[tuple[float, list[str]]]] = []
    for offset, reps in sorted(restarts.items()):
        if groups and offset - groups[-1][0][0] <= 3.0:
            groups[-1].append((offset, reps))
        else:
            groups.append([(offset, reps)])
    marks = []
    for g in groups[:4]:
        lo, hi = g[0][0], g[-1][0]
        reps = sorted({r for _, rs in g for r in rs})
        when = f"{lo:g} s" if lo == hi else f"{lo:g}-{hi:g} s"
        which = f"rep {', '.join(reps)} " if len(groups) > 1 or len(g) > 1 else ""
        marks.append(Mark(lo, f"restart {which}{when}", broker))
    return marks


def _outage_cell(r: Mapping[str, Any], get: Callable[[str], str]) -> str:
    """The unavailability window, or ">= N" when the outage outlasted what the step observed."""
    if _value(r, "unavailability_s") is None and _value(r, "unavailability_at_least_s") is not None:
        return ">= " + get("unavailability_at_least_s")
    return get("unavailability_s")


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


# -- warnings and environment -------------------------------------------------------------------


def _profile_cell(metadata: dict[str, Any]) -> str:
    """The profile, and the ``--only`` selection when the run made part of it."""
    cell = str(metadata.get("profile", "-"))
    only = metadata.get("only") or {}
    if isinstance(only, dict) and only:
        cell += " (only " + ", ".join(f"{k}={'|'.join(map(str, v))}" for k, v in only.items()) + ")"
    return cell


def _git_cell(metadata: dict[str, Any]) -> str:
    """The commit the run was made from (12 digits), ``+dirty`` with local changes."""
    git = metadata.get("git")
    if not isinstance(git, dict) or not git.get("commit"):
        return "-"
    return str(git["commit"])[:12] + ("+dirty" if git.get("dirty") else "")


def _warnings(runs: Sequence[Run], steps: pd.DataFrame, s: Settings) -> list[ReportWarning]:
    out: list[ReportWarning] = []
    # One warning per cause, its runs or steps folded away in the page.
    grouped: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        if run.metadata.get("synthetic"):
            out.append(
                ReportWarning(
                    "error",
                    f"Run {run.run_id} is synthetic: {run.metadata['synthetic']}",
                    banner=True,
                )
            )
        if run.status != "complete":
            grouped.setdefault(
                ("error", "run(s) did not finish: their figures cover the steps they finished"), []
            ).append(f"{run.run_id} is {run.status}")
        for w in run.warnings:
            key = "exclusions (--exclude)" if "--exclude" in w else "run files read with care"
            grouped.setdefault(("warn", key), []).append(f"{run.run_id}: {w}")
        git = run.metadata.get("git")
        if isinstance(git, dict) and git.get("dirty"):
            grouped.setdefault(
                ("warn", "run(s) made from uncommitted code: their figures may match no commit"),
                [],
            ).append(f"{run.run_id}: {_git_cell(run.metadata)}")
        for r in run.step_records:
            if r.get("excluded"):
                grouped.setdefault(
                    ("error", "step(s) with impossible figures, left out of the verdicts"), []
                ).append(f"{run.run_id} {r.get('scenario')}/{r.get('step_id')}: {r['excluded']}")
    for (level, cause), lines in grouped.items():
        out.append(ReportWarning(level, f"{len(lines)} {cause}.", lines))
    # Figures read by a rule newer than their run (bench.results.migrate), one warning a rule.
    by_rule: dict[str, list[str]] = {}
    for run in runs:
        for r in run.step_records:
            for n in r.get("notes", []):
                by_rule.setdefault(n.split(" ")[0], []).append(
                    f"{run.run_id} {r.get('scenario')}/{r.get('step_id')}: {n}"
                )
    for rule, lines in sorted(by_rule.items()):
        out.append(
            ReportWarning(
                "warn",
                f"{len(lines)} step(s): {rule} read by a rule newer than their run "
                "(bench.results.migrate).",
                lines,
            )
        )
    if not len(steps):
        out.append(ReportWarning("error", "The runs hold no finished steps."))
        return out
    # One warning per cause (bench.results.clean), its steps folded away in the template.
    causes: dict[str, list[str]] = {}
    for r, why in zip(steps.to_dict("records"), clean.unclean(steps), strict=True):
        if why:
            causes.setdefault(_cause(why), []).append(
                f"{r['run_id']} {r['scenario']}/{r['step_id']}: {why}"
            )
    for cause, names in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        level = "warn" if cause.startswith(("the drain", "skipped")) else "error"
        out.append(ReportWarning(level, f"{len(names)} step(s) not clean: {cause}.", names))
    for broker in ("pulsar", "rocketmq"):
        if not (steps["broker"] == broker).any():
            out.append(
                ReportWarning("error", f"No {title(broker)} steps: nothing to compare with.")
            )
    unstable = unstable_figures(steps, s.max_cv_pct, limit=1000)
    if unstable:
        out.append(
            ReportWarning(
                "warn",
                f"{len(unstable)} figure(s) vary by more than {s.max_cv_pct:g}% (CV) over their "
                "repetitions: the verdicts treat them as noisy.",
                unstable,
            )
        )
    # What bench check found (bench.results.check), one warning per invariant.
    broken: dict[str, list[str]] = {}
    for run in runs:
        for p in check_run(run):
            broken.setdefault(p.invariant, []).append(p.line())
    for invariant, lines in sorted(broken.items()):
        out.append(
            ReportWarning(
                "warn",
                f"bench check: {len(lines)} step(s) break the {invariant} invariant (the report "
                "reads them by the rules in bench.results.migrate).",
                lines,
            )
        )
    return out


def unstable_figures(steps: pd.DataFrame, max_cv_pct: float, limit: int = 12) -> list[str]:
    """Headline figures whose repetitions vary by more than ``max_cv_pct`` (CV)."""
    found: list[tuple[float, str]] = []
    for (kind, scenario, broker, point), g in steps.groupby(
        ["kind", "scenario", "broker", "point"], sort=True
    ):
        if len(g) < 2:
            continue
        for metric in HEADLINE_METRICS.get(str(kind), {}):
            # Only clean steps (a loss from an unfinished drain is a bound, not a value).
            ok = clean.clean_mask(g, publish_side=not metric.startswith("loss."))
            v = column(g[ok], metric).dropna()
            if len(v) < 2 or v.mean() == 0:
                continue
            cv = 100 * float(v.std()) / abs(float(v.mean()))
            if cv > max_cv_pct:
                found.append(
                    (
                        cv,
                        f"Unstable: {scenario} {title(str(broker))} "
                        f"{_strip_broker(str(point), str(broker))} {metric}: CV {cv:.0f}% "
                        f"over {len(v)} repetitions (limit {max_cv_pct:g}%).",
                    )
                )
    found.sort(key=lambda t: -t[0])
    msgs = [m for _, m in found[:limit]]
    if len(found) > limit:
        msgs.append(f"... and {len(found) - limit} more unstable figures.")
    return msgs


def _environment(runs: Sequence[Run]) -> list[Table]:
    tables = []
    for run in runs:
        rows = [
            ["run id", run.run_id],
            ["status", run.status],
            ["started", _when(run.meta.get("started_at"))],
            ["ended", _when(run.meta.get("ended_at"))],
            ["directory", str(run.run_dir)],
        ]
        for k, v in frames.flatten(run.metadata).items():
            rows.append([k, _plain(v)])
        tables.append(Table(f"Run {run.run_id}", ["key", "value"], rows))
    return tables


def _plain(v: Any) -> str:
    if isinstance(v, list):
        return (
            ", ".join(_plain(x) for x in v)
            if all(not isinstance(x, dict) for x in v)
            else "; ".join(
                ", ".join(f"{k}={_plain(x2)}" for k, x2 in x.items())
                if isinstance(x, dict)
                else _plain(x)
                for x in v
            )
        )
    return fmt(v) if not isinstance(v, str) else v


def _when(t: Any) -> str:
    if not isinstance(t, int | float) or isinstance(t, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _stored_cell(r: Mapping[str, Any], why: Mapping[tuple[str, str, str], str]) -> str:
    """The broker's count of what a step stored; stitched across restarts, or why unknown."""
    stored = _value(r, "broker_messages_in")
    if stored is None:
        reason = why.get((str(r["run_id"]), str(r["scenario"]), str(r["step_id"])))
        return f"unknown: {reason}" if reason else "-"
    resets = _value(r, "counter_resets")
    if resets:
        # What the broker stored between its last reading and a counter reset is missing: a
        # lower bound, shown as one.
        return f"at least {fmt(int(stored))} (stitched over {fmt(int(resets))} counter fall(s))"
    if _value(r, "killed_at") is not None:
        # A killed broker's counters die with it (and a topic's new owner starts from 0).
        return f"at least {fmt(int(stored))} (a broker was killed)"
    return fmt(int(stored))


def _steps_table(
    steps: pd.DataFrame, series: pd.DataFrame | None = None, events: pd.DataFrame | None = None
) -> Table:
    sent: dict[tuple[str, str, str], int] = {}
    if series is not None and len(series):
        sums = series.groupby(["run_id", "scenario", "step_id"])["sent"].sum()
        sent = {(str(a), str(b), str(c)): int(v) for (a, b, c), v in sums.items()}
    # Why a step's broker count is unknown: the runner's warning event for it.
    why: dict[tuple[str, str, str], str] = {}
    if events is not None and len(events):
        for e in events[events["kind"] == "warning"].to_dict("records"):
            d = e.get("detail")
            if isinstance(d, Mapping) and d.get("counter") == "broker_messages_in":
                key = (str(e["run_id"]), str(e["scenario"]), str(e["step_id"]))
                why[key] = str(d.get("message") or "")
    rows = []
    for r in steps.sort_values(["scenario", "broker", "index"]).to_dict("records"):
        key = (str(r["run_id"]), str(r["scenario"]), str(r["step_id"]))
        rows.append(
            [
                str(r["scenario"]),
                title(str(r["broker"])),
                str(r["step_id"]),
                str(r["status"]),
                fmt(_value(r, "publish_tps")),
                fmt(_value(r, "consume_tps")),
                fmt(_value(r, "publish_latency_us.p99")),
                fmt(_value(r, "send_errors")),
                fmt(sent.get(key)),
                _stored_cell(r, why),
                str(_value(r, "error") or ""),
            ]
        )
    return Table(
        "All steps",
        [
            "scenario",
            "broker",
            "step",
            "status",
            "publish TPS",
            "consume TPS",
            "publish p99 us",
            "send errors",
            "sent, whole step",
            "broker stored, whole step",
            "error",
        ],
        rows,
        note="Publish and consume TPS, p99 and send errors: the measured window. Sent (the "
        "client's count) and broker stored (the broker's own count on the step's topics): the "
        "whole step, from just before the load to the end of the drain, warm-up included, the "
        "span bench check compares them over.",
    )


# -- entry points -------------------------------------------------------------------------------


def environment() -> jinja2.Environment:
    """The jinja2 environment of the report templates, autoescaping every template."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        # True, not select_autoescape(): the templates end in .j2, which select_autoescape's
        # extension match would miss, silently turning escaping off.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_context(
    runs: Sequence[Run],
    settings: Settings | None = None,
    regressions: Iterable[Any] = (),
) -> dict[str, Any]:
    """Everything the template shows, computed from ``runs``."""
    s = settings or Settings()
    steps = frames.concat([r.steps for r in runs])
    series = frames.concat([r.series for r in runs])
    events = frames.concat([r.events for r in runs])
    rec: Recommendation = recommend(steps, settings=s)
    sections: list[Section] = []
    if len(steps):
        for kind in KIND_TITLES:
            for scenario in sorted(steps.loc[steps["kind"] == kind, "scenario"].unique()):
                d = steps[(steps["kind"] == kind) & (steps["scenario"] == scenario)]
                name = str(scenario)
                if kind == "topic-growth":
                    sections.append(_topic_growth(d, name, s))
                elif kind == "send-frequency":
                    sections.append(_send_frequency(d, name, s))
                elif kind == "subscribe-frequency":
                    sections.append(_subscribe_frequency(d, name, s))
                else:
                    sections.append(_kill_recovery(d, series, events, name))
    for sec in sections:
        for c in sec.charts:
            c.svg = Markup(c.svg)  # matplotlib escaped the text inside; see charts.py
    return {
        "title": "RocketMQ vs Pulsar: benchmark report",
        "generated": _when(time.time()),
        "runs": runs,
        "run_rows": [
            [
                r.run_id,
                r.status,
                _when(r.meta.get("started_at")),
                _profile_cell(r.metadata),
                ", ".join(map(str, r.metadata.get("brokers", []) or [])),
                _git_cell(r.metadata),
                str(len(r.step_records)),
            ]
            for r in runs
        ],
        "recommendation": rec,
        "warnings": _warnings(runs, steps, s),
        "regressions": list(regressions),
        "sections": sections,
        "kind_titles": KIND_TITLES,
        "environment": _environment(runs),
        "steps_table": _steps_table(steps, series, events) if len(steps) else None,
        "title_of": title,
        "events": _events_table(events),
    }


def _events_table(events: pd.DataFrame) -> Table | None:
    if not len(events):
        return None
    rows = []
    for r in events.to_dict("records"):
        detail = r.get("detail")
        shown = (
            ", ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, Mapping) else ""
        )
        rows.append(
            [
                _when(r.get("t")),
                str(r["kind"]),
                str(_value(r, "scenario") or "-"),
                str(_value(r, "step_id") or "-"),
                str(_value(r, "broker") or "-"),
                shown,
            ]
        )
    return Table("Events", ["time", "kind", "scenario", "step", "broker", "detail"], rows)


def render_html(context: Mapping[str, Any], template: str = "report.html.j2") -> str:
    """Render ``template`` with ``context``."""
    return environment().get_template(template).render(**context)


def report_json(context: Mapping[str, Any]) -> dict[str, Any]:
    """The recommendation and every headline figure of a report's context, machine-readable
    (``bench report --json``): per dimension its verdict and every sub-verdict with both
    brokers' values, bounds, criterion and reason; the warnings by cause."""
    rec: Recommendation = context["recommendation"]

    def figure(v: Any) -> dict[str, Any]:
        return {
            b: {
                "values": f.values,
                "mean": f.mean if f.values else None,
                "bound": f.bound or None,
                "shown": v.shown(b),
                "detail": f.detail,
                "left_out": f.left_out,
                "problems": f.problems,
            }
            for b, f in v.figures.items()
        }

    return {
        "recommendation": {"winner": rec.winner, "text": rec.text, "scores": rec.scores},
        "dimensions": [
            {
                "dimension": d.dimension,
                "outcome": d.outcome,
                "winner": d.winner,
                "provisional": d.provisional,
                "text": d.text,
                "deciding": d.deciding.criterion if d.deciding else None,
                "verdicts": [
                    {
                        "criterion": v.criterion,
                        "direction": v.direction,
                        "unit": v.unit,
                        "outcome": v.outcome,
                        "winner": v.winner,
                        "reason": v.reason,
                        "caveat": v.caveat,
                        "figures": figure(v),
                    }
                    for v in d.verdicts
                ],
            }
            for d in rec.dimensions
        ],
        "warnings": [
            {"level": w.level, "text": w.text, "steps": w.steps} for w in context["warnings"]
        ],
        "runs": [r.run_id for r in context["runs"]],
    }


def render_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    settings: Settings | None = None,
    regressions: Iterable[Any] = (),
    exclude: Iterable[tuple[str, str, str | None, str | None]] = (),
    json_out: str | Path | None = None,
) -> Path:
    """Read ``run_dirs``, render the report and write it to ``out`` (parents created).

    ``exclude`` holds (run id, broker, scenario or None, step-id glob or None) whose steps the
    report leaves out, e.g. steps measured before a fix that a later run repeats; the report's
    warnings name them."""
    runs = [load_run(d) for d in run_dirs]
    wanted = list(exclude)
    unknown = [e for e in wanted if e[0] not in {r.run_id for r in runs}]
    if unknown:
        raise ResultsError(f"--exclude names run {unknown[0][0]}, which is not among RUN_DIRS")
    for run_id, broker, scenario, step_glob in wanted:
        runs = [
            without_steps(r, broker, scenario, step_glob) if r.run_id == run_id else r for r in runs
        ]
    context = build_context(runs, settings, regressions)
    html = render_html(context)
    path = Path(out)
    if json_out is not None:
        Path(json_out).write_text(json.dumps(report_json(context), indent=2) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
