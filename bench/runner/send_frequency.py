"""send-frequency: achieved TPS and latency against the offered rate, by send mode and
connection mode, plus a ramp that stops at saturation (DESIGN.md section 3.2).

Also home of :class:`BrokerCount`, the broker's own count of what a step stored, which every
kind that sends records as ``broker_messages_in``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from bench.drivers.base import Driver
from bench.metrics.counters import MonotonicCounter
from bench.runner.common import (
    base_spec,
    create_topics,
    finish,
    load_plan,
    open_step_driver,
    start_meter,
    step_topic_names,
)
from bench.runner.load import DRAIN_CAP_S, run_load
from bench.runner.record import loss_totals, skipped_record, step_record
from bench.scenarios.model import SendFrequencyProfile

if TYPE_CHECKING:
    from bench.runner.api import StepContext

# Ramp groups that already saturated in this process: (run id, group) -> the offered rate.
_saturated: dict[tuple[str, str], float] = {}

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


def run_step(ctx: StepContext) -> dict[str, Any]:
    step = ctx.step
    prof = cast(SendFrequencyProfile, ctx.scenario.profile(step.profile))
    p = step.params
    started = time.time()
    rate = float(p["rate_per_s"])
    key = (ctx.run_id, step.group)
    if p.get("phase") == "ramp" and key in _saturated:
        return skipped_record(
            ctx,
            {"offered_rate_per_s": rate},
            # Saturated says what was reached, not who limited it: client_bound on the step
            # that saturated tells broker from client.
            f"ramp stopped: saturated at {_saturated[key]:.0f} msg/s offered",
        )
    send_mode, conn_mode = str(p["send_mode"]), str(p["connection_mode"])
    topics = step_topic_names(ctx, "sf", prof.topics)
    with open_step_driver(ctx) as driver:
        driver.check_send_mode(send_mode)
        creation = create_topics(driver, topics, concurrency=8)
        if creation.errors:
            raise_for = creation.first_error or "unknown error"
            return step_record(
                ctx,
                started_at=started,
                metrics={},
                window={"start": started, "end": started},
                status="failed",
                error=f"could not create the topics: {raise_for}",
            )
        count = BrokerCount(driver, topics)
        count.start()
        meter = start_meter(ctx, prof.warmup_s)
        spec = base_spec(
            ctx,
            topics,
            rate_per_s=rate,
            send_mode=send_mode,
            connection_mode=conn_mode,
            producers_per_topic=max(1, prof.producers // prof.topics),
            max_in_flight=prof.max_in_flight,
            batch_size=prof.batch_size_for_per_batch or 100,
            warmup_s=prof.warmup_s,
            subscriptions_per_topic=1,
            sender_threads=4 if send_mode == "sync" else 1,
        )
        result = run_load(
            load_plan(ctx, spec, topics),
            meter,
            prof.duration_s,
            progress_tick=ctx.progress.tick,
            # ONEWAY has no acknowledgements, so no loss to settle: no drain to wait for.
            drain_timeout_s=0.0 if send_mode == "oneway" else DRAIN_CAP_S,
        )
        count.end()
    merged, window = meter.window()
    secs = max(1e-3, window["end"] - window["start"])
    achieved = (merged.counters.get("acked", 0) / secs) if merged else 0.0
    stored = count.stored
    extra: dict[str, Any] = {
        "send_mode": send_mode,
        "connection_mode": conn_mode,
        **count.record(ctx),
    }
    if send_mode == "oneway":
        # No ack comes back, so the broker's own count of what it stored, over the send time
        # (duration_s, warm-up included), is the achieved rate. Not the consumers' receipts:
        # they are consume_tps, and RocketMQ's 5.x Python consumer tops out far below what
        # ONEWAY puts (a first full run stopped its ramp at 3,000/s, offered and stored in
        # full, because only 1,218/s had been consumed).
        if stored is not None:
            achieved = stored / prof.duration_s
        else:  # the broker's count is unknown: the consumers' receipts, a lower bound
            achieved = (merged.counters.get("received", 0) / secs) if merged else 0.0
        extra["publish_tps"] = achieved
    threshold = 0.9
    if p.get("phase") == "ramp" and prof.ramp is not None:
        threshold = prof.ramp.stop_when_achieved_below
    saturated = achieved < threshold * rate
    extra["saturated"] = saturated
    if saturated and p.get("phase") == "ramp":
        _saturated[key] = rate
        ctx.event(
            "warning", detail=f"saturated: {achieved:.0f} msg/s achieved of {rate:.0f} offered"
        )
    loss = None if send_mode == "oneway" else loss_totals(result.ledgers)
    if result.hook_results.get("worker_failures"):
        ctx.event("error", detail={"worker_failures": result.hook_results["worker_failures"]})
    return finish(
        ctx,
        meter,
        drained=result.drained,
        drain_note=result.drain_note,
        started_at=started,
        offered_rate_per_s=rate,
        extra=extra,
        loss=loss,
    )
