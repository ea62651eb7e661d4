"""Send frequency: the broker-bound maximum, and publish and end-to-end latency at the highest rate
both brokers carried with our client below its limit."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.report.recommend.curves import find_saturation
from bench.report.recommend.steps import (
    _bound_mask,
    _mode_keys,
    _no_broker,
    _offered,
    _repetitions,
    _usable,
)
from bench.report.recommend.verdict import Figure, Settings, Verdict, _rate, _us_ms, decide, title
from bench.results.frames import column, param


def _saturated(df: pd.DataFrame, s: Settings) -> pd.Series:
    """Per step: at or past its curve's saturation point (:func:`find_saturation`, per run and
    send/connection mode), so a step on a cold JVM followed by a higher rate carried is not."""
    out = pd.Series(False, index=df.index)
    modes = pd.Series([str(k) for k in _mode_keys(df)], index=df.index)
    for _, g in df.groupby([df["run_id"], modes], sort=False):
        sat = find_saturation(
            list(_offered(g)), list(column(g, "publish_tps")), None, s.saturation_fraction
        )
        if sat is not None and sat.offered is not None:
            out[g.index] = _offered(g) >= sat.offered
    return out


MODE_ORDER = ("async", "sync")
"""Where two send modes reach the same rate, the first listed is compared."""


def _mode_rank(mode: tuple[Any, Any]) -> tuple[int, int, str]:
    """Orders (send, connection) modes by how directly they load the broker: async before sync,
    a shared connection before one per batch."""
    send, conn = mode
    return (
        MODE_ORDER.index(send) if send in MODE_ORDER else len(MODE_ORDER),
        0 if conn == "shared" else 1,
        str(mode),
    )


def _mode_text(mode: tuple[Any, Any]) -> str:
    return f"send={mode[0]}, connections={mode[1]}"


def _no_common_mode(broker: str, modes: dict[str, set[tuple[Any, Any]]]) -> str:
    """Why ``broker``'s broker-bound maximum has no counterpart: the modes each broker was."""
    said = []
    for b, m in sorted(modes.items(), key=lambda bm: bm[0] != broker):
        listed = " or ".join(_mode_text(k) for k in sorted(m, key=_mode_rank))
        lead = f"{title(b)} saturated with our client below its limit" if b == broker else title(b)
        said.append(f"{lead} only with {listed}" if m else f"{title(b)} in no such step")
    return "; ".join(said) + ": no send mode over shared connections in which both were"


def _send_frequency(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    # ONEWAY is RocketMQ's alone and has no acknowledgement: comparing it would be unfair.
    common_modes = set.intersection(*(set(_mode_keys(df)) for df in fr.values()))
    usable: dict[str, pd.DataFrame] = {}
    left: dict[str, list[str]] = {}
    for broker, df in fr.items():
        mine = df[[m in common_modes for m in _mode_keys(df)]]
        usable[broker], left[broker] = _usable(mine[mine["status"] != "skipped"], True)
    # 1. The broker-bound maximum: the highest achieved rate of a step that saturated the
    # broker while our client did not limit it, over shared connections (a new connection per
    # batch measures connection set-up, not what the broker carries) and in one send mode for
    # both (a sync curve tops out at its senders' concurrency over the round trip).
    shared = {
        b: param(ok, "connection_mode").fillna("shared") == "shared" for b, ok in usable.items()
    }
    sat = {b: ok[_saturated(ok, s) & ~_bound_mask(ok) & shared[b]] for b, ok in usable.items()}
    modes = {b: set(_mode_keys(df)) for b, df in sat.items()}
    both = set.intersection(*modes.values())
    mode = min(both, key=_mode_rank) if both else None
    figs: list[Figure] = []
    for broker, ok in usable.items():
        mine = sat[broker]
        mine = mine[pd.Series([k == mode for k in _mode_keys(mine)], index=mine.index, dtype=bool)]
        vals, details = [], []
        for _, rep in _repetitions(mine):
            tps = column(rep, "publish_tps")
            i = tps.idxmax()
            vals.append(float(tps[i]))
            details.append(_no_broker(str(rep.loc[i, "step_id"]), broker))
        problems = []
        if modes[broker] and not vals:
            problems.append(_no_common_mode(broker, modes))
        elif not vals and len(ok):
            tps = column(ok, "publish_tps")
            i = tps.idxmax()
            problems.append(
                f"no step saturated the broker with our client below its limit (highest "
                f"{tps[i]:,.0f} msg/s at {_no_broker(str(ok.loc[i, 'step_id']), broker)}"
                f"{', client-bound' if _bound_mask(ok)[i] else ', not saturated'})"
            )
        figs.append(
            Figure(
                broker, vals, "; ".join(sorted(set(details))), problems, left_out=left[broker][:5]
            )
        )
    out = [
        decide(
            "broker-bound maximum: highest achieved publish TPS where the broker, not our "
            "client, was the limit (shared connections, one send mode for both)",
            "higher",
            figs[0],
            figs[1],
            s,
            unit="msg/s",
            fmt=_rate,
        )
    ]

    # 2-3. Latency at the highest offered rate both brokers carried without our client bound.
    def carried(ok: pd.DataFrame) -> pd.DataFrame:
        return ok[
            (column(ok, "publish_tps") >= s.saturation_fraction * _offered(ok)) & ~_bound_mask(ok)
        ]

    def key(r: dict[str, Any]) -> tuple[Any, Any, float]:
        return (
            r.get("params.send_mode"),
            r.get("params.connection_mode"),
            float(_offered(pd.DataFrame([r])).iloc[0]),
        )

    keys = [{key(r) for r in carried(ok).to_dict("records")} for ok in usable.values()]
    common = keys[0] & keys[1]
    point = (
        max(
            common,
            key=lambda k: (k[2], -MODE_ORDER.index(k[0]) if k[0] in MODE_ORDER else -9, str(k[1])),
        )
        if common
        else None
    )
    for metric, name in (
        ("publish_latency_us.p99", "publish latency p99"),
        ("e2e_latency_us.p99", "end-to-end latency p99"),
    ):
        pair = []
        for broker, ok in usable.items():
            if point is None:
                pair.append(
                    Figure(
                        broker,
                        [],
                        problems=[
                            "no offered rate both brokers carried with our client below its limit"
                        ],
                    )
                )
                continue
            c = carried(ok)
            g = c[[key(r) == point for r in c.to_dict("records")]]
            vals = [float(v) for v in column(g, metric).dropna()]
            bounds = []
            if metric.startswith("e2e"):
                # Receipts after the window are not in the histogram: when the consumers fell
                # behind, the window's p99 is only a lower bound.
                behind = column(g, "received") < (1 - 0.005) * column(g, "acked") * column(
                    g, "params.subscriptions_per_topic"
                ).fillna(1)
                bounds = [
                    ">=" if x else ""
                    for x, v in zip(behind, column(g, metric), strict=True)
                    if not math.isnan(v)
                ]
            detail = f"at {point[2]:,.0f} msg/s offered, send={point[0]}, connections={point[1]}"
            pair.append(Figure(broker, vals, detail, bounds=bounds))
        out.append(
            decide(
                f"{name} at the highest offered rate both carried without our client bound",
                "lower",
                pair[0],
                pair[1],
                s,
                unit="us",
                fmt=_us_ms,
            )
        )
    return out
