"""Worker processes and the pool, against an in-process fake broker (no real broker here).

``FakeDriver`` exists only in this test module: it is registered for the duration of a test and
reaches the spawned workers through :func:`bench.drivers.base.registrations`. Each worker
process holds its own fake broker, which acknowledges every send and delivers it to the
consumers of its topic in that process, except that it can be told to lose or duplicate chosen
sequence numbers: that is what makes the ledger's exactness testable.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psutil
import pytest

from bench.drivers.base import (
    Consumer,
    Driver,
    DriverClient,
    ErrorKind,
    LookupMethod,
    OnMessage,
    Producer,
    SendCallback,
    TopicResult,
    register_driver,
    unregister_driver,
)
from bench.engines.pool import WorkerFailed, WorkerPool
from bench.engines.spec import (
    H_E2E,
    H_PUBLISH,
    H_PUBLISH_INTENDED,
    H_SUBSCRIBE,
    LoadSpec,
    is_setup,
    is_warmup,
    split_topics,
)
from bench.errors import DriverError
from bench.infra.topology import Endpoints
from bench.metrics.intervals import ACKED, RECEIVED, SENT, IntervalStats, merge
from bench.metrics.ledger import decode_payload
from bench.runner.load import drain_note

FAKE = "fake-test-broker"
ENDPOINTS = LoadSpec.endpoints_text(Endpoints(broker="pulsar", topology="standalone"))


class FakeError(DriverError):
    """A send the fake broker refused."""


class _FakeBroker:
    """One process's fake broker: a delivery thread that acks and delivers in order."""

    def __init__(self, drop_every: int, dup_every: int, fail_every: int) -> None:
        self.drop_every = drop_every
        self.dup_every = dup_every
        self.fail_every = fail_every
        self.handlers: dict[str, dict[int, OnMessage]] = {}
        self.stored: dict[str, int] = {}
        self.lock = threading.Lock()
        self.inbox: queue.SimpleQueue[tuple[str, bytes, SendCallback | None]] = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _hit(every: int, seq: int) -> bool:
        return every > 0 and (seq + 1) % every == 0

    def handle(self, topic: str, payload: bytes, callback: SendCallback | None) -> None:
        seq = decode_payload(payload).seq
        if self._hit(self.fail_every, seq):
            if callback is not None:
                callback(FakeError(f"refused seq {seq}"))
            return
        with self.lock:
            self.stored[topic] = self.stored.get(topic, 0) + 1
            handlers = list(self.handlers.get(topic, {}).values())
        if callback is not None:
            callback(None)
        if self._hit(self.drop_every, seq):
            return  # acknowledged, never delivered: a loss the ledger must count exactly
        copies = 2 if self._hit(self.dup_every, seq) else 1
        for handler in handlers:
            for _ in range(copies):
                handler(payload, time.time_ns())

    def _run(self) -> None:
        while True:
            topic, payload, callback = self.inbox.get()
            self.handle(topic, payload, callback)


_BROKERS: dict[tuple[int, int, int], _FakeBroker] = {}


class FakeClient(DriverClient):
    def close(self) -> None:
        pass


class FakeProducer(Producer):
    def __init__(self, broker: _FakeBroker, topic: str) -> None:
        self.topic = topic
        self._broker = broker

    def send(self, payload: bytes) -> None:
        errors: list[BaseException | None] = []
        self._broker.handle(self.topic, payload, errors.append)
        if errors and errors[0] is not None:
            raise errors[0]

    def send_async(self, payload: bytes, callback: SendCallback) -> None:
        self._broker.inbox.put((self.topic, payload, callback))

    def send_oneway(self, payload: bytes) -> None:
        self._broker.inbox.put((self.topic, payload, None))

    def close(self) -> None:
        pass


