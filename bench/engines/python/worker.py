"""The Python worker: one process, its driver, producers and consumers, and the control loop.

It speaks the worker protocol (``docs/worker-protocol.md``): commands arrive as
:mod:`bench.engines.protocol` objects from a queue (fed by the stdin reader in ``__main__``),
events leave through ``emit``. Once a second it ships an interval
(:class:`~bench.metrics.intervals.IntervalStats`: counters, errors by kind, encoded
HdrHistograms; every ``ledger_interval_s`` a cumulative ledger snapshot too). Intervals that
end inside the warm-up carry ``interval.warmup = 1``; the interval holding the warm-up's end is
cut exactly there.
"""

from __future__ import annotations

import json
import queue
import time
import traceback
from collections.abc import Callable
from typing import Final

from bench.drivers.base import Driver, DriverClient, endpoints_from_json, open_driver
from bench.engines import protocol as p
from bench.engines.python.consumers import Consumers
from bench.engines.python.drain import DrainClock, undelivered
from bench.engines.python.senders import Senders, Slot
from bench.engines.spec import CONSUMER_RESTARTS, SETUP_COUNTER, WARMUP_COUNTER, LoadSpec
from bench.errors import BenchError, DriverError
from bench.metrics.intervals import StatsRecorder
from bench.metrics.ledger import LedgerBook

# How often the control loop wakes (commands, stats timer, drain checks).
_TICK_S: Final = 0.05
EOF_COMMAND: Final = "eof"
"""Put on the command queue when stdin closes: the runner is gone, the worker stops."""

Emit = Callable[[p.Event], None]


