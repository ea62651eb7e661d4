"""What the terminal says when a step ends, and the table at the end of a run.

One line per step with the figures that matter for its kind (a kill -9 step's outage and loss,
not its publish rate), and one row per step at the end. A value that was not measured shows as
``-``; a bound shows as a bound (``>= 300 s``, ``<= 207 lost``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

_HEADER = ("status", "broker", "scenario", "step", "figures")
_STATUS_STYLE = {"ok": "green", "skipped": "dim"}


def _n(v: Any, fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def _p99_ms(hist: Any) -> str:
    p99 = hist.get("p99") if isinstance(hist, Mapping) else None
    return "-" if p99 is None else f"{p99 / 1000:,.1f} ms"


def _loss(record: Mapping[str, Any]) -> str:
    loss = record.get("loss")
    if not loss:
        return ""
    bound = (record.get("metrics") or {}).get("drain_complete") is False
    lost = f"<= {loss['lost']:,}" if bound and loss["lost"] else f"{loss['lost']:,}"
    return f"lost {lost}, duplicated {loss['duplicated']:,}"


def _figures(record: Mapping[str, Any]) -> str:
    m = record.get("metrics") or {}
    kind = record.get("kind")
    if kind == "kill-9-recovery":
        outage = m.get("unavailability_s")
        at_least = m.get("unavailability_at_least_s")
        shown = f">= {at_least:.1f} s" if at_least is not None else f"{_n(outage, '.1f')} s"
        flag = m.get("clients_recovered")
        recovered = "-" if flag is None else ("yes" if flag else "no")
        return f"unavailable {shown}, {_loss(record)}, clients recovered: {recovered}"
    if kind == "topic-growth":
        return (
            f"{_n(m.get('topics_created'))} of {_n(m.get('topic_count'))} topics, "
            f"created {_n(m.get('create_rate_per_s'))}/s, lookup p99 "
            f"{_p99_ms(m.get('lookup_latency_us'))}, {_n(m.get('publish_tps'))} msg/s"
        )
    if kind == "subscribe-frequency":
        return (
            f"consumed {_n(m.get('consume_tps'))} msg/s, subscribe p99 "
            f"{_p99_ms(m.get('subscribe_latency_us'))}, e2e p99 "
            f"{_p99_ms(m.get('e2e_latency_us'))}"
        )
    return (
        f"{_n(m.get('publish_tps'))} of {_n(m.get('offered_rate_per_s'))} msg/s offered, "
        f"publish p99 {_p99_ms(m.get('publish_intended_latency_us'))} (from intended), "
        f"e2e p99 {_p99_ms(m.get('e2e_latency_us'))}"
    )


def step_line(record: Mapping[str, Any]) -> str:
    """The line that ends a step on the terminal: status, its kind's figures, any error."""
    status = str(record.get("status"))
    line = status
    if status != "skipped" and record.get("metrics"):
        line += ": " + _figures(record).rstrip(", ")
        if (record.get("metrics") or {}).get("client_bound"):
            line += " [client-bound]"
    if record.get("error"):
        line += f" ({str(record['error']).splitlines()[0][:160]})"
    return line


def run_table(records: Sequence[Mapping[str, Any]], *, console: Console | None = None) -> str:
    """The summary at the end of a run: one row per step.

    A rich table (with its escape codes) when ``console`` (default: one on stdout, where the
    CLI prints it) is a terminal; plain aligned text otherwise, so logs and pipes stay plain.
    """
    if not records:
        return "no step finished"
    rows = [_row(r) for r in records]
    if console is None:
        tty = sys.stdout.isatty()
        console = Console(force_terminal=None if tty else False)
    if not console.is_terminal:
        return _plain([_HEADER, *rows])
    table = Table(*_HEADER, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for status, *rest in rows:  # Text cells: a "[...]" in a name is not markup
        style = _STATUS_STYLE.get(status, "bold red")
        table.add_row(Text(status, style=style), *(Text(cell) for cell in rest))
    with console.capture() as out:
        console.print(table)
    return out.get().rstrip("\n")


def _row(r: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    figures = _figures(r) if r.get("status") != "skipped" and r.get("metrics") else ""
    return (
        str(r.get("status")),
        str(r.get("broker")),
        str(r.get("scenario")),
        str(r.get("step_id"))[:48],
        figures.rstrip(", "),
    )


def _plain(rows: Sequence[tuple[str, str, str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )
