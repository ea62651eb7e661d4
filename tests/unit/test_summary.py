"""The line that ends a step and the run's summary table: each kind's own figures, bounds as
bounds, nothing unmeasured shown as 0."""

from __future__ import annotations

import io
import re
from typing import Any

from rich.console import Console

from bench.runner.summary import run_table, step_line


def _rec(kind: str, metrics: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "status": "ok",
        "broker": "pulsar",
        "scenario": kind,
        "step_id": "s1",
        "metrics": metrics,
        "loss": None,
        "error": None,
        **kw,
    }


def test_a_kill_step_ends_with_its_outage_loss_and_recovery() -> None:
    rec = _rec(
        "kill-9-recovery",
        {"unavailability_s": 12.34, "clients_recovered": True, "publish_tps": 200.0},
        loss={"lost": 0, "duplicated": 41},
    )
    line = step_line(rec)
    assert line == "ok: unavailable 12.3 s, lost 0, duplicated 41, clients recovered: yes"


def test_bounds_are_shown_as_bounds() -> None:
    rec = _rec(
        "kill-9-recovery",
        {"unavailability_at_least_s": 300.0, "clients_recovered": False, "drain_complete": False},
        status="errors",
        loss={"lost": 207, "duplicated": 0},
        error="the drain did not finish within 120 s: ... upper bound",
    )
    line = step_line(rec)
    assert "unavailable >= 300.0 s" in line and "lost <= 207" in line
    assert "clients recovered: no" in line and line.startswith("errors: ")


def test_topic_growth_and_send_lines_name_their_figures() -> None:
    tg = step_line(
        _rec(
            "topic-growth",
            {
                "topics_created": 1000,
                "topic_count": 1000,
                "create_rate_per_s": 210.4,
                "lookup_latency_us": {"p99": 3400},
                "publish_tps": 199.8,
            },
        )
    )
    assert tg == "ok: 1,000 of 1,000 topics, created 210/s, lookup p99 3.4 ms, 200 msg/s"
    sf = step_line(
        _rec(
            "send-frequency",
            {"publish_tps": 950.0, "offered_rate_per_s": 1000.0, "client_bound": True},
        )
    )
    assert sf.startswith("ok: 950 of 1,000 msg/s offered, publish p99 -")
    assert sf.endswith("[client-bound]")


def test_the_run_table_has_a_row_per_step() -> None:
    table = run_table(
        [
            _rec("subscribe-frequency", {"consume_tps": 800.0}),
            _rec("send-frequency", {}, status="skipped", error="saturated"),
        ]
    )
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].startswith("status")
    assert "consumed 800 msg/s" in lines[1]


def test_the_run_table_is_plain_off_a_terminal_and_a_rich_table_on_one() -> None:
    records = [
        _rec("kill-9-recovery", {"unavailability_s": 4.0}, loss={"lost": 0, "duplicated": 0}),
        _rec("send-frequency", {}, status="failed", step_id="[s2]", error="broker down"),
    ]
    plain = run_table(records, console=Console(file=io.StringIO(), force_terminal=False))
    assert "\x1b" not in plain and plain == run_table(records)  # pytest's stdout: no terminal
    assert plain.splitlines()[2].split() == ["failed", "pulsar", "send-frequency", "[s2]"]

    rich = run_table(records, console=Console(file=io.StringIO(), force_terminal=True, width=160))
    assert "\x1b[" in rich  # styled
    lines = re.sub(r"\x1b\[[0-9;]*m", "", rich).splitlines()
    assert lines[0].split() == ["status", "broker", "scenario", "step", "figures"]
    assert set(lines[1]) == {"─"}  # the rule under the header
    assert "unavailable 4.0 s, lost 0, duplicated 0" in lines[2]
    assert lines[3].split() == ["failed", "pulsar", "send-frequency", "[s2]"]  # not markup
