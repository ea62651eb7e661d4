"""The broker's own count of what a step stored (``broker_messages_in``), which every kind
that sends records beside the client's counts (``bench check`` holds one to the other)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench.drivers.base import Driver
from bench.metrics.counters import MonotonicCounter

if TYPE_CHECKING:
    from bench.runner.api import StepContext

SETTLE_S = 0.5
"""After the drain, the count is read again this often until two readings agree (a ONEWAY
message still queued in the broker is stored after its sender finished)."""
SETTLE_CAP_S = 10.0
"""At most this long for the count to stop moving after the drain."""


class BrokerCount:
    """Messages the broker stored on a step's topics between the step's window edges: its
    ``messages_in`` counter (:meth:`Driver.broker_stats`) read by :meth:`start` just before the
    load and by :meth:`end` after the drain, once it stopped moving. That is the span of the
    step's per-second series over every phase (warm-up and drain included), which ``bench
    check`` holds against it.

    A broker's counter may restart from 0 (Pulsar keeps ``msgInCounter`` in the broker's
    memory, per loaded topic; RocketMQ's queue offsets survive a restart). With ``stitch`` (kill
    -9), each topic is read apart and its counter stitched across falls by a
    :class:`MonotonicCounter`: :meth:`sample` once a second (:meth:`sample_every`) and just
    before the kill keeps what falls away with the restart. What the broker stored between the
    last reading and the kill is not in the count, and a counter that climbed back above its
    last reading before any reading after the restart hides its fall; ``bench check`` says so
    when the count disagrees. Without ``stitch``, a count that fell between the edges (a
    restart nobody expected) is unknown.

    :attr:`stored` is None when the broker could not give the count (it was down at an edge,
    a topic was missing); :attr:`unknown` then says why. Never 0 for unknown.
    """

    def __init__(
        self,
        driver: Driver,
        topics: Sequence[str],
        *,
        stitch: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.driver = driver
        self.stitch = stitch
        topics = list(topics)
        # Stitching needs each topic apart: one that fails over restarts its count while the
        # others grow, and their sum may not fall.
        self._groups = [[t] for t in topics] if stitch else ([topics] if topics else [])
        self._counters = [MonotonicCounter("messages_in") for _ in self._groups]
        self._sleep = sleep
        self._lock = threading.Lock()
        self._started = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sampler: threading.Thread | None = None
        self.falls = 0
        """Readings at which the count fell (a restart, a topic moved to another broker)."""
        self.unknown: str | None = None
        """Why the count is unknown (None while it is known)."""

    def _read(self) -> list[int]:
        values = []
        for group in self._groups:
            stats = self.driver.broker_stats(group)
            missing = int(stats.get("missing", 0) or 0)
            if missing or "messages_in" not in stats:
                what = group[0] if len(group) == 1 else f"{missing} of the {len(group)} topics"
                raise LookupError(f"{what} not found on the broker")
            values.append(int(stats["messages_in"]))
        return values

    def _take(self, values: list[int]) -> None:
        fell = False
        for counter, value in zip(self._counters, values, strict=True):
            last = counter.last
            fell = fell or (last is not None and value < last)
            counter.update(value, time.time_ns())
        self.falls += fell

    def start(self) -> None:
        """The first edge: read just before the load starts."""
        with self._lock:
            try:
                self._take(self._read())
            except Exception as exc:
                self.unknown = f"the broker's count could not be read before the load: {exc}"
            else:
                self._started = True

    def sample(self) -> None:
        """One reading while the load runs; none while the broker is down (by design)."""
        with self._lock:
            if not self._started or self.unknown is not None:
                return
            try:
                self._take(self._read())
            except Exception:
                return

    def sample_every(self, interval_s: float = 1.0) -> None:
        """Call :meth:`sample` every ``interval_s`` in a thread of its own until :meth:`end`
        (apart from any thread whose timing matters: a read can hang while a broker is down)."""

        def run() -> None:
            while True:
                self._wake.wait(interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    return
                self.sample()

        self._sampler = threading.Thread(target=run, name="broker-count", daemon=True)
        self._sampler.start()

    def sample_soon(self) -> None:
        """Have :meth:`sample_every`'s thread read now (a broker just came back: a reading
        before its counter climbs back past the last one shows the fall)."""
        self._wake.set()

    def stop_sampling(self) -> None:
        """End :meth:`sample_every` (idempotent)."""
        self._stop.set()
        self._wake.set()
        if self._sampler is not None:
            self._sampler.join(timeout=60)

    def end(self) -> None:
        """The last edge: after the drain, read until two readings :data:`SETTLE_S` apart
        agree (at most :data:`SETTLE_CAP_S`)."""
        self.stop_sampling()
        with self._lock:
            if not self._started or self.unknown is not None:
                return
            try:
                values = self._read()
                waited = 0.0
                while waited < SETTLE_CAP_S:
                    self._sleep(SETTLE_S)
                    waited += SETTLE_S
                    again = self._read()
                    if again == values:
                        break
                    values = again
            except Exception as exc:
                self.unknown = f"the broker's count could not be read after the drain: {exc}"
                return
            if not self.stitch and any(
                v < (c.last or 0) for v, c in zip(values, self._counters, strict=True)
            ):
                before = sum(c.last or 0 for c in self._counters)
                self.unknown = (
                    f"the broker's count fell from {before:,} to {sum(values):,} during the "
                    "step: the broker restarted, so what it stored is unknown"
                )
                return
            self._take(values)

    @property
    def stored(self) -> int | None:
        """Messages stored between the edges (stitched across falls), or None: unknown."""
        if not self._started or self.unknown is not None:
            return None
        return sum(c.increase for c in self._counters)

    def record(self, ctx: StepContext) -> dict[str, Any]:
        """The step's ``broker_messages_in``; when unknown, a warning event says why."""
        if self.unknown is not None:
            ctx.event("warning", counter="broker_messages_in", detail=self.unknown)
        return {"broker_messages_in": self.stored}
