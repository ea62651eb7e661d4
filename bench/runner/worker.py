"""Worker processes: producers and consumers for a shard of topics (DESIGN.md section 2).

A worker is a separate process (multiprocessing ``spawn``), so the GIL of one is never the
bottleneck of the run: the Runner starts as many as the load needs. Each worker gets a picklable
:class:`LoadSpec`, opens its own driver, subscribes its consumers, creates its producers, and
waits for the pool's "go" so that every worker starts producing at the same moment. Then:

- Producers send payloads made by :func:`bench.metrics.ledger.encode_payload` (run id,
  producer id, sequence, send time). At a fixed rate (``rate_per_s``) sends follow an
  :class:`~bench.runner.rate.OpenLoopSchedule`: publish latency is recorded from the send
  (``publish``) and from the intended send time (``publish_intended``), so a sender that falls
  behind shows as latency. Without a rate the loop is closed: as fast as ``max_in_flight``
  outstanding sends allow (a window with a low-water mark, see ``_Window`` for why not
  :class:`~bench.runner.rate.ClosedLoopLimiter`).
- Consumers decode each payload into the :class:`~bench.metrics.ledger.ConsumerLedger` of their
  subscription and record end-to-end latency (receive - send, both ``time.time_ns`` on this
  host).
- Once a second the worker ships :class:`~bench.metrics.intervals.IntervalStats` to the parent
  (counters, errors by kind, encoded HdrHistograms; every ``ledger_interval_s`` a cumulative
  ledger snapshot too). Intervals that end inside the warm-up carry ``interval.warmup = 1``
  (:data:`WARMUP_COUNTER`); the worker cuts an interval exactly at the warm-up's end.

Robustness: every loop is bounded in time (``deadline_s``) and, where it applies, in count; a
broker that dies makes sends fail or time out, which is counted, never fatal (the clients
reconnect by themselves; per-batch clients are re-created). A worker whose parent dies exits
on its own within a second (it watches its parent's PID), and a worker past its deadline exits
even if a client library hangs.

Names recorded (see the module constants): histograms ``publish``, ``publish_intended``,
``e2e``, ``subscribe``, ``unsubscribe``, ``first_message``, ``connect``; counters ``sent``,
``acked``, ``send_errors``, ``received``, ``duplicates``, ``foreign``, ``undecodable``,
``unsent``, ``subscribed``, ``unsubscribed``, ``churn.received``, ``interval.warmup``,
``interval.setup``; errors
``<operation>.<kind>`` with kind one of :data:`bench.drivers.base.ERROR_KINDS` (operations:
``send``, ``connect``, ``subscribe``, ``unsubscribe``, ``consume``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bench.drivers.base import (
    CONNECTION_MODES,
    SEND_MODES,
    Consumer,
    Driver,
    DriverClient,
    Producer,
    endpoints_from_json,
    open_driver,
    register_driver,
    registrations,
)
from bench.errors import BenchError, ConfigError, DriverError
from bench.infra.topology import Endpoints
from bench.metrics.intervals import ACKED, RECEIVED, SEND_ERRORS, SENT, IntervalStats, StatsRecorder
from bench.metrics.ledger import (
    ConsumerLedger,
    IntervalSet,
    LedgerBook,
    PayloadError,
    ProducerLedger,
    decode_payload,
    encode_payload,
    header_length,
)
from bench.runner.rate import MonotonicClock, OpenLoopSchedule

log = logging.getLogger(__name__)

# Histogram names.
H_PUBLISH: Final = "publish"
H_PUBLISH_INTENDED: Final = "publish_intended"
H_E2E: Final = "e2e"
H_SUBSCRIBE: Final = "subscribe"
H_UNSUBSCRIBE: Final = "unsubscribe"
H_FIRST_MESSAGE: Final = "first_message"
H_CONNECT: Final = "connect"
# Counter names beyond bench.metrics.intervals' SENT, ACKED, SEND_ERRORS, RECEIVED.
DUPLICATES: Final = "duplicates"
FOREIGN: Final = "foreign"
UNDECODABLE: Final = "undecodable"
UNSENT: Final = "unsent"
SUBSCRIBED: Final = "subscribed"
UNSUBSCRIBED: Final = "unsubscribed"
CHURN_RECEIVED: Final = "churn.received"
WARMUP_COUNTER: Final = "interval.warmup"
"""Set to 1 in an interval that ended inside the warm-up (excluded from figures)."""
CONSUMER_RESTARTS: Final = "consumer.restarts"
"""Consumers the driver had to re-create in the interval (they did not recover by themselves)."""
SETUP_COUNTER: Final = "interval.setup"
"""Set to 1 (with :data:`WARMUP_COUNTER`) in each worker's first interval: from its start to
the "go", holding the set-up's ``subscribe`` and ``connect`` latencies."""

_NS: Final = 1_000_000_000
# How often the control loop wakes (control messages, parent check, stats timer).
_TICK_S: Final = 0.05
# Extra life a worker gets past its deadline to close clients before it is cut short.
_EXIT_GRACE_S: Final = 20.0
# A closed-loop sender pauses this long after a failed send, so a dead broker does not turn
# the loop into a busy spin of instant failures (the failures are still all counted).
_ERROR_PAUSE_S: Final = 0.01
_RECREATE_INTERVAL_S: Final = 1.0


def is_warmup(stats: IntervalStats) -> bool:
    """True when ``stats`` ended inside a worker's warm-up (or is its set-up interval)."""
    return stats.counters.get(WARMUP_COUNTER, 0) > 0


