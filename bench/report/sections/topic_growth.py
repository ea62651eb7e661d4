"""The topic-growth section: TPS, lookup latency and creation rate against the topic count."""

from __future__ import annotations

import pandas as pd

from bench.report import charts
from bench.report.charts import Mark, Panel
from bench.report.recommend import Settings, find_knee, title
from bench.report.sections.common import MS, Section, _lines, _refusals, fmt
from bench.results.frames import column


def section(steps: pd.DataFrame, scenario: str, s: Settings) -> Section:
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
