"""One step's measurements: per-second series, the measured window, resources, histograms.

Workers ship :class:`~bench.metrics.intervals.IntervalStats` about once a second. The runner
merges whatever arrived in a tick into one row of the series (counters add, histograms merge
exactly), tags it with its phase, and at the end derives the step's figures from the rows of
the measured window only: warm-up is kept in the series but never in a figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.engines.spec import H_E2E, H_PUBLISH, H_PUBLISH_INTENDED, WARMUP_COUNTER
from bench.metrics import histograms
from bench.metrics.intervals import IntervalStats, merge
from bench.metrics.resources import ResourceSampler, gc_pause_ms

WORKER_PREFIX = "worker/"
HOST_SATURATED_PCT = 90.0
CLIENT_SHARE = 1 / 3


def client_bound(
    host_cpu_pct: float | None, client_cpu_pct: float | None, broker_cpu_pct: float | None
) -> bool | None:
    """Whether a step's figures say as much about our load generator as about the broker: a
    maximum throughput is then a floor of the broker's, and latencies include our workers'
    queueing for CPU.

    True when the machine's CPU was saturated (at least :data:`HOST_SATURATED_PCT` % of all
    cores busy, on average over the window) and our worker processes used at least
    :data:`CLIENT_SHARE` of what they and the broker used together: the broker was then
    starved of CPU the client took. ``bench calibrate`` measured why this happens on small
    machines (the Python clients spend 5-10x the Java tools' CPU per message). None when the
    figures are missing.
    """
    if host_cpu_pct is None or client_cpu_pct is None or broker_cpu_pct is None:
        return None
    used = client_cpu_pct + broker_cpu_pct
    return host_cpu_pct >= HOST_SATURATED_PCT and used > 0 and client_cpu_pct / used >= CLIENT_SHARE


def latency(h: Any) -> dict[str, Any]:
    """A latency summary with the keys the results schema wants (microseconds)."""
    s = histograms.summary(h)
    return {k: s.get(k) for k in ("p50", "p90", "p99", "p999", "max", "count", "min", "mean")}


@dataclass
class Tick:
    """The merged stats of one tick and the phase it belongs to."""

    stats: IntervalStats
    phase: str


@dataclass
class StepMeter:
    """Collects one step's ticks and resource samples."""

    scenario: str
    step_id: str
    broker: str
    warmup_s: float
    t0_ns: int = field(default_factory=time.time_ns)
    ticks: list[Tick] = field(default_factory=list)
    sampler: ResourceSampler | None = None
    gc_logs: list[Path] = field(default_factory=list)
    _gc_start_ms: float = 0.0
    _gc_source: Callable[[], Iterable[Path]] | None = None

    def start_resources(
        self,
        pids: dict[str, int],
        gc_logs: Iterable[Path] | Callable[[], Iterable[Path]] = (),
    ) -> None:
        """Sample the broker (and worker) processes once a second until :meth:`stop_resources`.

        ``gc_logs``: the JVMs' GC logs, or a function listing them, asked again at the end so
        the log of a JVM restarted during the step (kill -9) counts too."""
        self.sampler = ResourceSampler(pids, interval_s=1.0)
        self.sampler.start()
        if callable(gc_logs):
            self._gc_source = gc_logs
        else:
            listed = list(gc_logs)
            self._gc_source = lambda: listed
        self.gc_logs = [p for p in self._gc_source() if p.is_file()]
        self._gc_start_ms = sum(gc_pause_ms(p) for p in self.gc_logs)

    def watch_workers(self, pids: dict[str, int]) -> None:
        """Sample the load generator's worker processes too (as ``worker/<id>``)."""
        if self.sampler is not None:
            for worker_id, pid in pids.items():
                self.sampler.watch(WORKER_PREFIX + worker_id, pid)

    def stop_resources(self) -> list[dict[str, Any]]:
        return self.sampler.stop() if self.sampler else []

    def add(self, stats: Sequence[IntervalStats], phase: str | None = None) -> Tick | None:
        """Merge one tick's stats (from any number of workers); None if nothing arrived."""
        if not stats:
            return None
        if phase is None:
            # Workers cut an interval exactly at the warm-up's end and flag those before it.
            warm = [s for s in stats if s.counters.get(WARMUP_COUNTER)]
            rest = [s for s in stats if not s.counters.get(WARMUP_COUNTER)]
            if warm:
                self.ticks.append(Tick(merge(warm), "warmup"))
            if not rest:
                return self.ticks[-1]
            stats, phase = rest, "measure"
        tick = Tick(merge(list(stats)), phase)
        self.ticks.append(tick)
        return tick

    @staticmethod
    def tps(tick: Tick) -> float:
        secs = max(1e-3, (tick.stats.end_ns - tick.stats.start_ns) / 1e9)
        return tick.stats.counters.get("acked", 0) / secs

    def series_rows(self) -> list[dict[str, Any]]:
        rows = []
        for tick in self.ticks:
            s = tick.stats
            pub = histograms.summary(s.histogram(H_PUBLISH))
            e2e = histograms.summary(s.histogram(H_E2E))
            rows.append(
                {
                    "scenario": self.scenario,
                    "step_id": self.step_id,
                    "broker": self.broker,
                    "t": s.end_ns / 1e9,
                    "elapsed_s": (s.end_ns - self.t0_ns) / 1e9,
                    "sent": s.counters.get("sent", 0),
                    "acked": s.counters.get("acked", 0),
                    "send_errors": s.counters.get("send_errors", 0),
                    "received": s.counters.get("received", 0),
                    "publish_p50_us": pub.get("p50"),
                    "publish_p99_us": pub.get("p99"),
                    "e2e_p99_us": e2e.get("p99"),
                    "phase": tick.phase,
                }
            )
        return rows

    def window(
        self, phases: Sequence[str] = ("measure",)
    ) -> tuple[IntervalStats | None, dict[str, float]]:
        """Merged stats over the ticks of ``phases`` and the window they span."""
        chosen = [t.stats for t in self.ticks if t.phase in phases]
        if not chosen:
            return None, {"start": self.t0_ns / 1e9, "end": self.t0_ns / 1e9}
        merged = merge(chosen)
        return merged, {"start": merged.start_ns / 1e9, "end": merged.end_ns / 1e9}

    def metrics(
        self, offered_rate_per_s: float | None, phases: Sequence[str] = ("measure",)
    ) -> tuple[dict[str, Any], dict[str, float]]:
        """The common figures of the measured window (DESIGN.md section 4)."""
        merged, window = self.window(phases)
        secs = max(1e-3, window["end"] - window["start"])
        c = merged.counters if merged else {}
        m: dict[str, Any] = {
            "offered_rate_per_s": offered_rate_per_s,
            "publish_tps": c.get("acked", 0) / secs if merged else 0.0,
            "consume_tps": c.get("received", 0) / secs if merged else 0.0,
            "sent": c.get("sent", 0),
            "acked": c.get("acked", 0),
            "received": c.get("received", 0),
            "foreign_received": c.get("foreign", 0),
            "send_errors": c.get("send_errors", 0),
            "errors_by_kind": dict(merged.errors) if merged else {},
            "publish_latency_us": latency(
                merged.histogram(H_PUBLISH) if merged else histograms.new_histogram()
            ),
            "publish_intended_latency_us": latency(
                merged.histogram(H_PUBLISH_INTENDED) if merged else histograms.new_histogram()
            ),
            "e2e_latency_us": latency(
                merged.histogram(H_E2E) if merged else histograms.new_histogram()
            ),
        }
        return m, window

    def all_histograms(self, phases: Sequence[str] = ("measure",)) -> dict[str, str]:
        merged, _ = self.window(phases)
        return dict(merged.histograms) if merged else {}

    def resource_metrics(
        self, rows: list[dict[str, Any]], window: dict[str, float], broker_names: Iterable[str]
    ) -> dict[str, Any]:
        """Broker CPU (mean), RSS/threads/open files (max), host network, disk and CPU (mean),
        our workers' CPU (mean), whether the step was client-bound (:func:`client_bound`), and
        the JVMs' GC pause time during the step."""
        names = set(broker_names)
        lo, hi = window["start"] * 1e9, window["end"] * 1e9
        inside = [r for r in rows if lo <= r["ts_ns"] <= hi] or rows
        procs = [
            r
            for r in inside
            if r.get("kind") == "process" and r.get("name") in names and r.get("alive")
        ]
        host = [r for r in inside if r.get("kind") == "host"]

        def mean(vals: list[float]) -> float | None:
            return sum(vals) / len(vals) if vals else None

        # Sum over broker processes per sample time, then average over time.
        cpu_by_ts: dict[int, float] = {}
        for r in procs:
            cpu_by_ts[r["ts_ns"]] = cpu_by_ts.get(r["ts_ns"], 0.0) + (r["cpu_percent"] or 0.0)
        client_by_ts: dict[int, float] = {}
        for r in inside:
            if r.get("kind") == "process" and str(r.get("name", "")).startswith(WORKER_PREFIX):
                ts = r["ts_ns"]
                client_by_ts[ts] = client_by_ts.get(ts, 0.0) + (r.get("cpu_percent") or 0.0)
        broker_cpu = mean(list(cpu_by_ts.values()))
        client_cpu = mean(list(client_by_ts.values()))
        host_cpu = mean([r["cpu_percent"] for r in host if r.get("cpu_percent") is not None])
        logs = [p for p in (self._gc_source() if self._gc_source else self.gc_logs) if p.is_file()]
        # No GC log read: the pause time is not known (None), never 0.
        gc_end = sum(gc_pause_ms(p) for p in logs) if logs else None
        return {
            "broker_cpu_pct": broker_cpu,
            "client_cpu_pct": client_cpu,
            "host_cpu_pct": host_cpu,
            "client_bound": client_bound(host_cpu, client_cpu, broker_cpu),
            "broker_rss_bytes": max((r["rss_bytes"] for r in procs), default=None),
            "broker_threads": max((r["threads"] for r in procs), default=None),
            "broker_open_files": max((r["open_files"] for r in procs), default=None),
            "host_net_bytes_per_s": mean([r["net_bytes_per_s"] for r in host]),
            "host_disk_write_bytes_per_s": mean([r["disk_write_bytes_per_s"] for r in host]),
            "gc_pause_ms": None if gc_end is None else max(0.0, gc_end - self._gc_start_ms),
        }