def is_setup(stats: IntervalStats) -> bool:
    """True for a worker's set-up interval (start to "go")."""
    return stats.counters.get(SETUP_COUNTER, 0) > 0


@dataclass(frozen=True)
class LoadSpec:
    """Everything one worker process needs; picklable, no live objects.

    ``rate_per_s`` is this worker's total offered rate (split evenly across its producers) or
    None for a closed loop bounded by ``max_in_flight`` outstanding async sends (sync sends:
    ``sender_threads`` at a time). ``duration_s`` None produces until told
    (:meth:`WorkerPool.stop_producers`). ``deadline_s`` bounds the worker's whole life from its
    start, whatever happens.
    """

    worker_id: str
    broker: str
    endpoints: str
    """:meth:`Endpoints.to_json` as JSON text (see :meth:`LoadSpec.endpoints_text`)."""
    run_id: str
    topics: tuple[str, ...]
    path: str = "direct"
    producers_per_topic: int = 1
    rate_per_s: float | None = None
    max_in_flight: int = 1000
    send_mode: str = "async"
    connection_mode: str = "shared"
    batch_size: int = 100
    """Sends per client in ``connection_mode="per_batch"``."""
    message_size: int = 1024
    subscriptions_per_topic: int = 1
    subscription_prefix: str = "sub"
    warmup_s: float = 0.0
    duration_s: float | None = None
    deadline_s: float = 3600.0
    max_messages: int | None = None
    """Stop producing after this many sends (whole worker), if set."""
    sender_threads: int = 1
    stats_interval_s: float = 1.0
    ledger_interval_s: float = 5.0
    setup_timeout_s: float = 120.0
    driver_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.worker_id or "/" in self.worker_id:
            problems.append("worker_id must be non-empty and without '/'")
        if self.send_mode not in SEND_MODES:
            problems.append(f"send_mode {self.send_mode!r} not in {SEND_MODES}")
        if self.connection_mode not in CONNECTION_MODES:
            problems.append(f"connection_mode {self.connection_mode!r} not in {CONNECTION_MODES}")
        if self.producers_per_topic < 0 or self.subscriptions_per_topic < 0:
            problems.append("producers_per_topic and subscriptions_per_topic must be >= 0")
        if self.rate_per_s is not None and not (
            math.isfinite(self.rate_per_s) and self.rate_per_s > 0
        ):
            problems.append(f"rate_per_s must be positive or None, not {self.rate_per_s}")
        if self.max_in_flight < 1 or self.batch_size < 1 or self.sender_threads < 1:
            problems.append("max_in_flight, batch_size and sender_threads must be >= 1")
        if self.warmup_s < 0 or (self.duration_s is not None and self.duration_s <= 0):
            problems.append("warmup_s must be >= 0 and duration_s positive or None")
        if self.deadline_s <= 0 or self.stats_interval_s <= 0 or self.ledger_interval_s <= 0:
            problems.append("deadline_s, stats_interval_s and ledger_interval_s must be > 0")
        if self.max_messages is not None and self.max_messages < 0:
            problems.append("max_messages must be >= 0 or None")
        n_producers = len(self.topics) * self.producers_per_topic
        if n_producers:
            longest = header_length(self.run_id, self.producer_id(n_producers - 1))
            if self.message_size < longest:
                problems.append(f"message_size {self.message_size} is below the header {longest}")
        if problems:
            raise ConfigError(f"load spec {self.worker_id!r}: " + "; ".join(problems))

    @staticmethod
    def endpoints_text(endpoints: Endpoints) -> str:
        """``endpoints`` as the JSON text this spec carries."""
        return json.dumps(endpoints.to_json(), sort_keys=True)

    def producer_id(self, index: int) -> str:
        """The run-unique id of this worker's producer number ``index``."""
        return f"{self.worker_id}-p{index}"

    def subscription(self, index: int) -> str:
        """The name of subscription number ``index`` of every topic."""
        return f"{self.subscription_prefix}-{index}"


