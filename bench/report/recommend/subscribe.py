"""Subscribe frequency: subscribe latency and time to first message at the highest churn, and the
delivered share at the largest fan-out."""

from __future__ import annotations

import pandas as pd

from bench.report.recommend.steps import _bound_mask, _figure_at_max
from bench.report.recommend.verdict import Settings, Verdict, _us_ms, decide
from bench.results.frames import column, param


def _subscribe_frequency(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    def sweep(name: str) -> dict[str, pd.DataFrame]:
        return {b: df[param(df, "sweep") == name] for b, df in fr.items()}

    fan, churn = sweep("fanout"), sweep("churn")

    def fanout_x(df: pd.DataFrame) -> pd.Series:
        return column(df, "fanout", "params.fanout")

    def churn_x(df: pd.DataFrame) -> pd.Series:
        return column(df, "churn_per_s", "params.churn_per_s")

    out = []
    for frs, x_of, metric, name, direction, fmt in (
        (
            churn,
            churn_x,
            "subscribe_latency_us.p99",
            "subscribe latency p99 at the highest churn",
            "lower",
            _us_ms,
        ),
        (
            churn,
            churn_x,
            "first_message_latency_us.p99",
            "time to first message p99 at the highest churn",
            "lower",
            _us_ms,
        ),
        (
            fan,
            fanout_x,
            "delivered_share",
            "delivered share (consumed / published x fan-out) at the largest fan-out",
            "higher",
            lambda v: f"{100 * v:.1f}%",
        ),
    ):
        if metric == "delivered_share":
            frs = {
                # copy(): the frames are built a column at a time, and assign() on a
                # fragmented frame warns on the user's terminal.
                b: df.copy().assign(
                    delivered_share=column(df, "consume_tps")
                    / (column(df, "publish_tps") * fanout_x(df))
                )
                for b, df in frs.items()
            }
        figs = _figure_at_max(
            frs, x_of, metric, "fan-out" if frs is not churn else "churn/s", publish_side=True
        )
        if metric == "delivered_share":
            for f, df in zip(figs, frs.values(), strict=True):
                at = df[x_of(df) == (x_of(df).max())]
                cb = [str(r) for r in at.loc[_bound_mask(at), "step_id"]]
                if cb:
                    f.problems.append(
                        f"{', '.join(cb)} client-bound: our consumers may be the limit"
                    )
        out.append(decide(name, direction, *figs, s, fmt=fmt))  # type: ignore[arg-type]
    return out