class FakeConsumer(Consumer):
    def __init__(self, broker: _FakeBroker, topic: str, subscription: str, key: int) -> None:
        self.topic = topic
        self.subscription = subscription
        self._broker = broker
        self._key = key

    def close(self) -> None:
        with self._broker.lock:
            self._broker.handlers.get(self.topic, {}).pop(self._key, None)

    def unsubscribe(self) -> None:
        self.close()


class FakeDriver(Driver):
    """A broker in the worker's own process (test only; never registered by the suite)."""

    name = FAKE
    send_modes = frozenset({"sync", "async", "oneway"})
    paths = ("direct",)

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        path: str = "direct",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(endpoints, path=path, settings=settings)
        key = (
            int(self.settings.get("drop_every", 0)),
            int(self.settings.get("dup_every", 0)),
            int(self.settings.get("fail_every", 0)),
        )
        self.broker = _BROKERS.get(key) or _BROKERS.setdefault(key, _FakeBroker(*key))
        self._next_key = 0

    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        for name in names:
            yield TopicResult(name, 1)

    def lookup(self, topic: str, timeout_s: float, method: LookupMethod = "admin") -> int:
        return 1

    def broker_stats(self, topics: Sequence[str]) -> dict[str, int]:
        with self.broker.lock:
            return {"messages_in": sum(self.broker.stored.get(t, 0) for t in topics)}

    def new_client(self) -> FakeClient:
        return FakeClient()

    def producer(self, topic: str, send_mode: str, client: DriverClient) -> FakeProducer:
        self.check_send_mode(send_mode)
        return FakeProducer(self.broker, topic)

    def consumer(
        self, topic: str, subscription: str, on_message: OnMessage, client: DriverClient
    ) -> FakeConsumer:
        with self.broker.lock:
            self._next_key += 1
            self.broker.handlers.setdefault(topic, {})[self._next_key] = on_message
        return FakeConsumer(self.broker, topic, subscription, self._next_key)

    def classify(self, exc: BaseException) -> ErrorKind:
        return "broker_error" if isinstance(exc, FakeError) else "other"

    def close(self) -> None:
        pass


@pytest.fixture
def fake_driver() -> Iterator[str]:
    register_driver(FAKE, f"{__name__}:FakeDriver")
    try:
        yield FAKE
    finally:
        unregister_driver(FAKE)


def _spec(worker_id: str, topics: Sequence[str], **kw: Any) -> LoadSpec:
    base: dict[str, Any] = {
        "worker_id": worker_id,
        "broker": FAKE,
        "endpoints": ENDPOINTS,
        "run_id": "run-test",
        "topics": tuple(topics),
        "deadline_s": 60.0,
        "setup_timeout_s": 60.0,
    }
    base.update(kw)
    return LoadSpec(**base)


def _collect(pool: WorkerPool, seconds: float) -> list[IntervalStats]:
    out: list[IntervalStats] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out += pool.poll(0.5)
    return out


def _until_producers_done(pool: WorkerPool, timeout_s: float) -> list[IntervalStats]:
    out: list[IntervalStats] = []
    deadline = time.monotonic() + timeout_s
    while not pool.producers_done():
        assert time.monotonic() < deadline, "producers did not finish"
        out += pool.poll(0.2)
    return out