def split_topics(topics: Sequence[str], workers: int) -> list[tuple[str, ...]]:
    """Deal ``topics`` round-robin into ``workers`` shards (some empty if topics are few)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    return [tuple(topics[i::workers]) for i in range(workers)]


# ---------------------------------------------------------------------------------------------
# Inside the worker process


class _Window:
    """Bounds outstanding async sends, waking the sender only at a low-water mark.

    :class:`~bench.runner.rate.ClosedLoopLimiter` wakes its waiter on every release. Here every
    release runs in a client library's callback that must take the GIL, and a sender woken
    after each ack competes with the next callback for it: measured with pulsar-client on this
    2-core machine, that ping-pong cut the acknowledged rate several times over. So the sender
    sleeps until a quarter of the window is free and then sends that many at once.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.low = size - max(1, size // 4)
        self.in_flight = 0
        self._waiting = False
        self._cond = threading.Condition()

    def acquire(self, want: int, timeout_s: float) -> int:
        """Take up to ``want`` slots (at least one), waiting up to ``timeout_s``; 0 on timeout."""
        with self._cond:
            if self.in_flight >= self.size:
                self._waiting = True
                ok = self._cond.wait_for(lambda: self.in_flight <= self.low, timeout_s)
                self._waiting = False
                if not ok:
                    return 0
            granted = min(want, self.size - self.in_flight)
            self.in_flight += granted
            return granted

    def release(self, n: int = 1) -> None:
        with self._cond:
            self.in_flight -= n
            if (self._waiting and self.in_flight <= self.low) or self.in_flight == 0:
                self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is outstanding; False on timeout."""
        with self._cond:
            self._waiting = True
            try:
                return self._cond.wait_for(lambda: self.in_flight == 0, timeout_s)
            finally:
                self._waiting = False


class _Slot:
    """One producer: its ledger, next sequence number and (re-creatable) driver objects."""

    def __init__(self, producer_id: str, topic: str, ledger: ProducerLedger) -> None:
        self.producer_id = producer_id
        self.topic = topic
        self.ledger = ledger
        self.seq = 0
        self.producer: Producer | None = None
        self.client: DriverClient | None = None  # owned by this slot (not the shared one)
        self.on_client = 0
        self.next_recreate = 0.0
        self.in_flight = 0
        self.cond = threading.Condition()

    def wait_idle(self, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.in_flight == 0, timeout_s)


class _Worker:
    def __init__(self, spec: LoadSpec, events: Any, control: Any, parent_pid: int) -> None:
        self.spec = spec
        self.events = events
        self.control = control
        self.parent_pid = parent_pid
        self.clock = MonotonicClock()
        self.started_mono = time.monotonic()
        self.hard_deadline = self.started_mono + spec.deadline_s
        self.rec = StatsRecorder(spec.worker_id, time.time_ns())
        self.book = LedgerBook()
        self.driver: Driver | None = None
        self.shared: DriverClient | None = None
        self.consumer_client: DriverClient | None = None
        self.slots: list[_Slot] = []
        self.consumers: list[Consumer] = []
        self.extra_consumers: list[Consumer] = []
        self.limiter = _Window(spec.max_in_flight)
        self.stop_producing = threading.Event()
        self.stopping = threading.Event()
        self.senders: list[threading.Thread] = []
        self.produce_deadline = self.hard_deadline
        self.go_mono = 0.0
        self.churn_rate = 0.0
        self.churn_live = 4
        self.churn_thread: threading.Thread | None = None
        self.churn_wake = threading.Event()
        self.consecutive_errors = 0
        self.producers_done_sent = False

    # -- events ----------------------------------------------------------------------------
    def emit(self, kind: str, payload: Any) -> None:
        self.events.put((kind, self.spec.worker_id, payload))

    def count_error(self, op: str, exc: BaseException) -> None:
        kind = self.driver.classify(exc) if self.driver is not None else "other"
        self.rec.error(f"{op}.{kind}")

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        spec = self.spec
        driver = open_driver(
            spec.broker,
            endpoints_from_json(json.loads(spec.endpoints)),
            path=spec.path,
            settings=spec.driver_settings,
        )
        self.driver = driver
        if spec.producers_per_topic and spec.topics:
            driver.check_send_mode(spec.send_mode)
        self.shared = driver.new_client()
        self.consumer_client = (
            self.shared if spec.connection_mode == "shared" else driver.new_client()
        )
        # Consumers first: a subscription that exists before the first send sees every message.
        for topic in spec.topics:
            for s in range(spec.subscriptions_per_topic):
                consumer = self.subscribe(topic, spec.subscription(s), tracked=True)
                if consumer is None:
                    raise DriverError(f"could not subscribe {spec.subscription(s)} to {topic}")
        index = 0
        for topic in spec.topics:
            for _ in range(spec.producers_per_topic):
                pid = spec.producer_id(index)
                index += 1
                slot = _Slot(pid, topic, self.book.producer(pid, topic))
                self.open_producer(slot)
                if slot.producer is None:
                    raise DriverError(f"could not create producer {pid} on {topic}")
                self.slots.append(slot)

    def open_producer(self, slot: _Slot) -> None:
        """(Re)create the slot's producer (and its own client unless clients are shared)."""
        assert self.driver is not None and self.shared is not None
        started = time.monotonic_ns()
        client = self.shared
        try:
            if self.spec.connection_mode != "shared":
                client = self.driver.new_client()
                slot.client = client
            slot.producer = self.driver.producer(slot.topic, self.spec.send_mode, client)
        except Exception as exc:
            self.count_error("connect", exc)
            if slot.client is not None:
                slot.client.close()
                slot.client = None
            slot.producer = None
            slot.next_recreate = time.monotonic() + _RECREATE_INTERVAL_S
            return
        slot.on_client = 0
        self.rec.record_us(H_CONNECT, (time.monotonic_ns() - started) // 1000)

    def close_producer(self, slot: _Slot) -> None:
        if slot.producer is not None:
            slot.producer.close()
            slot.producer = None
        if slot.client is not None:
            slot.client.close()
            slot.client = None

    def subscribe(self, topic: str, subscription: str, *, tracked: bool) -> Consumer | None:
        assert self.driver is not None and self.consumer_client is not None
        spec = self.spec
        ledger = (
            self.book.consumer(
                spec.run_id, topic, subscription, f"{spec.worker_id}/{topic}/{subscription}"
            )
            if tracked
            else None
        )
        on_message = self._on_message(ledger)
        started = time.monotonic_ns()
        try:
            consumer = self.driver.consumer(topic, subscription, on_message, self.consumer_client)
        except Exception as exc:
            self.count_error("subscribe", exc)
            return None
        self.rec.record_us(H_SUBSCRIBE, (time.monotonic_ns() - started) // 1000)
        self.rec.count(SUBSCRIBED)
        (self.consumers if tracked else self.extra_consumers).append(consumer)
        return consumer

    def _on_message(self, ledger: ConsumerLedger | None) -> Callable[[bytes, int], None]:
        rec, run_id = self.rec, self.spec.run_id

        def on_message(payload: bytes, receive_ns: int) -> None:
            try:
                header = decode_payload(payload)
            except PayloadError:
                if ledger is not None:
                    ledger.record_payload(payload)  # counts it as undecodable
                rec.count(UNDECODABLE)
                return
            except Exception as exc:  # never into the client's thread
                self.count_error("consume", exc)
                return
            if header.run_id != run_id:
                if ledger is not None:
                    ledger.record(header)  # counts it as foreign
                rec.count(FOREIGN)
                return
            first = ledger.record(header) if ledger is not None else True
            rec.count(RECEIVED)
            if first:
                rec.record_us(H_E2E, (receive_ns - header.send_ns) // 1000)
            else:
                rec.count(DUPLICATES)

        return on_message

    # -- producing -------------------------------------------------------------------------
    def start_senders(self) -> None:
        spec = self.spec
        if not self.slots:
            return
        n = min(spec.sender_threads, len(self.slots))
        for i in range(n):
            slots = self.slots[i::n]
            rate = spec.rate_per_s / n if spec.rate_per_s else None
            quota = None
            if spec.max_messages is not None:
                quota = spec.max_messages // n + (1 if i < spec.max_messages % n else 0)
            t = threading.Thread(
                target=self._sender, args=(slots, rate, quota), name=f"sender-{i}", daemon=True
            )
            self.senders.append(t)
            t.start()

    def _sender(self, slots: list[_Slot], rate: float | None, quota: int | None) -> None:
        try:
            if rate is None:
                self._closed_loop(slots, quota)
            else:
                self._open_loop(slots, rate, quota)
        except BaseException as exc:  # a bug: report it rather than die silently
            self.emit("failed", {"error": f"sender: {exc!r}", "trace": traceback.format_exc()})
            self.stopping.set()

    def _deadline_ns(self) -> int:
        return int(self.produce_deadline * _NS)

    def _open_loop(self, slots: list[_Slot], rate: float, quota: int | None) -> None:
        schedule = OpenLoopSchedule(
            rate,
            int(self.go_mono * _NS),
            clock=self.clock,
            deadline_ns=self._deadline_ns(),
            max_messages=quota,
        )
        cycle = itertools.cycle(slots)
        async_mode = self.spec.send_mode == "async"
        for tick in schedule:
            if self.stop_producing.is_set():
                break
            slot = next(cycle)
            if async_mode and not self._acquire():
                break
            self._send(slot, tick.intended_ns)
        unsent = schedule.planned - schedule.sent if not self.stop_producing.is_set() else 0
        if unsent > 0:
            self.rec.count(UNSENT, unsent)

    def _acquire(self, want: int = 1) -> int:
        """Take up to ``want`` in-flight slots, waiting while the broker is slow; 0 once told
        to stop or past the deadline."""
        while not self.stop_producing.is_set():
            if time.monotonic() >= self.produce_deadline:
                return 0
            granted = self.limiter.acquire(want, 0.1)
            if granted:
                return granted
        return 0

    def _closed_loop(self, slots: list[_Slot], quota: int | None) -> None:
        cycle = itertools.cycle(slots)
        async_mode = self.spec.send_mode == "async"
        left = quota
        while left is None or left > 0:
            if self.stop_producing.is_set() or time.monotonic() >= self.produce_deadline:
                break
            burst = 1
            if async_mode:
                want = self.limiter.size if left is None else min(left, self.limiter.size)
                burst = self._acquire(want)
                if not burst:
                    break
            for _ in range(burst):
                self._send(next(cycle), None)
            if left is not None:
                left -= burst
            if self.consecutive_errors:
                self.stop_producing.wait(_ERROR_PAUSE_S)

    def _send(self, slot: _Slot, intended_ns: int | None) -> None:
        spec = self.spec
        mode = spec.send_mode
        async_mode = mode == "async"
        if spec.connection_mode == "per_batch" and slot.on_client >= spec.batch_size:
            # The whole batch is acknowledged (or failed) before its connection goes.
            slot.wait_idle(self._send_timeout())
            self.close_producer(slot)
        if slot.producer is None and time.monotonic() >= slot.next_recreate:
            self.open_producer(slot)
        producer = slot.producer
        seq = slot.seq
        slot.seq += 1
        send_ns = time.time_ns()
        send_mono = time.monotonic_ns()
        payload = encode_payload(spec.run_id, slot.producer_id, seq, send_ns, spec.message_size)
        slot.ledger.record_sent(seq)
        self.rec.count(SENT)
        if producer is None:
            # No producer (its re-creation failed): the send fails as a connection error.
            self._failed(slot, seq, DriverError("no producer: connecting failed"), "connect")
            if async_mode:
                self.limiter.release()
            return
        slot.on_client += 1
        if mode == "oneway":
            try:
                producer.send_oneway(payload)
            except Exception as exc:
                self._failed(slot, seq, exc)
            else:
                self.consecutive_errors = 0
            return
        if mode == "sync":
            try:
                producer.send(payload)
            except Exception as exc:
                self._failed(slot, seq, exc)
            else:
                self._acked(slot, seq, send_mono, intended_ns)
            return
        # Per-slot in-flight counts only matter when a batch's connection is to be closed.
        track = spec.connection_mode == "per_batch"
        if track:
            with slot.cond:
                slot.in_flight += 1

        def done(exc: BaseException | None) -> None:
            try:
                if exc is None:
                    self._acked(slot, seq, send_mono, intended_ns)
                else:
                    self._failed(slot, seq, exc)
            finally:
                self.limiter.release()
                if track:
                    with slot.cond:
                        slot.in_flight -= 1
                        slot.cond.notify_all()

        try:
            producer.send_async(payload, done)
        except Exception as exc:
            done(exc)

    def _acked(self, slot: _Slot, seq: int, send_mono: int, intended_ns: int | None) -> None:
        now = time.monotonic_ns()
        self.consecutive_errors = 0
        slot.ledger.record_acked(seq)
        self.rec.count(ACKED)
        self.rec.record_us(H_PUBLISH, (now - send_mono) // 1000)
        if intended_ns is not None:
            self.rec.record_us(H_PUBLISH_INTENDED, (now - intended_ns) // 1000)

    def _failed(self, slot: _Slot, seq: int, exc: BaseException, op: str = "send") -> None:
        self.consecutive_errors += 1
        slot.ledger.record_failed(seq)
        self.rec.count(SEND_ERRORS)
        self.count_error(op, exc)

    def _send_timeout(self) -> float:
        return float(self.spec.driver_settings.get("send_timeout_ms", 30000)) / 1000 + 5.0

    def stop_senders(self, timeout_s: float) -> None:
        self.stop_producing.set()
        deadline = time.monotonic() + timeout_s
        for t in self.senders:
            t.join(max(0.0, deadline - time.monotonic()))
        # Outstanding async sends finish (ack or time out) within the send timeout.
        self.limiter.wait_idle(max(0.0, deadline - time.monotonic()))

    # -- churn -----------------------------------------------------------------------------
    def set_churn(self, ops_per_s: float, live: int) -> None:
        self.churn_rate = max(0.0, ops_per_s)
        self.churn_live = max(0, live)
        self.churn_wake.set()
        if self.churn_thread is None and self.churn_rate > 0:
            self.churn_thread = threading.Thread(target=self._churn, name="churn", daemon=True)
            self.churn_thread.start()

    def _churn(self) -> None:
        try:
            self._churn_loop()
        except BaseException as exc:
            self.emit("failed", {"error": f"churn: {exc!r}", "trace": traceback.format_exc()})

    def _churn_loop(self) -> None:
        assert self.driver is not None and self.consumer_client is not None
        live: deque[Consumer] = deque()
        n = 0
        topics = self.spec.topics
        next_at = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() < self.hard_deadline:
            if self.churn_rate <= 0 or not topics:
                self.churn_wake.wait(0.5)
                self.churn_wake.clear()
                next_at = time.monotonic()
                continue
            delay = next_at - time.monotonic()
            if delay > 0:
                self.churn_wake.wait(delay)
                self.churn_wake.clear()
                continue
            # Intended times never move: a churn that falls behind catches up at full speed.
            next_at += 1.0 / self.churn_rate
            topic = topics[n % len(topics)]
            name = f"{self.spec.subscription_prefix}-churn-{self.spec.worker_id}-{n}"
            n += 1
            consumer = self._churn_subscribe(topic, name)
            if consumer is not None:
                live.append(consumer)
            while len(live) > self.churn_live:
                self._unsubscribe(live.popleft())
        for consumer in live:
            consumer.close()

    def _churn_subscribe(self, topic: str, name: str) -> Consumer | None:
        assert self.driver is not None and self.consumer_client is not None
        started = time.monotonic_ns()
        seen = threading.Event()
        rec = self.rec

        def on_message(_payload: bytes, _receive_ns: int) -> None:
            if not seen.is_set():
                seen.set()
                rec.record_us(H_FIRST_MESSAGE, (time.monotonic_ns() - started) // 1000)
            rec.count(CHURN_RECEIVED)

        try:
            consumer = self.driver.consumer(topic, name, on_message, self.consumer_client)
        except Exception as exc:
            self.count_error("subscribe", exc)
            return None
        rec.record_us(H_SUBSCRIBE, (time.monotonic_ns() - started) // 1000)
        rec.count(SUBSCRIBED)
        return consumer

    def _unsubscribe(self, consumer: Consumer) -> None:
        started = time.monotonic_ns()
        try:
            consumer.unsubscribe()
        except Exception as exc:
            self.count_error("unsubscribe", exc)
            return
        self.rec.record_us(H_UNSUBSCRIBE, (time.monotonic_ns() - started) // 1000)
        self.rec.count(UNSUBSCRIBED)

    # -- drain -----------------------------------------------------------------------------
    def undelivered(self) -> int:
        """Messages acknowledged (ONEWAY: sent) by this worker's producers that some tracked
        subscription of their topic has not received yet."""
        oneway = self.spec.send_mode == "oneway"
        expected: dict[str, list[tuple[str, IntervalSet]]] = {}
        for slot in self.slots:
            snap = ProducerLedger.from_dict(slot.ledger.to_dict())
            expected.setdefault(slot.topic, []).append(
                (slot.producer_id, snap.sent if oneway else snap.acked)
            )
        missing = 0
        with self.book._lock:
            ledgers = list(self.book.consumers.values())
        for c in ledgers:
            snap_c = ConsumerLedger.from_dict(c.to_dict())
            for pid, want in expected.get(snap_c.topic, []):
                got = snap_c.by_producer.get(pid)
                missing += len(want.difference(got.received)) if got else len(want)
        return missing

    # -- the control loop ------------------------------------------------------------------
    def run(self) -> int:
        spec = self.spec
        try:
            self.setup()
        except BaseException as exc:
            self.emit("failed", {"error": _one_line(exc), "trace": traceback.format_exc()})
            self.shutdown()
            return 1
        self.emit(
            "ready",
            {
                "producers": len(self.slots),
                "consumers": len(self.consumers),
                "setup_s": time.monotonic() - self.started_mono,
                "settings": self.driver.settings_record() if self.driver else {},
            },
        )
        if not self._wait_go():
            self.shutdown()
            return 2
        self.go_mono = time.monotonic()
        # Setup (subscribing, creating producers) gets an interval of its own, before the
        # measured clock starts.
        self.ship(warmup=True, with_ledger=False, setup=True)
        if spec.duration_s is not None:
            self.produce_deadline = min(
                self.hard_deadline, self.go_mono + spec.warmup_s + spec.duration_s
            )
        warmup_end = self.go_mono + spec.warmup_s if spec.warmup_s > 0 else None
        self.start_senders()
        next_stats = self.go_mono + spec.stats_interval_s
        next_ledger = self.go_mono + spec.ledger_interval_s
        drain: _Drain | None = None
        next_drain_check = 0.0
        code = 0
        while not self.stopping.is_set():
            try:
                cmd, args = self.control.get(timeout=_TICK_S)
            except queue.Empty:
                cmd, args = "", {}
            now = time.monotonic()
            if cmd == "stop":
                break
            if cmd == "stop_producers":
                self.stop_producing.set()
            elif cmd == "add_subscriptions":
                self._add_subscriptions(args.get("topics"), int(args["n"]))
            elif cmd == "churn":
                self.set_churn(float(args["ops_per_s"]), int(args.get("live", 4)))
            elif cmd == "ledger":
                self.emit("ledger", {"ledger": self.book.to_dict()})
            elif cmd == "drain":
                self.stop_producing.set()
                stall = args.get("stall_s")
                stall_s = float(stall) if stall is not None else None
                drain = _Drain(now, float(args["timeout_s"]), stall_s)
            if warmup_end is not None and now >= warmup_end:
                self.ship(warmup=True, with_ledger=False)
                warmup_end = None
                next_stats = now + spec.stats_interval_s
            if now >= next_stats:
                with_ledger = now >= next_ledger
                self.ship(warmup=warmup_end is not None, with_ledger=with_ledger)
                if with_ledger:
                    next_ledger = now + spec.ledger_interval_s
                next_stats = max(next_stats + spec.stats_interval_s, now)
            if not self.producers_done_sent and not any(t.is_alive() for t in self.senders):
                self.producers_done_sent = True
                self.emit("producers_done", {"sent": sum(s.seq for s in self.slots)})
            if drain is not None and now >= next_drain_check:
                # Reconciling is not free: a few times a second is enough.
                next_drain_check = now + 0.2
                sending = self.limiter.in_flight > 0 or any(t.is_alive() for t in self.senders)
                outcome = drain.check(now, -1 if sending else self.undelivered())
                if outcome is not None:
                    self.emit("drained", {**outcome, "ledger": self.book.to_dict()})
                    drain = None
            if now >= self.hard_deadline:
                code = 3
                break
        self.stop_senders(min(5.0, self._send_timeout()))
        self.ship(warmup=False, with_ledger=True)
        self.shutdown()
        return code

    def _wait_go(self) -> bool:
        deadline = time.monotonic() + self.spec.setup_timeout_s
        while time.monotonic() < min(deadline, self.hard_deadline):
            try:
                cmd, _ = self.control.get(timeout=_TICK_S)
            except queue.Empty:
                continue
            if cmd == "go":
                return True
            if cmd == "stop":
                return False
        return False

    def _add_subscriptions(self, topics: Sequence[str] | None, n: int) -> None:
        wanted = set(topics) if topics is not None else None
        base = self.spec.subscriptions_per_topic
        for topic in self.spec.topics:
            if wanted is not None and topic not in wanted:
                continue
            have = sum(1 for c in self.extra_consumers if c.topic == topic)
            for i in range(n):
                # Added subscriptions start at the topic's end, so they are not reconciled.
                self.subscribe(topic, self.spec.subscription(base + have + i), tracked=False)

    def ship(self, *, warmup: bool, with_ledger: bool, setup: bool = False) -> None:
        stats = self.rec.snapshot_and_reset(
            time.time_ns(), self.book.to_dict() if with_ledger else None
        )
        if warmup:
            stats.counters[WARMUP_COUNTER] = 1
        if setup:
            stats.counters[SETUP_COUNTER] = 1
        # Consumers the driver had to re-create (they did not recover by themselves).
        restarts = sum(c.restarts for c in self.consumers)
        shipped = getattr(self, "_restarts_shipped", 0)
        if restarts > shipped:
            stats.counters[CONSUMER_RESTARTS] = restarts - shipped
            self._restarts_shipped = restarts
        self.emit("stats", stats.to_json())

    def shutdown(self) -> None:
        self.stopping.set()
        self.stop_producing.set()
        self.churn_wake.set()
        if self.churn_thread is not None:
            self.churn_thread.join(10.0)
        for consumer in [*self.consumers, *self.extra_consumers]:
            consumer.close()
        for slot in self.slots:
            self.close_producer(slot)
        for client in {id(c): c for c in (self.consumer_client, self.shared) if c}.values():
            client.close()
        if self.driver is not None:
            self.driver.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, BenchError) else f"{type(exc).__name__}: {text}"


def _watchdog(parent_pid: int, hard_deadline: float) -> None:
    """Exit the process when the parent is gone or the deadline (plus grace) has passed.

    ``os._exit`` skips cleanup on purpose: a client library blocked on a dead broker must not
    keep an orphan alive.
    """
    while True:
        if os.getppid() != parent_pid:
            os._exit(70)
        if time.monotonic() > hard_deadline + _EXIT_GRACE_S:
            os._exit(71)
        time.sleep(0.25)


def worker_main(
    spec: LoadSpec, events: Any, control: Any, parent_pid: int, drivers: dict[str, str]
) -> None:
    """The worker process's entry point (spawned by :class:`WorkerPool`)."""
    # Ctrl-C reaches the whole process group: the parent decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name, target in drivers.items():
        register_driver(name, target)
    worker = _Worker(spec, events, control, parent_pid)
    threading.Thread(
        target=_watchdog, args=(parent_pid, worker.hard_deadline), name="watchdog", daemon=True
    ).start()
    code = 1
    try:
        code = worker.run()
    except BaseException as exc:
        worker.emit("failed", {"error": _one_line(exc), "trace": traceback.format_exc()})
    finally:
        with contextlib.suppress(Exception):
            worker.emit("exit", {"code": code})
            events.close()
            events.join_thread()
        # Client libraries leave non-daemon threads behind; they must not hold the exit.
        os._exit(code)


# ---------------------------------------------------------------------------------------------
# In the parent


class WorkerFailed(BenchError):
    """A worker process failed to start or died."""


@dataclass
class _Drain:
    """One worker's drain: it ends when nothing is missing, at its deadline, or once the count
    of missing messages has not fallen for ``stall_s`` (``None``: never early)."""

    started: float
    timeout_s: float
    stall_s: float | None
    progress_at: float = field(init=False)
    fewest: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.progress_at = self.started

    def check(self, now: float, missing: int) -> dict[str, Any] | None:
        """``missing`` is -1 while sends are still in flight. The outcome once it is over."""
        if missing < 0 or self.fewest < 0 or missing < self.fewest:
            self.progress_at = now  # acks still coming in, or messages arriving
            self.fewest = missing
        stalled = self.stall_s is not None and now - self.progress_at >= self.stall_s
        if missing == 0 or now >= self.started + self.timeout_s or stalled:
            return {
                "ok": missing == 0,
                "undelivered": missing,
                "seconds": now - self.started,
                "stalled": stalled and missing != 0,
            }
        return None


@dataclass
class _Handle:
    spec: LoadSpec
    process: Any
    control: Any
    ready: dict[str, Any] | None = None
    failed: str | None = None
    exited: int | None = None
    producers_done: bool = False
    drained: dict[str, Any] | None = None
    ledger: dict[str, Any] | None = None
    ledger_seq: int = 0


class WorkerPool:
    """Starts worker processes, collects their interval stats, and steers them.

    Use as a context manager (or call :meth:`stop` in ``finally``): leaving it stops every
    worker, killing any that does not exit in time.
    """

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._events: Any = self._ctx.Queue()
        self._workers: dict[str, _Handle] = {}
        self._stats: list[IntervalStats] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        """Every non-stats event received: (kind, worker id, payload)."""
        self.drain_reports: list[dict[str, Any]] = []
        """Each worker's outcome of the last :meth:`drain`."""
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, specs: Sequence[LoadSpec], *, timeout_s: float | None = None) -> None:
        """Start one process per spec, wait until all are set up, then let them all go.

        Raises :class:`WorkerFailed` (after stopping every worker) if one fails to set up.
        """
        if self._workers:
            raise RuntimeError("a WorkerPool starts once")
        ids = [s.worker_id for s in specs]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"worker ids must be unique: {ids}")
        drivers = registrations()
        for spec in specs:
            control = self._ctx.Queue()
            proc = self._ctx.Process(
                target=worker_main,
                args=(spec, self._events, control, os.getpid(), drivers),
                name=f"bench-worker-{spec.worker_id}",
                daemon=True,
            )
            self._workers[spec.worker_id] = _Handle(spec, proc, control)
            proc.start()
        wait = timeout_s if timeout_s is not None else max(s.setup_timeout_s for s in specs) + 30
        deadline = time.monotonic() + wait
        try:
            while any(h.ready is None for h in self._workers.values()):
                failed = [f"{w}: {h.failed}" for w, h in self._workers.items() if h.failed]
                if failed:
                    raise WorkerFailed("worker setup failed: " + "; ".join(failed))
                if time.monotonic() >= deadline:
                    late = [w for w, h in self._workers.items() if h.ready is None]
                    raise WorkerFailed(f"workers not ready within {wait:.0f} s: {late}")
                self._pump(0.2)
        except BaseException:
            self.stop(10.0)
            raise
        self._broadcast("go")

    def _broadcast(self, cmd: str, args: dict[str, Any] | None = None) -> None:
        for h in self._workers.values():
            if h.exited is None and h.process.is_alive():
                h.control.put((cmd, args or {}))

    def _pump(self, timeout_s: float) -> bool:
        """Handle one event (waiting up to ``timeout_s``); notice dead workers."""
        if self._closed:
            return False
        try:
            kind, wid, payload = self._events.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            self._reap()
            return False
        h = self._workers.get(wid)
        if kind == "stats":
            stats = IntervalStats.from_json(payload)
            self._stats.append(stats)
            if h is not None and stats.ledger is not None:
                h.ledger = stats.ledger
            return True
        self.events.append((kind, wid, payload))
        if h is None:
            return True
        if kind == "ready":
            h.ready = payload
        elif kind == "failed":
            h.failed = h.failed or payload.get("error", "failed")
            log.error("worker %s failed: %s", wid, payload.get("trace", payload))
        elif kind == "producers_done":
            h.producers_done = True
        elif kind == "drained":
            h.drained = payload
            h.ledger = payload["ledger"]
        elif kind == "ledger":
            h.ledger = payload["ledger"]
            h.ledger_seq += 1
        elif kind == "exit":
            h.exited = int(payload.get("code", 0))
        return True

    def _reap(self) -> None:
        for wid, h in self._workers.items():
            if h.exited is None and not h.process.is_alive():
                h.exited = h.process.exitcode if h.process.exitcode is not None else -1
                if h.exited != 0 and h.failed is None:
                    h.failed = f"process exited with code {h.exited}"
                    self.events.append(("failed", wid, {"error": h.failed}))

    # -- stats -----------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> list[IntervalStats]:
        """Interval stats received since the last call, waiting up to ``timeout_s`` for one."""
        deadline = time.monotonic() + timeout_s
        while not self._stats:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._pump(min(remaining, 0.2))
        while self._pump(0):  # whatever else is already queued
            pass
        out, self._stats = self._stats, []
        return out

    @property
    def failures(self) -> dict[str, str]:
        """Workers that failed, with why."""
        return {w: h.failed for w, h in self._workers.items() if h.failed}

    def settings(self) -> dict[str, Any]:
        """The driver settings the first ready worker reported (what to record)."""
        for h in self._workers.values():
            if h.ready:
                return dict(h.ready.get("settings", {}))
        return {}

    def producers_done(self) -> bool:
        """True once every worker's producers have finished (duration, count or told)."""
        return all(h.producers_done or h.exited is not None for h in self._workers.values())

    # -- control ---------------------------------------------------------------------------
    def add_subscriptions(self, topic_ids: Sequence[str] | None, n: int) -> None:
        """Add ``n`` subscriptions to each topic in ``topic_ids`` (topic names; None = all).

        Added subscriptions start at the topic's end, so they count receipts and end-to-end
        latency but are not reconciled in the ledger.
        """
        self._broadcast(
            "add_subscriptions", {"topics": list(topic_ids) if topic_ids else None, "n": n}
        )

    def churn(self, ops_per_s: float, live: int = 4) -> None:
        """Subscribe/unsubscribe at ``ops_per_s`` in total (split across workers; 0 stops).

        Each operation subscribes a new subscription and, beyond ``live`` per worker,
        unsubscribes the oldest; subscribe latency goes to ``subscribe``, time from subscribing
        to its first message to ``first_message``.
        """
        alive = [h for h in self._workers.values() if h.exited is None and h.spec.topics]
        for h in alive:
            h.control.put(("churn", {"ops_per_s": ops_per_s / max(1, len(alive)), "live": live}))

    def stop_producers(self) -> None:
        """Stop every worker's producers; consumers keep running."""
        self._broadcast("stop_producers")

    def drain(self, timeout_s: float, stall_s: float | None = None) -> bool:
        """Stop producing, then keep consuming until every acknowledged message (ONEWAY: every
        sent one) has been received by every reconciled subscription, or ``timeout_s`` passes,
        or (given ``stall_s``) a worker's count of missing messages has not fallen for
        ``stall_s``: a slow consumer gets the time it needs, a stuck one does not.

        Returns True when every worker drained completely; :attr:`drain_reports` then holds
        each worker's outcome (``ok``, ``undelivered``, ``seconds``, ``stalled``). Stats that
        arrive meanwhile are kept for the next :meth:`poll`.
        """
        for h in self._workers.values():
            h.drained = None
        self._broadcast("drain", {"timeout_s": timeout_s, "stall_s": stall_s})
        deadline = time.monotonic() + timeout_s + 10.0
        while time.monotonic() < deadline and any(
            h.drained is None and h.exited is None for h in self._workers.values()
        ):
            self._pump(0.2)
        self.drain_reports = [h.drained for h in self._workers.values() if h.drained is not None]
        return all(h.drained is not None and h.drained.get("ok") for h in self._workers.values())

    def ledgers(self, timeout_s: float = 10.0) -> LedgerBook:
        """The ledgers of every worker, fresh from the live ones, joined into one book."""
        waiting = {w: h.ledger_seq for w, h in self._workers.items() if h.exited is None}
        self._broadcast("ledger")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pending = [
                w
                for w, seq in waiting.items()
                if self._workers[w].ledger_seq == seq and self._workers[w].exited is None
            ]
            if not pending:
                break
            self._pump(0.2)
        book = LedgerBook()
        for h in self._workers.values():
            if h.ledger is not None:
                book.join(LedgerBook.from_dict(h.ledger))
        return book

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop every worker (final stats and ledgers are collected); kill the ones that do
        not exit within ``timeout_s``."""
        if self._closed:
            return
        self._broadcast("stop")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(h.exited is None for h in self._workers.values()):
            self._pump(0.2)
        for h in self._workers.values():
            proc = h.process
            if proc.is_alive():
                proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %s did not exit; terminating it", h.spec.worker_id)
                proc.terminate()
                proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
        while self._pump(0):
            pass
        self._closed = True
        for h in self._workers.values():
            h.control.close()
            h.control.cancel_join_thread()
        self._events.close()
        self._events.cancel_join_thread()

    def pids(self) -> dict[str, int]:
        """PIDs of the live workers, by worker id (for resource sampling)."""
        return {
            w: h.process.pid for w, h in self._workers.items() if h.process.pid and h.exited is None
        }

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
