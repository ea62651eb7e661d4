"""The subscribe-frequency section: fan-out and churn, subscribe latency and delivery."""

from __future__ import annotations

import pandas as pd

from bench.report import charts
from bench.report.charts import Panel
from bench.report.recommend import Settings, title
from bench.report.sections.common import MS, Section, _lines, fmt
from bench.results.frames import column, param


def section(steps: pd.DataFrame, scenario: str, s: Settings) -> Section:
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