def test_stats_arrive_once_a_second_from_two_processes_and_merge(fake_driver: str) -> None:
    topics = [f"t{i}" for i in range(4)]
    specs = [
        _spec(f"w{i}", shard, rate_per_s=200.0, duration_s=3.5, warmup_s=0.0)
        for i, shard in enumerate(split_topics(topics, 2))
    ]
    with WorkerPool() as pool:
        pool.start(specs)
        stats = _collect(pool, 4.2)
        assert pool.drain(10.0), "a clean fake run must drain completely"
        pool.stop()
        stats += pool.poll(0)
        pids = set(pool.pids())
    assert pids == set(), "no worker may outlive stop()"
    by_worker: dict[str, list[IntervalStats]] = {}
    for s in stats:
        by_worker.setdefault(s.worker_id, []).append(s)
    assert set(by_worker) == {"w0", "w1"}
    for wid, items in by_worker.items():
        items.sort(key=lambda s: s.start_ns)
        assert is_setup(items[0]) and not any(is_setup(s) for s in items[1:])
        full = items[1:4]
        assert len(full) == 3, f"{wid}: expected 3+ intervals, got {len(items)}"
        for s in full:
            span = (s.end_ns - s.start_ns) / 1e9
            assert 0.8 <= span <= 1.4, f"{wid}: interval of {span:.2f} s, not about one second"
        # Intervals tile time: each starts where the previous one ended.
        for a, b in itertools.pairwise(items):
            assert b.start_ns == a.end_ns
    merged = merge(stats)
    sent = sum(s.counters.get(SENT, 0) for s in stats)
    assert merged.counters[SENT] == sent
    # 200/s for 3.5 s per worker: 700 each, all acknowledged and received once.
    assert merged.counters[SENT] == 1400
    assert merged.counters[ACKED] == 1400
    assert merged.counters[RECEIVED] == 1400
    assert merged.histogram(H_PUBLISH).get_total_count() == 1400
    assert merged.histogram(H_PUBLISH_INTENDED).get_total_count() == 1400
    assert merged.histogram(H_E2E).get_total_count() == 1400
    assert merged.histogram(H_SUBSCRIBE).get_total_count() == 4
    assert not merged.errors


def test_ledger_is_exact_with_injected_loss_duplicates_and_failures(fake_driver: str) -> None:
    settings = {"drop_every": 10, "dup_every": 7, "fail_every": 13}
    topics = ["a", "b", "c"]
    per_worker = 300
    specs = [
        _spec(
            f"x{i}",
            shard,
            rate_per_s=None,
            max_in_flight=50,
            max_messages=per_worker,
            subscriptions_per_topic=2,
            driver_settings=settings,
        )
        for i, shard in enumerate(split_topics(topics, 2))
    ]
    with WorkerPool() as pool:
        pool.start(specs)
        stats = _until_producers_done(pool, 30.0)
        drained = pool.drain(3.0)
        book = pool.ledgers()
        stats += pool.poll(0)
        pool.stop()
        stats += pool.poll(0)
    assert not drained, "messages were dropped on purpose: the drain cannot complete"
    reports = book.reconcile()
    # The two workers hold different topics, so each has subscription names of its own: a
    # RocketMQ consumer group's members must all subscribe the same topics.
    assert {(r.topic, r.subscription) for r in reports} == {
        (t, f"sub-s{k}-{i}")
        for k, shard in enumerate(split_topics(topics, 2))
        for t in shard
        for i in (0, 1)
    }
    expected_lost = expected_dup = expected_acked = 0
    for producer in book.producers.values():
        for a, b in producer.sent:
            for seq in range(a, b + 1):
                failed = (seq + 1) % 13 == 0
                assert (seq in producer.failed) == failed
                assert (seq in producer.acked) == (not failed)
                if failed:
                    continue
                expected_acked += 1
                if (seq + 1) % 10 == 0:
                    expected_lost += 1
                elif (seq + 1) % 7 == 0:
                    expected_dup += 1
    assert sum(len(p.sent) for p in book.producers.values()) == 2 * per_worker
    subs = 2
    assert sum(r.acked for r in reports) == subs * expected_acked
    assert sum(r.lost for r in reports) == subs * expected_lost
    assert sum(r.duplicated for r in reports) == subs * expected_dup
    assert sum(r.received_not_acked for r in reports) == 0
    assert sum(r.reordered for r in reports) == 0
    merged = merge(stats)
    failures = 2 * per_worker - expected_acked
    assert merged.counters.get("send_errors", 0) == failures
    assert merged.errors == {"send.broker_error": failures}


