"""Interval stats: recorded in callbacks, shipped as JSON, merged exactly across processes."""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
from typing import Any

import pytest

from bench.metrics import histograms as H
from bench.metrics.intervals import IntervalStats, StatsRecorder, merge
from bench.metrics.ledger import LedgerBook, PayloadHeader

S = 1_000_000_000


def worker_values(index: int) -> list[int]:
    rng = random.Random(index)
    return [rng.randint(1, 5_000_000) for _ in range(20_000)]


def run_worker(index: int, queue: Any) -> None:
    """What a worker process does: record, snapshot, ship JSON (runs in a spawned process)."""
    rec = StatsRecorder(f"w{index}", start_ns=10 * S)
    book = LedgerBook()
    producer = book.producer(f"p{index}", "t")
    consumer = book.consumer("run", "t", "s", f"c{index}")
    for i, v in enumerate(worker_values(index)):
        rec.count("sent")
        rec.record_us("publish", v)
        producer.record_sent(i)
        if i % 100 != 0:  # every hundredth send is never acked
            producer.record_acked(i)
            rec.count("acked")
    for i in range(0, 20_000, 2):  # this worker's consumer got the even seqs of both producers
        for p in ("p0", "p1"):
            consumer.record(PayloadHeader("run", p, i + index, 0))
    rec.error("Timeout", index + 1)
    queue.put(rec.snapshot_and_reset(11 * S, ledger=book.to_dict()).to_json())


def test_two_spawned_workers_merge_exactly() -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=run_worker, args=(i, queue)) for i in range(2)]
    for p in procs:
        p.start()
    try:
        shipped = [IntervalStats.from_json(queue.get(timeout=120)) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert {s.worker_id for s in shipped} == {"w0", "w1"}

    total = merge(shipped)
    assert total.worker_id == "w0,w1"
    assert (total.start_ns, total.end_ns) == (10 * S, 11 * S)
    assert total.counters == {"sent": 40_000, "acked": 39_600}
    assert total.errors == {"Timeout": 3}
    expected = H.new_histogram()
    for i in range(2):
        for v in worker_values(i):
            H.record(expected, v)
    assert total.histograms["publish"] == H.encode(expected)
    assert H.summary(total.histogram("publish")) == H.summary(expected)

    assert total.ledger is not None
    (report,) = LedgerBook.from_dict(total.ledger).reconcile()
    # Consumers c0 (evens) and c1 (odds) together received all 20,000 of each producer.
    assert (report.acked, report.received, report.lost) == (39_600, 40_000, 0)
    assert report.received_not_acked == 400


def test_recorder_snapshots_and_resets() -> None:
    rec = StatsRecorder("w", start_ns=100)
    rec.count("sent", 3)
    rec.count("sent")
    rec.error("ConnectError")
    rec.record_us("e2e", 250)
    rec.record_us("e2e", -3)  # e.g. the wall clock stepped back
    first = rec.snapshot_and_reset(200)
    assert (first.start_ns, first.end_ns) == (100, 200)
    assert first.counters == {"sent": 4, "clamped.e2e": 1}
    assert first.errors == {"ConnectError": 1}
    assert H.summary(first.histogram("e2e"))["count"] == 2
    assert first.ledger is None
    second = rec.snapshot_and_reset(300)
    assert (second.start_ns, second.end_ns) == (200, 300)
    assert (second.counters, second.errors, second.histograms) == ({}, {}, {})
    assert second.histogram("e2e").get_total_count() == 0


def test_recorder_is_exact_under_concurrent_callbacks() -> None:
    rec = StatsRecorder("w", start_ns=0)
    snaps: list[IntervalStats] = []
    stop = threading.Event()

    def callback_thread(k: int) -> None:
        for i in range(5000):
            rec.count("acked")
            rec.record_us("publish", 1 + (i * (k + 1)) % 100_000)

    def ticker() -> None:  # snapshots taken while callbacks run must not lose anything
        t = 1
        while not stop.is_set():
            snaps.append(rec.snapshot_and_reset(t))
            t += 1

    tick = threading.Thread(target=ticker)
    tick.start()
    threads = [threading.Thread(target=callback_thread, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    tick.join(60)
    snaps.append(rec.snapshot_and_reset(10**9))
    total = merge(snaps)
    assert total.counters["acked"] == 20_000
    assert total.histogram("publish").get_total_count() == 20_000


def test_json_round_trip_and_validation() -> None:
    s = IntervalStats(
        "w1", 1, 2, {"sent": 5}, {"Timeout": 1}, {"publish": H.encode(H.new_histogram())}
    )
    assert IntervalStats.from_json(s.to_json()) == s
    with pytest.raises(ValueError):
        IntervalStats.from_json('{"worker_id": "w"}')
    with pytest.raises(ValueError):
        IntervalStats.from_json(s.to_json().replace('"sent":5', '"sent":"5"'))


def test_merge_adds_counters_and_keeps_disjoint_names() -> None:
    a = IntervalStats("a", 5, 6, {"sent": 2}, {}, {"publish": H.encode(H.merge([]))})
    h = H.new_histogram()
    H.record(h, 42)
    b = IntervalStats("b", 4, 7, {"sent": 3, "received": 1}, {"X": 2}, {"e2e": H.encode(h)})
    m = merge([a, b])
    assert (m.start_ns, m.end_ns) == (4, 7)
    assert m.counters == {"sent": 5, "received": 1}
    assert m.errors == {"X": 2}
    assert H.summary(m.histogram("e2e"))["max"] == 42
    assert m.histogram("publish").get_total_count() == 0
    with pytest.raises(ValueError):
        merge([])
