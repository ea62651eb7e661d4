"""The Python worker's consumers: tracked subscriptions, added ones, and subscribe churn.

Each tracked subscription decodes every payload into the
:class:`~bench.metrics.ledger.ConsumerLedger` of its (worker, topic, subscription) and records
end-to-end latency (receive - send, both ``time.time_ns`` on this host) of first receipts.
Added subscriptions (fan-out steps) and churn subscriptions count receipts but are not
reconciled: they start at the topic's end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from bench.drivers.base import Consumer, Driver, DriverClient
from bench.engines.spec import (
    CHURN_RECEIVED,
    DUPLICATES,
    FOREIGN,
    H_E2E,
    H_FIRST_MESSAGE,
    H_SUBSCRIBE,
    H_UNSUBSCRIBE,
    SUBSCRIBED,
    UNDECODABLE,
    UNSUBSCRIBED,
    LoadSpec,
)
from bench.metrics.intervals import RECEIVED, StatsRecorder
from bench.metrics.ledger import ConsumerLedger, LedgerBook, PayloadError, decode_payload

CountError = Callable[[str, BaseException], None]


class Consumers:
    """Every consumer of a worker, and its churn thread."""

    def __init__(
        self,
        spec: LoadSpec,
        driver: Driver,
        client: DriverClient,
        rec: StatsRecorder,
        book: LedgerBook,
        count_error: CountError,
        on_bug: Callable[[str], None],
        hard_deadline: float,
    ) -> None:
        self.spec = spec
        self.driver = driver
        self.client = client
        self.rec = rec
        self.book = book
        self.count_error = count_error
        self.on_bug = on_bug
        self.hard_deadline = hard_deadline
        self.tracked: list[Consumer] = []
        self.extra: list[Consumer] = []
        self.stopping = threading.Event()
        self._churn_rate = 0.0
        self._churn_live = 4
        self._churn_thread: threading.Thread | None = None
        self._churn_wake = threading.Event()
        self._restarts_shipped = 0

    # -- subscriptions ---------------------------------------------------------------------
    def subscribe(self, topic: str, subscription: str, *, tracked: bool) -> Consumer | None:
        """Subscribe; a failure is counted and gives None."""
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
            consumer = self.driver.consumer(topic, subscription, on_message, self.client)
        except Exception as exc:
            self.count_error("subscribe", exc)
            return None
        self.rec.record_us(H_SUBSCRIBE, (time.monotonic_ns() - started) // 1000)
        self.rec.count(SUBSCRIBED)
        (self.tracked if tracked else self.extra).append(consumer)
        return consumer

    def warm_up(self, topic: str) -> None:
        """One unmeasured subscribe and unsubscribe on a scratch subscription before the measured
        ones: a worker's first subscribe also opens its connection (and, in the JVM engine, loads
        the client's classes), a cost of ours that would be the subscribe p99 of a step with few
        subscribes. A failure is left to the measured subscribe that follows to count."""
        name = f"{self.spec.subscription_prefix}-warmup-{self.spec.worker_id}"
        try:
            consumer = self.driver.consumer(topic, name, lambda _p, _t: None, self.client)
        except Exception:  # the measured subscribe that follows counts it
            return
        try:
            consumer.unsubscribe()
        except Exception:  # best effort, as unsubscribe itself is
            consumer.close()

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

    def add(self, topics: Sequence[str] | None, n: int) -> None:
        """Add ``n`` untracked subscriptions to each of ``topics`` (None: every topic)."""
        wanted = set(topics) if topics is not None else None
        base = self.spec.subscriptions_per_topic
        for topic in self.spec.topics:
            if wanted is not None and topic not in wanted:
                continue
            have = sum(1 for c in self.extra if c.topic == topic)
            for i in range(n):
                # Added subscriptions start at the topic's end, so they are not reconciled.
                self.subscribe(topic, self.spec.subscription(base + have + i), tracked=False)

    def new_restarts(self) -> int:
        """Consumers the driver re-created since the last call (they did not recover alone)."""
        restarts = sum(c.restarts for c in self.tracked)
        new = restarts - self._restarts_shipped
        self._restarts_shipped = restarts
        return max(0, new)

    # -- churn -----------------------------------------------------------------------------
    def set_churn(self, ops_per_s: float, live: int) -> None:
        """Subscribe/unsubscribe at ``ops_per_s`` (0 pauses), keeping ``live`` subscriptions."""
        self._churn_rate = max(0.0, ops_per_s)
        self._churn_live = max(0, live)
        self._churn_wake.set()
        if self._churn_thread is None and self._churn_rate > 0:
            self._churn_thread = threading.Thread(target=self._churn, name="churn", daemon=True)
            self._churn_thread.start()

    def _churn(self) -> None:
        try:
            self._churn_loop()
        except BaseException as exc:
            self.on_bug(f"churn: {exc!r}")

    def _churn_loop(self) -> None:
        live: deque[Consumer] = deque()
        n = 0
        topics = self.spec.topics
        next_at = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() < self.hard_deadline:
            if self._churn_rate <= 0 or not topics:
                self._churn_wake.wait(0.5)
                self._churn_wake.clear()
                next_at = time.monotonic()
                continue
            delay = next_at - time.monotonic()
            if delay > 0:
                self._churn_wake.wait(delay)
                self._churn_wake.clear()
                continue
            # Intended times never move: a churn that falls behind catches up at full speed.
            next_at += 1.0 / self._churn_rate
            topic = topics[n % len(topics)]
            name = f"{self.spec.subscription_prefix}-churn-{self.spec.worker_id}-{n}"
            n += 1
            consumer = self._churn_subscribe(topic, name)
            if consumer is not None:
                live.append(consumer)
            while len(live) > self._churn_live:
                self._unsubscribe(live.popleft())
        for consumer in live:
            consumer.close()

    def _churn_subscribe(self, topic: str, name: str) -> Consumer | None:
        started = time.monotonic_ns()
        seen = threading.Event()
        rec = self.rec

        def on_message(_payload: bytes, _receive_ns: int) -> None:
            if not seen.is_set():
                seen.set()
                rec.record_us(H_FIRST_MESSAGE, (time.monotonic_ns() - started) // 1000)
            rec.count(CHURN_RECEIVED)

        try:
            consumer = self.driver.consumer(topic, name, on_message, self.client)
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

    def close(self) -> None:
        """Stop the churn and close every consumer."""
        self.stopping.set()
        self._churn_wake.set()
        if self._churn_thread is not None:
            self._churn_thread.join(10.0)
        for consumer in [*self.tracked, *self.extra]:
            consumer.close()