def test_the_intervals_before_drained_add_up_to_the_ledger(fake_driver: str) -> None:
    """Drain stops producers mid-interval: the sends since the last once-a-second interval are
    shipped before ``drained``, so what the runner has polled by then matches the ledger (a
    run's series are checked against the broker's counters)."""
    spec = _spec(
        "w0", ["a", "b"], rate_per_s=500.0, duration_s=30.0, warmup_s=0.0, stats_interval_s=30.0
    )
    with WorkerPool() as pool:
        pool.start([spec])
        stats = _collect(pool, 1.5)  # inside the first interval: none shipped yet
        pool.stop_producers()
        assert pool.drain(10.0), "a clean fake run must drain completely"
        stats += pool.poll(0)
        book = pool.ledgers()
        pool.stop()
    sent = sum(len(p.sent) for p in book.producers.values())
    merged = merge(stats)
    assert sent > 500, "the load did not run"
    assert merged.counters[SENT] == sent
    assert merged.counters[ACKED] == sent
    assert merged.counters[RECEIVED] == sent


def test_a_stalled_drain_ends_early_and_says_why(fake_driver: str) -> None:
    # Every 10th message is dropped: the drain can never finish. With a stall limit it ends
    # once nothing has arrived for that long, well before its cap; without one, at the cap.
    spec = _spec(
        "s0",
        ["a"],
        rate_per_s=None,
        max_in_flight=50,
        max_messages=200,
        driver_settings={"drop_every": 10},
    )
    outcomes = {}
    for stall in (1.0, None):
        with WorkerPool() as pool:
            pool.start([spec])
            _until_producers_done(pool, 30.0)
            outcomes[stall] = (pool.drain(timeout_s=4.0, stall_s=stall), pool.drain_reports)
            pool.stop()
    drained, reports = outcomes[1.0]
    assert not drained and reports[0]["seconds"] < 4.0, reports
    assert [(r["ok"], r["undelivered"], r["stalled"]) for r in reports] == [(False, 20, True)]
    assert drain_note(reports, 4.0, 1.0).endswith("when no message had arrived for 1 s")
    drained, reports = outcomes[None]
    assert not drained and reports[0]["seconds"] >= 4.0, reports
    assert [(r["undelivered"], r["stalled"]) for r in reports] == [(20, False)]
    assert drain_note(reports, 4.0, None) == "the drain did not finish within 4 s"


def test_closed_loop_sync_and_oneway_modes(fake_driver: str) -> None:
    specs = [
        _spec("s0", ["p"], send_mode="sync", max_messages=100, sender_threads=2),
        _spec("o0", ["q"], send_mode="oneway", max_messages=100),
    ]
    with WorkerPool() as pool:
        pool.start(specs)
        _until_producers_done(pool, 30.0)
        assert pool.drain(10.0)
        book = pool.ledgers()
        pool.stop()
    sync = book.producers["s0-p0"]
    oneway = book.producers["o0-p0"]
    assert len(sync.sent) == len(sync.acked) == 100
    # ONEWAY sends are never acknowledged; the drain waited for them to be received instead.
    assert len(oneway.sent) == 100 and len(oneway.acked) == 0
    received = {r.topic: r.received for r in book.reconcile() if r.topic == "p"}
    assert received == {"p": 100}
    q_ledger = next(c for c in book.consumers.values() if c.topic == "q")
    assert len(q_ledger.by_producer["o0-p0"].received) == 100


def test_set_rate_changes_the_offered_rate_and_sequences_go_on(fake_driver: str) -> None:
    spec = _spec("r0", ["t"], rate_per_s=50.0)
    with WorkerPool() as pool:
        pool.start([spec])
        slow = _collect(pool, 2.0)
        pool.set_rate(400.0)
        _collect(pool, 0.5)  # the change takes effect
        fast = _collect(pool, 2.0)
        assert pool.drain(10.0)
        book = pool.ledgers()
        pool.stop()
    rate = [
        sum(i.counters.get(SENT, 0) for i in part)
        / sum((i.end_ns - i.start_ns) / 1e9 for i in part)
        for part in ([i for i in slow if not is_setup(i)], fast)
    ]
    assert 35 <= rate[0] <= 65, rate
    assert 300 <= rate[1] <= 480, rate
    prod = book.producers["r0-p0"]
    # One producer, one sequence: the new schedule goes on where the old one stopped.
    assert prod.sent.num_ranges == 1 and len(prod.acked) == len(prod.sent)


