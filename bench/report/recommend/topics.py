"""Topic growth: topics reached before the knee or the broker's refusal, lookup latency and
creation rate at the largest topic count both reached, at equal settings."""

from __future__ import annotations

import math

import pandas as pd

from bench.report.recommend.curves import find_knee
from bench.report.recommend.steps import _figure_at_max, _usable
from bench.report.recommend.verdict import Figure, Settings, Verdict, _count, _us_ms, decide
from bench.results.frames import column


def _topic_x(df: pd.DataFrame) -> pd.Series:
    """The topics that existed at each step (fewer than its target when creation broke off)."""
    target = column(df, "topic_count").fillna(column(df, "params.topic_count"))
    return column(df, "topics_created").fillna(target)


DEFAULT_BUNDLES = 4.0
"""Pulsar's default ``defaultNumberOfNamespaceBundles``: topic-growth figures compare Pulsar at
this setting when it was measured (never at its best of several: RocketMQ has no such knob)."""


def _equal_settings(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Pulsar's steps at one bundle setting (:data:`DEFAULT_BUNDLES` if measured, else the
    fewest), and the setting's name; other brokers' steps as they are."""
    bundles = column(df, "pulsar_bundles").fillna(column(df, "params.pulsar_bundles"))
    if not bundles.notna().any():
        return df, ""
    values = sorted(set(bundles.dropna()))
    pick = DEFAULT_BUNDLES if DEFAULT_BUNDLES in values else values[0]
    default = " (Pulsar's default)" if pick == DEFAULT_BUNDLES else ""
    return df[bundles == pick], f"{pick:g} bundles{default}"


def _target(df: pd.DataFrame) -> pd.Series:
    return column(df, "topic_count").fillna(column(df, "params.topic_count"))


def _stopped_at(rep: pd.DataFrame) -> float | None:
    """The topic count at which the broker refused further topics, if it did."""
    if "create_stopped" not in rep.columns:
        return None
    stopped = rep[rep["create_stopped"].map(lambda v: isinstance(v, str) and bool(v))]
    return float(_topic_x(stopped).min()) if len(stopped) else None


def _reach_figure(df: pd.DataFrame, broker: str, s: Settings) -> Figure:
    """Topics reached before the knee or the broker's refusal, per complete sweep."""
    df, setting = _equal_settings(df)
    ran = df[df["status"] != "skipped"]
    ok, left = _usable(ran, publish_side=True)
    largest = float(_target(ran).max()) if len(ran) else math.nan
    values: list[float] = []
    bounds: list[str] = []
    details: list[str] = []
    lacking = set()
    for (run_id, group), rep in ran.groupby(["run_id", "group"], sort=True):
        stop = _stopped_at(rep)
        mine = ok[(ok["run_id"] == run_id) & (ok["group"] == group)]
        knee = find_knee(list(_topic_x(mine)), list(column(mine, "publish_tps")), s.knee_drop_pct)
        if "lacks" in rep.columns:
            lacking |= {x for v in rep["lacks"] if isinstance(v, list) for x in v}
        if knee is not None and (stop is None or knee.x < stop):
            values.append(knee.x)
            bounds.append("")
            details.append(f"knee at {knee.x:,.0f} topics")
        elif stop is not None:
            values.append(stop)
            bounds.append("")
            details.append(f"creation refused by the broker at {stop:,.0f} topics")
        elif float(_target(rep).max()) < largest:
            left.append(
                f"{run_id} {group}: the sweep stopped at {_topic_x(rep).max():,.0f} of "
                f"{largest:,.0f} topics (interrupted): not a repetition"
            )
        else:
            reached = float(_topic_x(rep).max())
            values.append(reached)
            bounds.append(">=")
            details.append(f"no knee up to {reached:,.0f} topics, the sweep's end")
    if "create_stopped" in lacking:
        left.append("runs lacking create_stopped: a refusal could not be read from them")
    detail = "; ".join(sorted(set(details))) + (f"; {setting}" if setting else "")
    return Figure(broker, values, detail, bounds=bounds, left_out=left)


def _topic_growth(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    a, b = fr
    out = [
        decide(
            f"topics reached before the knee (TPS down {s.knee_drop_pct:g}%+) or the broker's "
            "refusal",
            "higher",
            _reach_figure(fr[a], a, s),
            _reach_figure(fr[b], b, s),
            s,
            unit="topics",
            fmt=_count,
        )
    ]
    for metric, name, direction, fmt in (
        ("lookup_latency_us.p99", "lookup latency p99 at the largest topic count", "lower", _us_ms),
        (
            "create_rate_per_s",
            "topic-creation rate at the largest topic count",
            "higher",
            lambda v: f"{v:,.0f} topics/s",
        ),
    ):
        figs = _figure_at_max(
            fr, _target, metric, "topics", publish_side=True, settings_of=_equal_settings
        )
        if metric == "create_rate_per_s":
            batches = {
                b: sorted(set(column(df, "create_batch_size").fillna(1))) for b, df in fr.items()
            }
            if len({tuple(v) for v in batches.values()}) > 1:
                for f in figs:
                    f.problems.append(
                        f"created {'/'.join(f'{v:g}' for v in batches[f.broker])} topic(s) per "
                        "request, the other broker otherwise: the rates are not comparable"
                    )
        out.append(decide(name, direction, *figs, s, fmt=fmt))  # type: ignore[arg-type]
    return out
