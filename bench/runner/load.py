"""Running load for a step: worker processes, ticked once a second into a :class:`StepMeter`.

This is the one place the step executors meet :mod:`bench.engines.pool`: a change in the
worker's interface is a change here only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.engines.pool import WorkerFailed, WorkerPool
from bench.engines.protocol import DEFAULT_ENGINE, Engine
from bench.engines.spec import LoadSpec
from bench.errors import BrokerUnavailable
from bench.metrics.ledger import LedgerBook
from bench.runner.measure import StepMeter

DEFAULT_WORKERS = 2  # the machine has 2 cores, shared with the brokers
ENGINE_WORKERS: dict[str, int] = {"python": DEFAULT_WORKERS, "jvm": 1}
"""Worker processes a step starts by default. Python: one per core (the interpreter runs one
thread at a time). JVM: one, its threads on every core, as the native tools run: two JVMs each
paid their own JIT, GC and I/O thread and split the client's write coalescing (Pulsar closed loop,
`bench calibrate --engine jvm`, same broker, back to back: 13.7 us of CPU a message with two
workers against 8.8 with one; pulsar-perf 7.6)."""
# A drain lasts while messages keep arriving, up to DRAIN_CAP_S: RocketMQ's Python consumers
# take ~500 msg/s here, so a fixed 30 s left a saturating quick step's backlog (16,000 messages)
# a few hundred short and its loss an upper bound. DRAIN_STALL_S without any arriving ends it.
DRAIN_CAP_S = 120.0
DRAIN_STALL_S = 15.0


@dataclass
class LoadPlan:
    """What to run: the load for all workers, split by topic shard."""

    base: LoadSpec
    topics: Sequence[str]
    workers: int | None = None
    """None: the engine's :data:`ENGINE_WORKERS`."""
    engine: Engine = DEFAULT_ENGINE
    log_path: Path | None = None
    """Where the workers' own logs go (stderr: their client libraries' too)."""

    def specs(self) -> list[LoadSpec]:
        workers = self.workers if self.workers is not None else ENGINE_WORKERS[self.engine]
        n = max(1, min(workers, len(self.topics)))
        # The step's load is the same whatever the engine: fewer workers each run more sender
        # threads and keep more sends in flight, so the totals stay those of DEFAULT_WORKERS.
        scale = max(1, min(DEFAULT_WORKERS, len(self.topics)) // n)
        per_worker_rate = (self.base.rate_per_s / n) if self.base.rate_per_s else None
        return [
            replace(
                self.base,
                worker_id=f"w{i}",
                topics=tuple(self.topics[i::n]),
                rate_per_s=per_worker_rate,
                sender_threads=self.base.sender_threads * scale,
                max_in_flight=self.base.max_in_flight * scale,
            )
            for i in range(n)
        ]


def drain_note(reports: Sequence[dict[str, Any]], timeout_s: float, stall_s: float | None) -> str:
    """How a drain that did not finish ended: at its cap, or early because it stalled."""
    seconds = max((float(r.get("seconds", 0.0)) for r in reports), default=timeout_s)
    if stall_s is not None and any(r.get("stalled") for r in reports):
        return (
            f"the drain stopped after {seconds:.0f} s, when no message had arrived "
            f"for {stall_s:.0f} s"
        )
    return f"the drain did not finish within {timeout_s:.0f} s"


@dataclass
class LoadResult:
    """What a load run left behind besides the meter's ticks."""

    ledgers: LedgerBook | None
    drained: bool
    drain_note: str = ""  # how an unfinished drain ended, for the step's error
    hook_results: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[float, WorkerPool], None]


def run_load(
    plan: LoadPlan,
    meter: StepMeter,
    duration_s: float,
    *,
    on_tick: Hook | None = None,
    until: Callable[[float], bool] | None = None,
    phase_of: Callable[[float], str | None] | None = None,
    drain_timeout_s: float = DRAIN_CAP_S,
    drain_stall_s: float | None = DRAIN_STALL_S,
    progress_tick: Callable[[float, int, str], None] | None = None,
    start_timeout_s: float = 120.0,
) -> LoadResult:
    """Run ``plan`` for ``duration_s`` seconds, one tick a second, then drain.

    ``on_tick(elapsed_s, pool)`` runs each tick (fault injection, churn changes);
    ``until(elapsed_s)`` ends the load early (``duration_s`` is then a cap);
    ``phase_of(elapsed_s)`` may name the phase of the tick (default: warm-up then measure).
    The drain (exact loss needs every acknowledged message accounted for) lasts while
    messages keep arriving, up to ``drain_timeout_s``, and ends early once none has arrived
    for ``drain_stall_s`` (``None``: never early).
    The pool is always stopped, whatever happens.
    """
    pool = WorkerPool(plan.engine, plan.log_path)
    errors = 0
    try:
        pool.start(plan.specs(), timeout_s=start_timeout_s)
        meter.watch_workers(pool.pids())
        started = time.monotonic()
        deadline = started + duration_s
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            # One tick = one second of every worker's stats (they ship once a second each).
            tick_end = min(now + 1.0, deadline)
            stats = []
            while (left := tick_end - time.monotonic()) > 0:
                stats.extend(pool.poll(timeout_s=left))
            elapsed = time.monotonic() - started
            tick = meter.add(stats, phase_of(elapsed) if phase_of else None)
            if tick is not None:
                errors += tick.stats.counters.get("send_errors", 0)
                if progress_tick:
                    progress_tick(meter.tps(tick), errors, tick.phase)
            if on_tick:
                on_tick(elapsed, pool)
            if until and until(elapsed):
                break
        pool.stop_producers()
        drained = pool.drain(timeout_s=drain_timeout_s, stall_s=drain_stall_s)
        note = "" if drained else drain_note(pool.drain_reports, drain_timeout_s, drain_stall_s)
        meter.add(pool.poll(0.0), "drain")
        ledgers = pool.ledgers()
        failures = pool.failures
        hooks: dict[str, Any] = {"worker_failures": failures} if failures else {}
        return LoadResult(ledgers, drained, drain_note=note, hook_results=hooks)
    except WorkerFailed as exc:
        raise BrokerUnavailable(f"the load could not start: {exc}") from exc
    finally:
        pool.stop()
