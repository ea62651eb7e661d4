"""bench check: each invariant broken once, one line each; a run that holds them prints none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from bench.results.check import check_cmd, check_run
from bench.results.store import RunWriter, load_run
from tests.unit.test_report_findings import T0, _kill, step


def _series(sid: str, sent: int, phase: str = "measure") -> dict[str, object]:
    return {
        "scenario": "send-frequency",
        "step_id": sid,
        "broker": "rocketmq",
        "t": T0 + 3,
        "elapsed_s": 1.0,
        "sent": sent,
        "acked": sent,
        "send_errors": 0,
        "received": sent,
        "publish_p50_us": None,
        "publish_p99_us": None,
        "e2e_p99_us": None,
        "phase": phase,
    }


def test_each_broken_invariant_is_one_line(tmp_path: Path) -> None:
    w = RunWriter.create(tmp_path, {"synthetic": "test"})
    ok = step(
        "send-frequency",
        "rocketmq",
        "rate=1000",
        sent=1000,
        acked=1000,
        received=1000,
        broker_messages_in=1000,
        publish_tps=100.0,
        gc_pause_ms=0.0,
    )
    bad = step(
        "send-frequency",
        "rocketmq",
        "rate=2000",
        sent=900,
        acked=900,
        received=900,
        broker_messages_in=2000,
        gc_pause_ms=0.0,
    )
    kill = _kill(
        "rocketmq",
        1,
        "cluster",
        killed_at=T0 + 5,
        restarted_at=T0 + 5.1,
        unavailability_s=60.0,
        clients_recovered=True,
    )
    for r in (ok, bad, kill):
        w.write_step(r)
    w.write_series([_series(ok["step_id"], 1000), _series(bad["step_id"], 950)])
    w.finish()
    lines = [p.line() for p in check_run(load_run(w.run_dir))]
    assert not any("rate=1000" in x for x in lines)
    wanted = [
        "counters: client sent 950, broker stored 2,000",
        "series: sent: per-second rows",
        "restart: 0.10 s after the kill",
        "outage: 60.0 s, but the load ran 7.0 s",
        "zeros: gc_pause_ms 0 in all 2 steps",
    ]
    for text in wanted:
        assert sum(text in x for x in lines) == 1, (text, lines)
    res = CliRunner().invoke(check_cmd, [str(w.run_dir)])
    assert res.exit_code == 1 and "broken invariant(s)" in res.output


def _rows(sc: str, sid: str, **counts: int) -> dict[str, object]:
    return {**_series(sid, 0), "scenario": sc, **counts}


def test_the_counter_check_reads_failed_sends_oneway_and_a_stitched_count(tmp_path: Path) -> None:
    """Sent against stored, by what a send means: a failed send may have been stored, ONEWAY has
    no acks, a count stitched over a restart is a lower bound, a
    null count is not checked."""
    w = RunWriter.create(tmp_path, {"synthetic": "test"})
    recs = [
        # 40 of 1,000 sends failed; the broker stored 970: between acked and sent, as it must
        step("subscribe-frequency", "pulsar", "fanout=1", sent=1000, broker_messages_in=970),
        # ONEWAY: 1,000 sent, none failed, 900 stored
        step("send-frequency", "rocketmq", "oneway", send_mode="oneway", broker_messages_in=900),
        # kill -9: 3,000 acknowledged, a count stitched over one restart says 2,900
        _kill("pulsar", 1, "standalone", broker_messages_in=2900, counter_resets=1),
        # the broker was down after the drain: null, not checked
        step("topic-growth", "rocketmq", "topics=100", broker_messages_in=None),
    ]
    for r in recs:
        w.write_step(r)
    w.write_series(
        [
            _rows("subscribe-frequency", recs[0]["step_id"], sent=1000, acked=960, send_errors=40),
            _rows("send-frequency", recs[1]["step_id"], sent=1000, acked=0),
            _rows("kill-9-recovery", recs[2]["step_id"], sent=3050, acked=3000, send_errors=50),
            _rows("topic-growth", recs[3]["step_id"], sent=1000, acked=1000),
        ]
    )
    w.finish()
    found = {p.step_id: p.text for p in check_run(load_run(w.run_dir)) if p.invariant == "counters"}
    # The stitched kill -9 count (a lower bound) is short of the sends, as a bound may be.
    assert set(found) == {recs[1]["step_id"]}, found
    assert "100 ONEWAY sends that did not fail were never stored" in found[recs[1]["step_id"]]


def test_report_json_lists_every_dimension(tmp_path: Path) -> None:
    from bench.report.commands import report_cmd
    from tests.unit.synthetic_runs import Spec, make_run

    run = make_run(tmp_path, Spec(series_s=5, kill_reps=2))
    res = CliRunner().invoke(
        report_cmd, [str(run), "-o", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [d["dimension"] for d in doc["dimensions"]] == [
        "topic_growth",
        "send_frequency",
        "subscribe_frequency",
        "recovery",
    ]
    assert all(d["verdicts"] for d in doc["dimensions"])
    assert all("figures" in v for d in doc["dimensions"] for v in d["verdicts"])


PAUSE = (
    "[2026-12-01T06:42:17.532+0000][0.286s] GC(0) Pause Young (Normal) (G1 Evacuation Pause) "
    "13M->6M(258M) {ms}ms\n"
)


def test_gc_pauses_are_read_from_each_brokers_logs_and_null_without_one(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bench.runner.common import gc_logs
    from bench.runner.measure import StepMeter

    logs = tmp_path / "rocketmq" / "logs"
    logs.mkdir(parents=True)
    first = logs / "rocketmq-broker-gc-100.log"
    first.write_text(PAUSE.format(ms="5.000"))
    ctx: Any = SimpleNamespace(infra=SimpleNamespace(root=tmp_path))
    assert gc_logs(ctx) == [first]  # the JVMs log under <infra>/<broker>/logs
    meter = StepMeter("s", "st", "rocketmq", 0.0)
    meter.start_resources({}, lambda: gc_logs(ctx))
    first.write_text(PAUSE.format(ms="5.000") + PAUSE.format(ms="2.500"))
    # a JVM restarted during the step (kill -9) writes a log of its own: it counts too
    (logs / "rocketmq-broker-gc-200.log").write_text(PAUSE.format(ms="1.000"))
    window = {"start": 0.0, "end": 1.0}
    try:
        assert meter.resource_metrics([], window, [])["gc_pause_ms"] == 3.5
    finally:
        meter.stop_resources()
    none = StepMeter("s", "st", "rocketmq", 0.0)
    none.start_resources({}, [])
    try:
        assert none.resource_metrics([], window, [])["gc_pause_ms"] is None  # not 0
    finally:
        none.stop_resources()
