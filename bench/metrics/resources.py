"""Resource figures: why a curve bends (DESIGN.md section 4).

:class:`ResourceSampler` reads, per watched process, CPU %, RSS, threads and open files, and for
the host network and disk write throughput. :func:`gc_pause_ms` sums the pauses in a JVM
unified-logging GC log.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import psutil


class ResourceSampler:
    """Samples watched processes and the host, on demand or from a background thread.

    ``pids`` maps a name (``"pulsar-broker"``, ``"worker-0"``...) to a PID. Rates (CPU %, bytes/s)
    cover the time since the previous sample, or since construction for the first one.
    """

    def __init__(self, pids: dict[str, int], interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._procs: dict[str, tuple[int, psutil.Process | None]] = {}
        for name, pid in pids.items():
            self.watch(name, pid)
        self._last_t = time.monotonic()
        self._last_net = psutil.net_io_counters(pernic=True)
        self._last_cpu = psutil.cpu_times()
        self._last_disk = psutil.disk_io_counters()
        self._rows: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None

    def watch(self, name: str, pid: int) -> None:
        """Watch ``pid`` under ``name`` from now on, replacing any earlier PID of that name.

        Used when a broker restarts under a new PID; a PID that does not exist is reported as
        dead rather than raising.
        """
        proc: psutil.Process | None
        try:
            proc = psutil.Process(pid)
            proc.cpu_percent(None)  # the first call only sets psutil's baseline
        except psutil.NoSuchProcess:
            proc = None
        with self._lock:
            self._procs[name] = (pid, proc)

    def sample(self) -> list[dict[str, Any]]:
        """Return one row per watched process and one host row, all with ``ts_ns``.

        Process row: ``kind="process"``, name, pid, alive, cpu_percent (100 = one core),
        rss_bytes, threads, open_files (file descriptors); a process that has died (or become a
        zombie) gives ``alive=False`` and None for the figures. Host row: ``kind="host"``,
        interval_s, net_bytes_per_s (sent + received over all interfaces, loopback included:
        on one machine the brokers' traffic is on ``lo``), net_sent_bytes_per_s,
        net_recv_bytes_per_s, net_if_bytes_per_s (per interface), disk_write_bytes_per_s
        (None where the host exposes no disk counters) and cpu_percent (all cores busy = 100).
        """
        with self._lock:
            ts_ns = time.time_ns()
            rows = [self._process_row(ts_ns, n, pid, p) for n, (pid, p) in self._procs.items()]
            rows.append(self._host_row(ts_ns))
            return rows

    def _process_row(
        self, ts_ns: int, name: str, pid: int, proc: psutil.Process | None
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"kind": "process", "ts_ns": ts_ns, "name": name, "pid": pid}
        dead = {
            "alive": False,
            "cpu_percent": None,
            "rss_bytes": None,
            "threads": None,
            "open_files": None,
        }
        # is_running() also compares the creation time, so a reused PID reads as dead.
        if proc is None or not proc.is_running():
            return row | dead
        try:
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    return row | dead
                return row | {
                    "alive": True,
                    "cpu_percent": proc.cpu_percent(None),
                    "rss_bytes": proc.memory_info().rss,
                    "threads": proc.num_threads(),
                    "open_files": proc.num_fds(),
                }
        except psutil.NoSuchProcess:  # died while being read (ZombieProcess is a subclass)
            return row | dead

    def _host_row(self, ts_ns: int) -> dict[str, Any]:
        now = time.monotonic()
        net = psutil.net_io_counters(pernic=True)
        disk = psutil.disk_io_counters()
        cpu = psutil.cpu_times()
        elapsed = max(now - self._last_t, 1e-9)
        per_if: dict[str, float] = {}
        sent = recv = 0
        for nic, c in net.items():
            before = self._last_net.get(nic)
            if before is None:  # an interface that appeared since the last sample
                continue
            d_sent = c.bytes_sent - before.bytes_sent
            d_recv = c.bytes_recv - before.bytes_recv
            per_if[nic] = (d_sent + d_recv) / elapsed
            sent += d_sent
            recv += d_recv
        disk_rate = None
        if disk is not None and self._last_disk is not None:
            disk_rate = (disk.write_bytes - self._last_disk.write_bytes) / elapsed
        busy_before = sum(self._last_cpu) - _idle(self._last_cpu)
        total = sum(cpu) - sum(self._last_cpu)
        busy = (sum(cpu) - _idle(cpu)) - busy_before
        cpu_pct = 100.0 * busy / total if total > 0 else None
        self._last_t, self._last_net, self._last_disk, self._last_cpu = now, net, disk, cpu
        return {
            "kind": "host",
            "ts_ns": ts_ns,
            "name": "host",
            "interval_s": elapsed,
            "net_bytes_per_s": (sent + recv) / elapsed,
            "net_sent_bytes_per_s": sent / elapsed,
            "net_recv_bytes_per_s": recv / elapsed,
            "net_if_bytes_per_s": per_if,
            "disk_write_bytes_per_s": disk_rate,
            "cpu_percent": cpu_pct,
        }

    def start(self) -> None:
        """Sample every ``interval_s`` on a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the sampler is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                rows = self.sample()
                with self._lock:
                    self._rows.extend(rows)
        except BaseException as exc:  # handed to stop(), which re-raises it in the caller
            self._thread_error = exc

    def stop(self, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Stop the thread and return every row it collected (a copy).

        Re-raises an error the thread hit; raises RuntimeError if it does not stop in time.
        """
        if self._thread is None:
            raise RuntimeError("the sampler is not running")
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"resource sampler thread did not stop within {timeout_s} s")
        self._thread = None
        if self._thread_error is not None:
            raise self._thread_error
        return self.rows()

    def rows(self) -> list[dict[str, Any]]:
        """Return the rows the background thread has collected so far (a copy)."""
        with self._lock:
            return list(self._rows)


def _idle(t: Any) -> float:
    """Idle time of a ``psutil.cpu_times()`` reading (iowait counts as idle: no CPU is used)."""
    return float(t.idle) + float(getattr(t, "iowait", 0.0))


class CpuMeter:
    """Cumulative CPU seconds (user + system) of groups of processes, read every
    ``interval_s`` on a daemon thread, so the CPU a group used over any window of the run can be
    asked for afterwards (``bench calibrate``: client and broker CPU per message).

    A process that exits keeps its last reading; one that cannot be read is left out.
    """

    def __init__(self, interval_s: float = 0.5) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, not {interval_s}")
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._procs: dict[tuple[str, int], psutil.Process] = {}
        self._samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, group: str, pid: int) -> None:
        """Count ``pid``'s CPU in ``group`` from now on (read once at once)."""
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        with self._lock:
            self._procs[(group, pid)] = proc
            self._samples.setdefault((group, pid), [])
        self._read_one((group, pid), proc)

    def _read_one(self, key: tuple[str, int], proc: psutil.Process) -> None:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            with self._lock:
                self._procs.pop(key, None)
            return
        now = time.monotonic()
        with self._lock:
            self._samples[key].append((now, t.user + t.system))

    def read(self) -> None:
        """Read every watched process now."""
        with self._lock:
            procs = list(self._procs.items())
        for key, proc in procs:
            self._read_one(key, proc)

    def __enter__(self) -> CpuMeter:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.read()

    def cores(self, group: str, t0: float, t1: float) -> float | None:
        """Mean cores ``group`` used between monotonic times ``t0`` and ``t1`` (1.0 = one core
        busy): per process, the CPU between its last readings at or before ``t0`` and ``t1``
        over the time between them; None if no process of the group was read across the window.
        """
        total = 0.0
        seen = False
        with self._lock:
            series = [v for (g, _), v in self._samples.items() if g == group]
        for samples in series:
            before = [s for s in samples if s[0] <= t0]
            upto = [s for s in samples if s[0] <= t1]
            if not before or not upto or upto[-1][0] <= before[-1][0]:
                continue
            (a_t, a_cpu), (b_t, b_cpu) = before[-1], upto[-1]
            total += (b_cpu - a_cpu) / (b_t - a_t)
            seen = True
        return total if seen else None


# A pause line of unified GC logging (-Xlog:gc), e.g.
# [2.345s][info][gc] GC(3) Pause Young (Normal) (G1 Evacuation Pause) 24M->8M(256M) 3.456ms
# Concurrent phases ("Concurrent Mark Cycle 12.3ms") and phase details ("[gc,phases] ...") are
# not stop-the-world pauses of the whole JVM and do not match.
_GC_PAUSE = re.compile(r"\]\s*GC\(\d+\)\s+Pause\b.*?\s(\d+(?:\.\d+)?)ms\s*$")


def gc_pause_ms(path: str | Path) -> float:
    """Return the total stop-the-world pause time, in ms, logged in a JVM GC log.

    The log is the one ``-Xlog:gc:file=<path>`` (or ``gc*``) writes. A missing file raises
    FileNotFoundError: the JVM was started without the log the result claims.
    """
    total = 0.0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _GC_PAUSE.search(line)
            if m:
                total += float(m.group(1))
    return total
