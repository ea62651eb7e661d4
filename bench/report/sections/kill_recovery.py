"""The kill -9 recovery section: TPS around each kill, outages, loss and recovery per step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from bench.report import charts
from bench.report.charts import Line, Mark, Panel
from bench.report.recommend import title
from bench.report.sections.common import Section, Table, _event_time, _value, fmt
from bench.results import clean
from bench.results.frames import column, param


def section(
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