def test_churn_records_subscribe_and_first_message(fake_driver: str) -> None:
    spec = _spec("c0", ["t"], rate_per_s=500.0, duration_s=4.0)
    with WorkerPool() as pool:
        pool.start([spec])
        pool.churn(5.0, live=2)
        stats = _collect(pool, 3.0)
        pool.churn(0.0)
        pool.stop()
        stats += pool.poll(0)
    merged = merge(stats)
    # One initial subscription plus about 5/s of churn for ~3 s.
    assert merged.counters["subscribed"] >= 8
    assert merged.counters.get("unsubscribed", 0) >= 5
    assert merged.histogram("first_message").get_total_count() >= 5
    assert merged.counters.get("churn.received", 0) > 0


def test_warmup_intervals_are_marked(fake_driver: str) -> None:
    spec = _spec("m0", ["t"], rate_per_s=100.0, warmup_s=1.5, duration_s=1.5)
    with WorkerPool() as pool:
        pool.start([spec])
        stats = _collect(pool, 3.5)
        pool.stop()
        stats += pool.poll(0)
    stats.sort(key=lambda s: s.start_ns)
    warm = [s for s in stats if is_warmup(s) and not is_setup(s)]
    assert warm and not is_warmup(stats[-1])
    # The warm-up is cut exactly at its end: marked intervals cover 1.5 s in total.
    covered = (warm[-1].end_ns - warm[0].start_ns) / 1e9
    assert 1.4 <= covered <= 1.8


def test_a_failing_setup_is_reported_and_stops_the_pool(fake_driver: str) -> None:
    good = _spec("good", ["t"], rate_per_s=10.0)
    bad = _spec("bad", ["u"], path="proxy")  # FakeDriver has no proxy path
    pool = WorkerPool()
    with pytest.raises(WorkerFailed, match=r"bad: .*path 'proxy'"):
        pool.start([good, bad])
    assert pool.pids() == {}, "start() must stop every worker when one fails"


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = {path!r}
    from bench.drivers.base import register_driver
    from bench.engines.pool import WorkerPool
    from bench.engines.spec import LoadSpec
    register_driver({name!r}, {target!r})
    spec = LoadSpec(worker_id="orphan", broker={name!r}, endpoints={endpoints!r},
                    run_id="r", topics=("t",), rate_per_s=50.0, deadline_s=120.0)
    pool = WorkerPool()
    pool.start([spec])
    print(pool.pids()["orphan"], flush=True)
    time.sleep(120)
    """
)


def test_a_worker_exits_when_its_parent_dies(fake_driver: str) -> None:
    script = _ORPHAN_SCRIPT.format(
        path=sys.path, name=FAKE, target=f"{__name__}:FakeDriver", endpoints=ENDPOINTS
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its resource tracker complains when it is killed
        text=True,
        cwd=os.getcwd(),
    )
    worker_pid = 0
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        worker_pid = int(line)
        worker = psutil.Process(worker_pid)
        assert worker.ppid() == parent.pid
        parent.kill()  # SIGKILL: the parent gets no chance to stop its workers
        parent.wait(10)
        deadline = time.monotonic() + 10.0
        gone = False
        while time.monotonic() < deadline:
            try:
                gone = worker.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                gone = True
            if gone:
                break
            time.sleep(0.1)
        assert gone, f"worker {worker_pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
        if worker_pid and psutil.pid_exists(worker_pid):
            # Only if the test failed: the orphan is ours, by the PID its parent printed.
            with contextlib.suppress(psutil.Error):
                psutil.Process(worker_pid).kill()
