"""``bench calibrate``'s parsing of the native tools' output and its table (the runs against
real brokers are in tests/integration/test_drivers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.infra.topology import Endpoints
from bench.runner.calibrate import (
    CalibrationRow,
    _check_native_output,
    _format_table,
    parse_pulsar_perf,
    parse_rocketmq_producer,
)

PERF = "\n".join(
    f"2026-11-24T02:36:{30 + i:02d},304 INFO [pulsar-timer-8-1] ProducerStatsRecorderImpl - "
    f"[persistent://public/default/t] [standalone-0-28] --- Publish throughput: {rate} msg/s "
    "--- 58.77 Mbit/s --- Latency: med: 2.000 ms"
    for i, rate in enumerate(["100.0", "1000.5", "2000.5", "3000.5", "5.0"])
)


def test_pulsar_perf_rate_leaves_out_warmup_and_the_last_partial_second() -> None:
    assert parse_pulsar_perf(PERF, skip=1) == pytest.approx(2000.5)
    assert parse_pulsar_perf(PERF, skip=2) == pytest.approx(2500.5)
    # Too few lines for the warm-up: the last one is all there is.
    assert parse_pulsar_perf(PERF, skip=10) == pytest.approx(5.0)
    assert parse_pulsar_perf("no stats here", skip=1) is None


def test_rocketmq_producer_rate_is_its_last_send_tps() -> None:
    out = (
        "Current Time: 1 | Send TPS: 1200 | Max RT(ms): 12 | Average RT(ms): 3.1\n"
        "Current Time: 2 | Send TPS: 9870 | Max RT(ms): 12 | Average RT(ms): 3.1\n"
    )
    assert parse_rocketmq_producer(out) == 9870.0
    assert parse_rocketmq_producer("") is None


def test_a_native_tool_out_of_memory_is_refused_not_measured(tmp_path: Path) -> None:
    log = tmp_path / "perf.log"
    _check_native_output(PERF, log)  # a clean run passes
    with pytest.raises(BenchError, match=r"OutOfMemoryError: Java heap space.*perf\.log"):
        _check_native_output(PERF + "\njava.lang.OutOfMemoryError: Java heap space\n\tat x", log)


def _row(**kw: object) -> CalibrationRow:
    base: dict[str, object] = {
        "broker": "pulsar",
        "path": "direct",
        "send_mode": "async",
        "native_rate": 39602.44,
        "bench_rate": 11220.06,
        "ratio": 11220.06 / 39602.44,
        "message_size": 1024,
        "workers": 2,
        "seconds": 20.0,
        "native_tool": "pulsar-perf",
        "notes": "batching off in both",
        "cpu_us_per_message": {
            "native_client": 11.04,
            "native_broker": 20.46,
            "bench_client": 108.26,
            "bench_broker": None,
        },
    }
    base.update(kw)
    return CalibrationRow(**base)  # type: ignore[arg-type]


def test_json_row_rounds_rates_ratio_and_cpu() -> None:
    d = _row().to_json()
    assert d["native_rate"] == 39602.4 and d["bench_rate"] == 11220.1
    assert d["ratio"] == 0.283
    assert d["cpu_us_per_message"] == {
        "native_client": 11.0,
        "native_broker": 20.5,
        "bench_client": 108.3,
        "bench_broker": None,
    }


def test_table_flags_a_low_ratio_and_shows_cpu_per_message() -> None:
    text = _format_table([_row(), _row(bench_rate=39000.0, ratio=0.985, cpu_us_per_message={})])
    low, high = text.splitlines()[1:3]
    assert "0.28" in low and "(below 0.9)" in low
    assert "11 / 108" in low and "20 / -" in low
    assert "0.98" in high and "below" not in high and "- / -" in high


def test_consume_ratio_is_rounded_and_shown_beside_the_consume_rate() -> None:
    row = _row(consume_rate=3902.4, consume_acked_rate=4000.26, consume_ratio=3902.4 / 4000.26)
    d = row.to_json()
    assert d["consume_acked_rate"] == 4000.3 and d["consume_ratio"] == 0.976
    line = _format_table([row]).splitlines()[1]
    assert "3902" in line and "0.98" in line
    assert _row().to_json()["consume_ratio"] is None  # not measured: null, never 0


def test_consumers_get_a_topic_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers shard topics in a run; two workers' consumers of one RocketMQ group on one topic
    would each take every queue and receive every message twice."""
    import contextlib

    import bench.runner.calibrate.rates as cal

    seen: list[tuple[str, ...]] = []

    class Pool:
        def __init__(self, engine: str, peak: bool = False) -> None:
            self.failures: dict[str, str] = {}

        def __enter__(self) -> Pool:
            return self

        def __exit__(self, *exc: object) -> None: ...
        def start(self, specs: list[cal.LoadSpec]) -> None:
            seen.extend(s.topics for s in specs)

        def pids(self) -> dict[str, int]:
            return {}

        def producers_done(self) -> bool:
            calls.append(1)
            return len(calls) > 1  # one pass of the measuring loop

        def poll(self, timeout: float) -> list[object]:
            return []

        def stop(self) -> None: ...

    calls: list[int] = []
    counted: list[list[str]] = []

    class Admin:
        def broker_stats(self, topics: list[str]) -> dict[str, int]:
            counted.append(list(topics))
            return {"messages_in": 0}

    monkeypatch.setattr(cal, "WorkerPool", Pool)
    monkeypatch.setattr(cal, "open_driver", lambda *a, **k: contextlib.nullcontext(Admin()))
    monkeypatch.setattr(cal.time, "sleep", lambda s: None)
    common = {
        "path": "direct",
        "send_mode": "oneway",
        "topic": "t",
        "size": 1024,
        "seconds": 1.0,
        "warmup": 0.0,
        "workers": 2,
        "max_in_flight": 10,
    }
    for subscriptions, want in ((1, [("t-w0",), ("t-w1",)]), (0, [("t",), ("t",)])):
        seen.clear()
        calls.clear()
        counted.clear()
        with pytest.raises(BenchError, match="measured nothing"):
            cal.bench_rate(
                "rocketmq",
                Endpoints(broker="rocketmq", topology="standalone", namesrv=("127.0.0.1:9",)),
                subscriptions=subscriptions,
                **common,  # type: ignore[arg-type]
            )
        assert seen == want
        # ONEWAY's rate is the broker's count, over the topics the workers used.
        assert counted and all(c == sorted({t for ts in want for t in ts}) for c in counted)
