"""Broker processes: start, stop by PID, kill -9, restart on the same data, supervise.

Every process the suite starts is a :class:`ProcessSpec` (what to run) and, once started, a
:class:`ProcessRecord` (what runs: PID and psutil create time, so a recycled PID is never
mistaken for ours). Stopping goes by that record only, never by a name pattern.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.errors import BrokerStartError


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one broker-side process (a JVM, usually)."""

    name: str  # unique within an infra, e.g. "pulsar/broker-1"
    argv: tuple[str, ...]
    cwd: str
    log: str  # stdout+stderr go here (appended across restarts)
    ports: dict[str, int] = field(default_factory=dict)  # label -> port on 127.0.0.1
    env: dict[str, str] = field(default_factory=dict)
    data_dirs: tuple[str, ...] = ()
    ready_port: int | None = None  # accepting here means the process is up
    killable: bool = True  # a broker the kill -9 scenario may target
    # Processes of one non-empty stop group are peers (the brokers of a cluster): `down` stops
    # them at once. A RocketMQ broker's own shutdown takes ~20 s; one after another, 40.
    stop_group: str = ""

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        data["data_dirs"] = list(self.data_dirs)
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ProcessSpec:
        values = dict(data)
        values["argv"] = tuple(values["argv"])  # type: ignore[arg-type]
        values["data_dirs"] = tuple(values.get("data_dirs", ()))  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class ProcessRecord:
    """A started process: enough to find it again, and only it."""

    name: str
    pid: int
    create_time: float
    started_at: float  # time.time()

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited or the PID now belongs to someone else."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def tail(path: str | Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_children: dict[int, subprocess.Popen[bytes]] = {}


def start(spec: ProcessSpec) -> ProcessRecord:
    """Start ``spec`` in its own session (so a terminal's Ctrl-C reaches the suite, which then
    stops the brokers in order, rather than killing them mid-write) and return its record."""
    Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
    Path(spec.cwd).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **spec.env}
    with open(spec.log, "ab") as log:
        log.write(f"\n=== bench: starting {spec.name} at {time.ctime()} ===\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(spec.argv),
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise BrokerStartError(f"cannot start {spec.name}: {exc}") from exc
    _children[popen.pid] = popen
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        create_time = time.time()
    return ProcessRecord(spec.name, popen.pid, create_time, time.time())


def _reap(pid: int) -> None:
    popen = _children.pop(pid, None)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=0.5)


def wait_exit(record: ProcessRecord, timeout_s: float) -> bool:
    """Wait for the process to exit; True if it did."""
    proc = record.process()
    if proc is None:
        _reap(record.pid)
        return True
    try:
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        return False
    except psutil.Error:
        pass
    _reap(record.pid)
    return True


def stop(record: ProcessRecord, timeout_s: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL: stops exactly this process and waits until it is gone."""
    proc = record.process()
    if proc is None:
        _reap(record.pid)
        return
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signal.SIGTERM)
    if not wait_exit(record, timeout_s):
        with contextlib.suppress(psutil.Error):
            proc.kill()
        wait_exit(record, 15.0)


def kill9(record: ProcessRecord) -> float:
    """SIGKILL the process; return the wall-clock time of the kill (``time.time()``)."""
    proc = record.process()
    if proc is None:
        raise BrokerStartError(f"{record.name} (pid {record.pid}) is not running; nothing to kill")
    killed_at = time.time()
    proc.kill()
    wait_exit(record, 15.0)
    return killed_at


@dataclass
class SupervisorEvent:
    """One thing the supervisor saw or did, with its wall-clock time."""

    name: str
    kind: str  # "died" | "restarted" | "restart_failed"
    at: float
    pid: int | None = None
    detail: str = ""


class Supervisor:
    """A liveness-probe stand-in: polls a process and restarts it as soon as it dies.

    ``restart`` is called with the process name and must return the new record (it also waits
    for readiness, so "restarted" is stamped when the broker is usable again).
    """

    def __init__(
        self,
        name: str,
        record: ProcessRecord,
        restart: Callable[[str], ProcessRecord],
        *,
        poll_s: float = 0.1,
        max_restarts: int = 10,
    ) -> None:
        self.name = name
        self.record = record
        self._restart = restart
        self._poll_s = poll_s
        self._max_restarts = max_restarts
        self.events: list[SupervisorEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"supervise-{name}", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        restarts = 0
        while not self._stop.is_set() and restarts < self._max_restarts:
            if self.record.alive():
                self._stop.wait(self._poll_s)
                continue
            _reap(self.record.pid)
            self.events.append(SupervisorEvent(self.name, "died", time.time(), self.record.pid))
            restarts += 1
            try:
                self.record = self._restart(self.name)
            except Exception as exc:
                self.events.append(
                    SupervisorEvent(self.name, "restart_failed", time.time(), detail=str(exc))
                )
                self._stop.wait(1.0)
                continue
            self.events.append(
                SupervisorEvent(self.name, "restarted", time.time(), self.record.pid)
            )