def one_line(exc: BaseException) -> str:
    """An exception as one line a person can act on."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, BenchError) else f"{type(exc).__name__}: {text}"


class PythonWorker:
    """One worker's state; :meth:`run` is its whole life after ``setup``."""

    def __init__(self, spec: LoadSpec, commands: queue.Queue[p.Command | str], emit: Emit) -> None:
        self.spec = spec
        self.commands = commands
        self.emit = emit
        self.started_mono = time.monotonic()
        self.hard_deadline = self.started_mono + spec.deadline_s
        self.rec = StatsRecorder(spec.worker_id, time.time_ns())
        self.book = LedgerBook()
        self.driver: Driver | None = None
        self.clients: list[DriverClient] = []
        self.senders: Senders | None = None
        self.consumers: Consumers | None = None
        self.producers_done_sent = False

    def count_error(self, op: str, exc: BaseException) -> None:
        kind = self.driver.classify(exc) if self.driver is not None else "other"
        self.rec.error(f"{op}.{kind}")

    def bug(self, text: str) -> None:
        self.emit(p.Failed(text, traceback.format_exc()))

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
        shared = driver.new_client()
        self.clients.append(shared)
        consumer_client = shared
        if spec.connection_mode != "shared":
            consumer_client = driver.new_client()
            self.clients.append(consumer_client)
        self.consumers = Consumers(
            spec,
            driver,
            consumer_client,
            self.rec,
            self.book,
            self.count_error,
            self.bug,
            self.hard_deadline,
        )
        self.senders = Senders(spec, driver, shared, self.rec, self.count_error, self.bug)
        self.senders.deadline = self.hard_deadline
        # Consumers first: a subscription that exists before the first send sees every message.
        if spec.subscriptions_per_topic > 0 and spec.topics:
            self.consumers.warm_up(spec.topics[0])
        for topic in spec.topics:
            for s in range(spec.subscriptions_per_topic):
                if self.consumers.subscribe(topic, spec.subscription(s), tracked=True) is None:
                    raise DriverError(f"could not subscribe {spec.subscription(s)} to {topic}")
        index = 0
        for topic in spec.topics:
            for _ in range(spec.producers_per_topic):
                pid = spec.producer_id(index)
                index += 1
                slot = Slot(pid, topic, self.book.producer(pid, topic))
                self.senders.open(slot)
                if slot.producer is None:
                    raise DriverError(f"could not create producer {pid} on {topic}")
                self.senders.slots.append(slot)

    # -- the control loop ------------------------------------------------------------------
    def run(self) -> int:
        """Set up, wait for go, produce and consume until told to stop; the exit code."""
        spec = self.spec
        try:
            self.setup()
        except BaseException as exc:
            self.emit(p.Failed(one_line(exc), traceback.format_exc()))
            self.shutdown()
            return 1
        assert self.senders is not None and self.consumers is not None and self.driver
        senders, consumers = self.senders, self.consumers
        settings = self.driver.settings_record()
        self.emit(
            p.Ready(
                worker_id=spec.worker_id,
                engine="python",
                producers=len(senders.slots),
                consumers=len(consumers.tracked),
                setup_s=time.monotonic() - self.started_mono,
                settings=settings,
                client={
                    "name": f"python {spec.broker} driver",
                    "version": str(settings.get("client_version", "")),
                },
            )
        )
        if not self._wait_go():
            self.shutdown()
            return 2
        go = time.monotonic()
        # Setup (subscribing, creating producers) gets an interval of its own, before the
        # measured clock starts.
        self.ship(warmup=True, with_ledger=False, setup=True)
        if spec.duration_s is not None:
            senders.deadline = min(self.hard_deadline, go + spec.warmup_s + spec.duration_s)
        warmup_end = go + spec.warmup_s if spec.warmup_s > 0 else None
        senders.start(spec.rate_per_s, go)
        next_stats = go + spec.stats_interval_s
        next_ledger = go + spec.ledger_interval_s
        drain: DrainClock | None = None
        next_drain_check = 0.0
        code = 0
        while True:
            try:
                cmd: p.Command | str | None = self.commands.get(timeout=_TICK_S)
            except queue.Empty:
                cmd = None
            now = time.monotonic()
            if isinstance(cmd, p.Stop) or cmd == EOF_COMMAND:
                break
            if isinstance(cmd, p.StopProducers):
                senders.stop_producing.set()
            elif isinstance(cmd, p.SetRate):
                senders.set_rate(cmd.rate_per_s, senders.send_timeout_s())
            elif isinstance(cmd, p.AddSubscriptions):
                consumers.add(cmd.topics, cmd.n)
            elif isinstance(cmd, p.Churn):
                consumers.set_churn(cmd.ops_per_s, cmd.live)
            elif isinstance(cmd, p.LedgerRequest):
                self.emit(p.Ledger(self.book.to_dict()))
            elif isinstance(cmd, p.Drain):
                senders.stop_producing.set()
                drain = DrainClock(now, cmd.timeout_s, cmd.stall_s)
            elif cmd is not None:
                self.emit(p.Failed(f"command {cmd!r} is not valid after go"))
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
            if not self.producers_done_sent and not senders.running():
                self.producers_done_sent = True
                self.emit(p.ProducersDone(sum(s.seq for s in senders.slots)))
            if drain is not None and now >= next_drain_check:
                # Reconciling is not free: a few times a second is enough.
                next_drain_check = now + 0.2
                sending = senders.window.in_flight > 0 or senders.running()
                oneway = spec.send_mode == "oneway"
                missing = -1 if sending else undelivered(senders.slots, self.book, oneway)
                outcome = drain.check(now, missing)
                if outcome is not None:
                    # Every send and receipt up to here is in a stats interval before drained:
                    # the runner's series then add up to the ledger it reconciles.
                    self.ship(warmup=False, with_ledger=False)
                    self.emit(p.Drained(ledger=self.book.to_dict(), **outcome))
                    drain = None
            if now >= self.hard_deadline:
                code = 3
                break
        senders.stop(min(5.0, senders.send_timeout_s()))
        self.ship(warmup=False, with_ledger=True)
        self.shutdown()
        return code

    def _wait_go(self) -> bool:
        deadline = min(self.started_mono + self.spec.setup_timeout_s, self.hard_deadline)
        while time.monotonic() < deadline:
            try:
                cmd = self.commands.get(timeout=_TICK_S)
            except queue.Empty:
                continue
            if isinstance(cmd, p.Go):
                return True
            if isinstance(cmd, p.Stop) or cmd == EOF_COMMAND:
                return False
            self.emit(p.Failed(f"command {cmd!r} is not valid before go"))
        return False

    def ship(self, *, warmup: bool, with_ledger: bool, setup: bool = False) -> None:
        """Send the interval since the last one (and, if asked, the cumulative ledger)."""
        stats = self.rec.snapshot_and_reset(
            time.time_ns(), self.book.to_dict() if with_ledger else None
        )
        if warmup:
            stats.counters[WARMUP_COUNTER] = 1
        if setup:
            stats.counters[SETUP_COUNTER] = 1
        if self.consumers is not None and (restarts := self.consumers.new_restarts()):
            stats.counters[CONSUMER_RESTARTS] = restarts
        self.emit(p.Stats(stats.to_dict()))

    def shutdown(self) -> None:
        if self.senders is not None:
            self.senders.stop_producing.set()
        if self.consumers is not None:
            self.consumers.close()
        if self.senders is not None:
            for slot in self.senders.slots:
                self.senders.close(slot)
        for client in self.clients:
            client.close()
        if self.driver is not None:
            self.driver.close()
