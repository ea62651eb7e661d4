"""The runner's side of the worker protocol: start worker processes of one engine, steer them,
collect their interval stats and ledgers.

Each worker is a child process with a pipe on its stdin (commands) and its stdout (events, read
by one thread per worker into one queue); its stderr goes to a log file, never the terminal.
The pool knows an engine only by the command that starts its worker: everything after that is
the protocol (``docs/worker-protocol.md``). A worker's stdin closing (this process dying, even by
kill -9) makes it exit, so no worker outlives its runner.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from bench.drivers.base import CLIENT_LOG_ENV, registrations
from bench.engines import protocol as p
from bench.engines.remote import Clock, RemoteProcess, RemoteWorkerError, worker_token
from bench.engines.spec import LoadSpec, consistent_subscriptions
from bench.errors import BenchError, ConfigError
from bench.metrics.intervals import IntervalStats
from bench.metrics.ledger import LedgerBook

log = logging.getLogger(__name__)


class WorkerFailed(BenchError):
    """A worker process failed to start or died."""


REMOTE_WORKERS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "bench_remote_workers", default=()
)
"""``bench worker`` addresses (HOST:PORT) a run's pools use instead of local processes; the
runner sets it for the run (``bench run --workers``), so every step's pool goes remote without
each executor passing it down."""


@contextlib.contextmanager
def remote_workers(addrs: Sequence[str]) -> Iterator[None]:
    """Within the block, :class:`WorkerPool` places its workers on ``addrs``."""
    reset = REMOTE_WORKERS.set(tuple(addrs))
    try:
        yield
    finally:
        REMOTE_WORKERS.reset(reset)


def worker_command(engine: p.Engine, open_loop: bool = False) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment that start one worker of ``engine``; ``open_loop``: the
    worker's spec has a rate (the JVM then compiles for start-up, not peak)."""
    if engine == "python":
        from bench.engines.python.__main__ import EXTRA_DRIVERS_ENV

        env = {
            # The worker imports what this process can (test doubles included).
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            EXTRA_DRIVERS_ENV: json.dumps(registrations()),
        }
        return [sys.executable, "-m", "bench.engines.python"], env
    if engine == "jvm":
        from bench.engines.jvm import ensure_built

        return ensure_built().argv(open_loop), {}
    raise ConfigError(f"unknown engine {engine!r}; known: {', '.join(p.ENGINES)}")


