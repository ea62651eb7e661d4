"""Recovery after kill -9: loss, unavailability and clients' self-recovery, standalone and cluster,
and each path, separately."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.report.recommend.steps import _usable
from bench.report.recommend.verdict import Figure, Settings, Verdict, _count, _secs, decide
from bench.results import frames
from bench.results.frames import column, param


def _recovery(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    # Standalone and cluster, and each path, are separate figures: the only broker dying and one
    # of two dying are different events. Restart policies are pooled only for the counts
    # (loss, self-recovery); outages are compared per policy.
    def keys(df: pd.DataFrame, with_policy: bool) -> list[tuple[Any, ...]]:
        cols = [df["topology"], param(df, "path")] + (
            [param(df, "restart_policy")] if with_policy else []
        )
        return list(zip(*cols, strict=True))

    def label(k: tuple[Any, ...]) -> str:
        return "/".join(str(x) for x in k)

    def not_recovered(df: pd.DataFrame) -> pd.Series:
        v = param(df, "clients_recovered")
        return v.map(lambda r: 1.0 if r is False else (0.0 if r is True else math.nan))

    out: list[Verdict] = []
    for with_policy in (False, True):
        common = set.intersection(*(set(keys(df, with_policy)) for df in fr.values()))
        for k in sorted(common, key=str):
            sel = {b: df[[x == k for x in keys(df, with_policy)]] for b, df in fr.items()}
            if not with_policy:
                lost, nr = [], []
                for b, df in sel.items():
                    ran, left = _usable(df, publish_side=True)
                    undrained = frames.drain_unfinished(ran)
                    vals = [float(v) for v in column(ran, "loss.lost").fillna(0)]
                    bounds = ["<=" if u else "" for u in undrained]
                    total = sum(vals)
                    n_b = int(undrained.sum())
                    detail = (
                        f"lost {'≤ ' if n_b else ''}{total:,.0f} over {len(vals)} step(s) at "
                        f"{label(k)}"
                        + (f" ({n_b} drain(s) unfinished: upper bounds)" if n_b else "")
                    )
                    lost.append(Figure(b, vals, detail, bounds=bounds, left_out=left[:5]))
                    col = not_recovered(ran).dropna()
                    nr.append(
                        Figure(
                            b,
                            [float(v) for v in col],
                            f"clients needed a restart in {int(col.sum())} of {len(col)} step(s) "
                            f"at {label(k)}",
                            left_out=left[:5],
                        )
                    )
                out.append(
                    decide(
                        f"acknowledged messages lost ({label(k)})",
                        "lower",
                        lost[0],
                        lost[1],
                        s,
                        fmt=_count,
                        zero_is_decisive=True,
                    )
                )
                out.append(
                    decide(
                        f"steps whose clients did not recover by themselves ({label(k)})",
                        "lower",
                        nr[0],
                        nr[1],
                        s,
                        fmt=lambda v: f"{100 * v:.0f}%",
                        zero_is_decisive=True,
                    )
                )
                continue
            outage = []
            for b, df in sel.items():
                ran, left = _usable(df, publish_side=True)
                exact, least = (
                    column(ran, "unavailability_s"),
                    column(ran, "unavailability_at_least_s"),
                )
                vals = [
                    float(e if not math.isnan(e) else m)
                    for e, m in zip(exact, least, strict=True)
                    if not (math.isnan(e) and math.isnan(m))
                ]
                bounds = [
                    ("" if not math.isnan(e) else ">=")
                    for e, m in zip(exact, least, strict=True)
                    if not (math.isnan(e) and math.isnan(m))
                ]
                outage.append(
                    Figure(
                        b,
                        vals,
                        f"kill to first ack at {label(k)}",
                        bounds=bounds,
                        left_out=left[:5],
                    )
                )
            out.append(
                decide(
                    f"unavailability, kill to first ack ({label(k)})",
                    "lower",
                    outage[0],
                    outage[1],
                    s,
                    unit="s",
                    fmt=_secs,
                )
            )
    return out
