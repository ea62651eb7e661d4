"""The Python worker's producers: slots, the in-flight window, and the send loops.

At a fixed rate sends follow an :class:`~bench.runner.rate.OpenLoopSchedule`: publish latency is
recorded from the send (``publish``) and from the intended send time (``publish_intended``), so
a sender that falls behind shows as latency. Without a rate the loop is closed: as fast as
``max_in_flight`` outstanding sends allow (async) or one at a time per sender thread (sync).
A failed send is counted, never fatal; per-batch clients are re-created after every batch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Final

from bench.drivers.base import Driver, DriverClient, Producer
from bench.engines.spec import H_CONNECT, H_PUBLISH, H_PUBLISH_INTENDED, UNSENT, LoadSpec
from bench.errors import DriverError
from bench.metrics.intervals import ACKED, SEND_ERRORS, SENT, StatsRecorder
from bench.metrics.ledger import PayloadTemplate, ProducerLedger
from bench.runner.rate import MonotonicClock, OpenLoopSchedule

_NS: Final = 1_000_000_000
# A closed-loop sender pauses this long after a failed send, so a dead broker does not turn
# the loop into a busy spin of instant failures (the failures are still all counted).
_ERROR_PAUSE_S: Final = 0.01
_RECREATE_INTERVAL_S: Final = 1.0


class Window:
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


class Slot:
    """One producer: its ledger, next sequence number and (re-creatable) driver objects."""

    def __init__(self, producer_id: str, topic: str, ledger: ProducerLedger) -> None:
        self.producer_id = producer_id
        self.topic = topic
        self.ledger = ledger
        self.seq = 0
        self.template: PayloadTemplate | None = None
        self.producer: Producer | None = None
        self.client: DriverClient | None = None  # owned by this slot (not the shared one)
        self.on_client = 0
        self.next_recreate = 0.0
        self.in_flight = 0
        self.cond = threading.Condition()

    def wait_idle(self, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.in_flight == 0, timeout_s)


class Senders:
    """Every producer slot of a worker and the threads that send on them.

    ``count_error(op, exc)`` counts a failure by kind; ``on_bug(text)`` reports a sender thread
    that died of an unexpected exception (a bug, never a broker failure).
    """

    def __init__(
        self,
        spec: LoadSpec,
        driver: Driver,
        shared: DriverClient,
        rec: StatsRecorder,
        count_error: Callable[[str, BaseException], None],
        on_bug: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self.driver = driver
        self.shared = shared
        self.rec = rec
        self.count_error = count_error
        self.on_bug = on_bug
        self.slots: list[Slot] = []
        self.window = Window(spec.max_in_flight)
        self.stop_producing = threading.Event()
        self.threads: list[threading.Thread] = []
        self.deadline = float("inf")  # monotonic seconds
        self.consecutive_errors = 0
        self._halt = threading.Event()  # ends the current rate's loops (set_rate)
        self._clock = MonotonicClock()

    # -- producers -------------------------------------------------------------------------
    def open(self, slot: Slot) -> None:
        """(Re)create the slot's producer (and its own client unless clients are shared)."""
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

    def close(self, slot: Slot) -> None:
        if slot.producer is not None:
            slot.producer.close()
            slot.producer = None
        if slot.client is not None:
            slot.client.close()
            slot.client = None

    # -- loops -----------------------------------------------------------------------------
    def start(self, rate_per_s: float | None, go_mono: float) -> None:
        """Start the sender threads at ``rate_per_s`` in total (None: closed loop)."""
        spec = self.spec
        if not self.slots:
            return
        self._halt = threading.Event()
        n = min(spec.sender_threads, len(self.slots))
        sent = sum(s.seq for s in self.slots)
        left = None if spec.max_messages is None else max(0, spec.max_messages - sent)
        for i in range(n):
            rate = rate_per_s / n if rate_per_s else None
            quota = None if left is None else left // n + (1 if i < left % n else 0)
            t = threading.Thread(
                target=self._sender,
                args=(self.slots[i::n], rate, quota, go_mono, self._halt),
                name=f"sender-{i}",
                daemon=True,
            )
            self.threads.append(t)
            t.start()

    def set_rate(self, rate_per_s: float | None, timeout_s: float) -> None:
        """End the current loops and start new ones at ``rate_per_s``, scheduled from now."""
        self._halt.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.threads = [t for t in self.threads if t.is_alive()]
        if not self.stop_producing.is_set():
            self.start(rate_per_s, time.monotonic())

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def stop(self, timeout_s: float) -> None:
        """Stop sending and wait (up to ``timeout_s``) for outstanding sends to settle."""
        self.stop_producing.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        # Outstanding async sends finish (ack or time out) within the send timeout.
        self.window.wait_idle(max(0.0, deadline - time.monotonic()))

    def _stopped(self, halt: threading.Event) -> bool:
        return self.stop_producing.is_set() or halt.is_set()

    def _sender(
        self,
        slots: list[Slot],
        rate: float | None,
        quota: int | None,
        go_mono: float,
        halt: threading.Event,
    ) -> None:
        try:
            if rate is None:
                self._closed_loop(slots, quota, halt)
            else:
                self._open_loop(slots, rate, quota, go_mono, halt)
        except BaseException as exc:  # a bug: report it rather than die silently
            self.on_bug(f"sender: {exc!r}")

    def _open_loop(
        self, slots: list[Slot], rate: float, quota: int | None, go: float, halt: threading.Event
    ) -> None:
        schedule = OpenLoopSchedule(
            rate,
            int(go * _NS),
            clock=self._clock,
            deadline_ns=int(min(self.deadline, 1e12) * _NS),
            max_messages=quota,
        )
        cycle = itertools.cycle(slots)
        async_mode = self.spec.send_mode == "async"
        for tick in schedule:
            if self._stopped(halt):
                break
            slot = next(cycle)
            if async_mode and not self._acquire(halt):
                break
            self._send(slot, tick.intended_ns)
        if not self._stopped(halt) and schedule.planned > schedule.sent:
            self.rec.count(UNSENT, schedule.planned - schedule.sent)

    def _acquire(self, halt: threading.Event, want: int = 1) -> int:
        """Take up to ``want`` in-flight slots, waiting while the broker is slow; 0 once told
        to stop or past the deadline."""
        while not self._stopped(halt):
            if time.monotonic() >= self.deadline:
                return 0
            granted = self.window.acquire(want, 0.1)
            if granted:
                return granted
        return 0

    def _closed_loop(self, slots: list[Slot], quota: int | None, halt: threading.Event) -> None:
        cycle = itertools.cycle(slots)
        async_mode = self.spec.send_mode == "async"
        left = quota
        while left is None or left > 0:
            if self._stopped(halt) or time.monotonic() >= self.deadline:
                break
            burst = 1
            if async_mode:
                want = self.window.size if left is None else min(left, self.window.size)
                burst = self._acquire(halt, want)
                if not burst:
                    break
            for _ in range(burst):
                self._send(next(cycle), None)
            if left is not None:
                left -= burst
            if self.consecutive_errors:
                halt.wait(_ERROR_PAUSE_S)

    # -- one send --------------------------------------------------------------------------
    def _send(self, slot: Slot, intended_ns: int | None) -> None:
        spec = self.spec
        mode = spec.send_mode
        async_mode = mode == "async"
        if spec.connection_mode == "per_batch" and slot.on_client >= spec.batch_size:
            # The whole batch is acknowledged (or failed) before its connection goes.
            slot.wait_idle(self.send_timeout_s())
            self.close(slot)
        if slot.producer is None and time.monotonic() >= slot.next_recreate:
            self.open(slot)
        producer = slot.producer
        seq = slot.seq
        slot.seq += 1
        send_ns = time.time_ns()
        send_mono = time.monotonic_ns()
        if slot.template is None:
            slot.template = PayloadTemplate(spec.run_id, slot.producer_id, spec.message_size)
        payload = slot.template.encode(seq, send_ns)
        slot.ledger.record_sent(seq)
        self.rec.count(SENT)
        if producer is None:
            # No producer (its re-creation failed): the send fails as a connection error.
            self._failed(slot, seq, DriverError("no producer: connecting failed"), "connect")
            if async_mode:
                self.window.release()
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
                self.window.release()
                if track:
                    with slot.cond:
                        slot.in_flight -= 1
                        slot.cond.notify_all()

        try:
            producer.send_async(payload, done)
        except Exception as exc:
            done(exc)

    def _acked(self, slot: Slot, seq: int, send_mono: int, intended_ns: int | None) -> None:
        now = time.monotonic_ns()
        self.consecutive_errors = 0
        slot.ledger.record_acked(seq)
        intended = None
        if intended_ns is not None:
            intended = (H_PUBLISH_INTENDED, (now - intended_ns) // 1000)
        self.rec.acked(ACKED, (H_PUBLISH, (now - send_mono) // 1000), intended)

    def _failed(self, slot: Slot, seq: int, exc: BaseException, op: str = "send") -> None:
        self.consecutive_errors += 1
        slot.ledger.record_failed(seq)
        self.rec.count(SEND_ERRORS)
        self.count_error(op, exc)

    def send_timeout_s(self) -> float:
        """How long an outstanding send may take before the client fails it (plus margin)."""
        return float(self.spec.driver_settings.get("send_timeout_ms", 30000)) / 1000 + 5.0