def reshard(specs: Sequence[LoadSpec], hosts: int) -> list[LoadSpec]:
    """``specs`` dealt again over ``hosts`` remote workers when they are fewer than the hosts,
    so every host gets a shard: the topics of all specs round-robin over
    ``min(hosts, topics)`` workers, the total rate, sender threads and in-flight window split
    evenly (as :class:`~bench.runner.load.LoadPlan` deals them; threads and window rounded up,
    at least 1). Specs that cap their sends
    (``max_messages``, per worker) or differ beyond topics and rate are kept as they are."""
    if len(specs) >= hosts or not specs:
        return list(specs)
    base = specs[0]

    def rest(s: LoadSpec) -> LoadSpec:
        return replace(s, worker_id=base.worker_id, topics=base.topics, rate_per_s=base.rate_per_s)

    if base.max_messages is not None or any(rest(s) != base for s in specs[1:]):
        return list(specs)
    topics = [t for s in specs for t in s.topics]
    n = max(1, min(hosts, len(topics)))
    rates = [s.rate_per_s for s in specs]
    rate = sum(r for r in rates if r) / n if all(rates) else None
    threads = -(-sum(s.sender_threads for s in specs) // n)
    window = -(-sum(s.max_in_flight for s in specs) // n)
    return [
        replace(
            base,
            worker_id=f"w{i}",
            topics=tuple(topics[i::n]),
            rate_per_s=rate,
            sender_threads=threads,
            max_in_flight=window,
        )
        for i in range(n)
    ]


@dataclass
class _Handle:
    spec: LoadSpec
    process: subprocess.Popen[bytes] | RemoteProcess
    ready: p.Ready | None = None
    failed: str | None = None
    exited: int | None = None
    producers_done: bool = False
    drained: p.Drained | None = None
    ledger: dict[str, Any] | None = None
    ledger_seq: int = 0

    def send(self, command: p.Command) -> None:
        if self.exited is not None or self.process.poll() is not None:
            return
        stdin = self.process.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stdin.write(p.encode(command))
            stdin.flush()


def _read_events(
    wid: str,
    stream: IO[bytes],
    into: queue.Queue[tuple[str, Any]],
    on_end: Any = None,
) -> None:
    with contextlib.suppress(OSError, ValueError):  # a remote connection may reset
        for line in stream:
            try:
                into.put((wid, p.decode_event(line)))
            except p.ProtocolError as exc:
                into.put((wid, p.Failed(f"protocol: {exc}")))
    if on_end is not None:
        on_end()
    into.put((wid, None))  # the worker closed its stdout


class WorkerPool:
    """Starts worker processes of one engine, collects their interval stats, and steers them.

    Use as a context manager (or call :meth:`stop` in ``finally``): leaving it stops every
    worker, killing any that does not exit in time.
    """

    def __init__(
        self,
        engine: p.Engine = "python",
        log_path: Path | None = None,
        remote: Sequence[str] | None = None,
        *,
        peak: bool = False,
    ) -> None:
        self.engine = engine
        self.log_path = log_path
        self.peak = peak
        """Compile for peak even at a fixed rate (calibrate's ONEWAY rows measure a peak)."""
        self.remote: tuple[str, ...] = tuple(remote if remote is not None else REMOTE_WORKERS.get())
        """``bench worker`` addresses: spec ``i`` runs on ``remote[i % len(remote)]``; empty:
        local processes."""
        self.clocks: dict[str, Clock] = {}
        """Each remote worker's clock against this process's (by worker id)."""
        self._lost: list[str] = []
        self._stopping = False
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._workers: dict[str, _Handle] = {}
        self._stats: list[IntervalStats] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        """Every non-stats event received: (kind, worker id, payload)."""
        self.drain_reports: list[dict[str, Any]] = []
        """Each worker's outcome of the last :meth:`drain`."""
        self._closed = False
        self._log: IO[bytes] | None = None

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
        specs = consistent_subscriptions(reshard(specs, len(self.remote)) if self.remote else specs)
        if self.remote:
            self._start_remote(specs)
        else:
            self._start_local(specs)
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
        self._broadcast(p.Go())

    def _open_loop(self, spec: LoadSpec) -> bool:
        """Whether the worker compiles for start-up (a fixed rate) rather than for peak."""
        return spec.rate_per_s is not None and not self.peak

    def _start_local(self, specs: Sequence[LoadSpec]) -> None:
        argv, extra_env = worker_command(self.engine)
        open_argv, _ = worker_command(self.engine, open_loop=True)
        env = {**os.environ, **extra_env}
        # A worker's console is its log file; several processes must not share one client log.
        env.pop(CLIENT_LOG_ENV, None)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        try:
            for spec in specs:
                proc = subprocess.Popen(
                    open_argv if self._open_loop(spec) else argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=self._log if self._log is not None else subprocess.DEVNULL,
                    env=env,
                )
                handle = _Handle(spec, proc)
                self._workers[spec.worker_id] = handle
                assert proc.stdout is not None
                threading.Thread(
                    target=_read_events,
                    args=(spec.worker_id, proc.stdout, self._events),
                    name=f"events-{spec.worker_id}",
                    daemon=True,
                ).start()
                handle.send(p.Setup(spec.to_protocol()))
        except OSError as exc:
            self.stop(5.0)
            raise WorkerFailed(f"cannot start a {self.engine} worker ({argv[0]}): {exc}") from exc

    def _start_remote(self, specs: Sequence[LoadSpec]) -> None:
        """One connection (one remote worker process) per spec, dealt over the addresses."""
        token = worker_token()
        try:
            for i, spec in enumerate(specs):
                proc = RemoteProcess(
                    self.remote[i % len(self.remote)],
                    self.engine,
                    token,
                    open_loop=self._open_loop(spec),
                )
                handle = _Handle(spec, proc)
                self._workers[spec.worker_id] = handle
                self.clocks[spec.worker_id] = proc.clock
                threading.Thread(
                    target=_read_events,
                    args=(spec.worker_id, proc.stdout, self._events, proc.mark_done),
                    name=f"events-{spec.worker_id}",
                    daemon=True,
                ).start()
                handle.send(p.Setup(spec.to_protocol()))
        except RemoteWorkerError as exc:
            self.stop(5.0)
            raise WorkerFailed(str(exc)) from exc

    def _broadcast(self, command: p.Command) -> None:
        for h in self._workers.values():
            h.send(command)

    def _pump(self, timeout_s: float) -> bool:
        """Handle one event (waiting up to ``timeout_s``); notice dead workers."""
        if self._closed:
            return False
        try:
            wid, event = self._events.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            self._reap()
            return False
        h = self._workers.get(wid)
        if h is None:
            return True
        if event is None:  # stdout closed: the process is ending
            self._reap(wait_s=2.0, only=wid)
            return True
        if isinstance(event, p.Stats):
            stats = IntervalStats.from_dict(event.stats)
            self._stats.append(stats)
            if stats.ledger is not None:
                h.ledger = stats.ledger
            return True
        payload = {k: v for k, v in vars(event).items() if k != "event"}
        self.events.append((event.event, wid, payload))
        if isinstance(event, p.Ready):
            h.ready = event
        elif isinstance(event, p.Failed):
            h.failed = h.failed or event.error
            log.error("worker %s failed: %s", wid, event.trace or event.error)
        elif isinstance(event, p.ProducersDone):
            h.producers_done = True
        elif isinstance(event, p.Drained):
            h.drained = event
            h.ledger = event.ledger
        elif isinstance(event, p.Ledger):
            h.ledger = event.ledger
            h.ledger_seq += 1
        elif isinstance(event, p.Exit):
            h.exited = event.code
        return True

    def _reap(self, wait_s: float = 0.0, only: str | None = None) -> None:
        for wid, h in self._workers.items():
            if h.exited is not None or (only is not None and wid != only):
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                h.process.wait(wait_s)
            code = h.process.poll()
            if code is None:
                continue
            h.exited = code
            if isinstance(h.process, RemoteProcess) and h.failed is None:
                # The connection ended before the worker said `exit`: it (or its host) is gone.
                h.failed = (
                    f"remote worker {wid} (bench worker at {h.process.addr}) disconnected "
                    "before it finished"
                )
                self.events.append(("failed", wid, {"error": h.failed}))
                if not self._stopping:
                    self._lost.append(h.failed)
            elif code != 0 and h.failed is None:
                h.failed = f"{self.engine} worker process exited with code {code}"
                self.events.append(("failed", wid, {"error": h.failed}))

    # -- stats -----------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> list[IntervalStats]:
        """Interval stats received since the last call, waiting up to ``timeout_s`` for one.

        Raises :class:`RemoteWorkerError` once a remote worker has disconnected mid-step: its
        shard's figures and ledger are gone, so the step cannot be measured (local workers
        that die are reported in :attr:`failures` instead)."""
        deadline = time.monotonic() + timeout_s
        while not self._stats:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._pump(min(remaining, 0.2))
        while self._pump(0):  # whatever else is already queued
            pass
        if self._lost:
            raise RemoteWorkerError(self._lost[0])
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
                return {**h.ready.settings, "engine": h.ready.engine, "client": h.ready.client}
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
        self._broadcast(p.AddSubscriptions(n, list(topic_ids) if topic_ids else None))

    def churn(self, ops_per_s: float, live: int = 4) -> None:
        """Subscribe/unsubscribe at ``ops_per_s`` in total (split across workers; 0 stops).

        Each operation subscribes a new subscription and, beyond ``live`` per worker,
        unsubscribes the oldest; subscribe latency goes to ``subscribe``, time from subscribing
        to its first message to ``first_message``.
        """
        alive = [h for h in self._workers.values() if h.exited is None and h.spec.topics]
        for h in alive:
            h.send(p.Churn(ops_per_s / max(1, len(alive)), live))

    def set_rate(self, rate_per_s: float | None) -> None:
        """Send at ``rate_per_s`` in total from now on (split evenly; None: closed loop)."""
        alive = [h for h in self._workers.values() if h.exited is None and h.spec.topics]
        for h in alive:
            h.send(p.SetRate(rate_per_s / len(alive) if rate_per_s else None))

    def stop_producers(self) -> None:
        """Stop every worker's producers; consumers keep running."""
        self._broadcast(p.StopProducers())

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
        self._broadcast(p.Drain(timeout_s, stall_s))
        deadline = time.monotonic() + timeout_s + 10.0
        while time.monotonic() < deadline and any(
            h.drained is None and h.exited is None for h in self._workers.values()
        ):
            self._pump(0.2)
        self.drain_reports = [
            {k: v for k, v in vars(h.drained).items() if k not in ("event", "ledger")}
            for h in self._workers.values()
            if h.drained is not None
        ]
        return all(h.drained is not None and h.drained.ok for h in self._workers.values())

    def ledgers(self, timeout_s: float = 10.0) -> LedgerBook:
        """The ledgers of every worker, fresh from the live ones, joined into one book."""
        waiting = {w: h.ledger_seq for w, h in self._workers.items() if h.exited is None}
        self._broadcast(p.LedgerRequest())
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
        self._stopping = True
        self._broadcast(p.Stop())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(h.exited is None for h in self._workers.values()):
            self._pump(0.2)
        for h in self._workers.values():
            proc = h.process
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                log.warning("worker %s did not exit; killing it", h.spec.worker_id)
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5.0)
        while self._pump(0):
            pass
        self._closed = True
        for h in self._workers.values():
            if isinstance(h.process, RemoteProcess):
                # Shut the connection first: its event reader returns, then its files close.
                h.process.kill()
            for stream in (h.process.stdin, h.process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def pids(self) -> dict[str, int]:
        """PIDs of the live workers, by worker id (for resource sampling)."""
        return {
            w: h.process.pid
            for w, h in self._workers.items()
            if h.exited is None and h.process.poll() is None and h.process.pid
        }

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
