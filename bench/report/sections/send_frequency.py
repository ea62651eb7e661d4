"""The send-frequency section: achieved against offered rate, latency, saturation and its limit."""

from __future__ import annotations

import pandas as pd

from bench.report import charts
from bench.report.charts import Mark, Panel
from bench.report.recommend import Settings, find_saturation, title
from bench.report.sections.common import MS, Section, Table, _limited_by, _lines, fmt
from bench.results.frames import column, param


def section(steps: pd.DataFrame, scenario: str, s: Settings) -> Section:
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
