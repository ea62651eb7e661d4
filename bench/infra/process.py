"""Broker processes: start, stop by PID, kill -9, restart on the same data, supervise.

Every process the suite starts is a :class:`ProcessSpec` (what to run) and, once started, a
:class:`ProcessRecord` (what runs: PID, start time in clock ticks since boot and command line, so
a recycled PID is never mistaken for ours). Stopping goes by that record only, never by a name
pattern.

The start time is field 22 of ``/proc/PID/stat``, counted in clock ticks from boot. It never
moves. psutil's ``create_time()`` is that count added to the boot time, which the kernel derives
from the wall clock: on a freshly booted machine whose clock is still being adjusted it moved by
~14 s within minutes, and a record matched by it within 1 s lost its JVM. Signals go through a
pidfd opened and then checked against the record, so the PID cannot be recycled in between.
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
from typing import Any

import psutil

from bench import clock
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
    # A RocketMQ broker opens its port before it registers with the name server ("host:port"
    # here): it is ready once the name server lists it, else a proxy started next finds an
    # empty cluster and exits ("create system broadcast topic ... failed").
    registers_with: str = ""

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


@dataclass(frozen=True)
class Identity:
    """What tells one process from any later holder of its PID: neither moves with the clock."""

    start_ticks: int  # /proc/PID/stat field 22: clock ticks from boot to the process's start
    cmdline: tuple[str, ...]
    zombie: bool = False


def identity(pid: int) -> Identity | None:
    """The identity of ``pid`` read from /proc, or None if no such process exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the
    # last ')'. What follows starts at field 3 (state); field 22 is index 19 there.
    rest = stat[stat.rfind(")") + 2 :].split()
    if len(rest) < 20:
        return None
    cmdline = tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])
    return Identity(int(rest[19]), cmdline, zombie=rest[0] in ("Z", "X"))


@dataclass
class ProcessRecord:
    """A started process: enough to find it again, and only it."""

    name: str
    pid: int
    start_ticks: int
    cmdline: tuple[str, ...]
    started_at: float  # time.time(), for people reading the state file; never compared

    def matches(self, ident: Identity | None) -> bool:
        """True if ``ident`` is this record's process, still running."""
        # A live process's /proc cmdline can read empty for a moment (a busy JVM was seen so):
        # its start ticks alone then identify it, since a PID is not reused within one tick.
        return (
            ident is not None
            and not ident.zombie
            and ident.start_ticks == self.start_ticks
            and (ident.cmdline == self.cmdline or not ident.cmdline)
        )

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited or the PID now belongs to someone else."""
        if not self.matches(identity(self.pid)):
            return None
        try:
            return psutil.Process(self.pid)
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.matches(identity(self.pid))

    def to_json(self) -> dict[str, object]:
        return {
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "cmdline": list(self.cmdline),
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> ProcessRecord | None:
        """A record from the state file; None for a record written before start ticks were
        kept (its create time moves with the clock, so it cannot identify the process)."""
        if "start_ticks" not in data:
            return None
        return cls(
            name,
            int(data["pid"]),
            int(data["start_ticks"]),
            tuple(str(a) for a in data.get("cmdline", ())),
            float(data.get("started_at", 0.0)),
        )


def signal_process(record: ProcessRecord, sig: int) -> bool:
    """Send ``sig`` to the record's process only; False if it is not running (any more).

    The pidfd pins the process: once it is open, the PID cannot pass to another process, so
    checking the identity after opening it and signalling through it cannot hit a stranger.
    """
    try:
        fd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return False
    try:
        if not record.matches(identity(record.pid)):
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


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
    _collect()
    _children[popen.pid] = popen
    # Right after the exec /proc may show an empty command line for a moment: read until it
    # is there (bounded; a process that exited at once gets a record that matches nothing).
    ident = identity(popen.pid)
    deadline = time.monotonic() + 2.0
    while ident is not None and not ident.cmdline and time.monotonic() < deadline:
        time.sleep(0.005)
        ident = identity(popen.pid)
    if ident is None or not ident.cmdline:
        ident = Identity(-1, tuple(spec.argv))
    return ProcessRecord(spec.name, popen.pid, ident.start_ticks, ident.cmdline, time.time())


def _reap(pid: int) -> None:
    """Reap ``pid`` if it has exited; one still exiting (a SIGKILLed JVM frees its heap first,
    which took over 0.5 s on a loaded machine) stays in :data:`_children` to be reaped later:
    a dropped ``Popen`` of a running process is never waited for (and warns)."""
    popen = _children.get(pid)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=0.5)
    _collect()


def _collect() -> None:
    """Forget the children that have exited (``poll`` reaps them)."""
    for pid, popen in list(_children.items()):
        if popen.poll() is not None:
            _children.pop(pid, None)


def wait_exit(record: ProcessRecord, timeout_s: float) -> bool:
    """Wait for the process to exit; True if it did (a child of ours is reaped too)."""
    deadline = time.monotonic() + timeout_s
    while record.alive():
        popen = _children.get(record.pid)
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
        else:
            time.sleep(0.05)
        if time.monotonic() >= deadline and record.alive():
            return False
    _reap(record.pid)
    return True


def stop(record: ProcessRecord, timeout_s: float = 30.0) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL (``timeout_s`` 0: SIGKILL at once):
    stops exactly this process and waits until it is gone."""
    first = signal.SIGTERM if timeout_s > 0 else signal.SIGKILL
    if not signal_process(record, first):
        _reap(record.pid)
        return
    if first == signal.SIGTERM and wait_exit(record, timeout_s):
        return
    if first == signal.SIGTERM:
        signal_process(record, signal.SIGKILL)
    wait_exit(record, 15.0)


def kill9(record: ProcessRecord) -> float:
    """SIGKILL the process; return the time of the kill (a :func:`bench.clock.now` reading)."""
    killed_at = clock.now()
    if not signal_process(record, signal.SIGKILL):
        raise BrokerStartError(f"{record.name} (pid {record.pid}) is not running; nothing to kill")
    wait_exit(record, 15.0)
    return killed_at


@dataclass
class SupervisorEvent:
    """One thing the supervisor saw or did, with its time (a :func:`bench.clock.now` reading)."""

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
            if self.record.alive() or (self._stop.wait(0.05) or self.record.alive()):
                # Dead means dead twice, 50 ms apart: one odd read of /proc is no death.
                self._stop.wait(self._poll_s)
                continue
            _reap(self.record.pid)
            self.events.append(SupervisorEvent(self.name, "died", clock.now(), self.record.pid))
            restarts += 1
            try:
                self.record = self._restart(self.name)
            except Exception as exc:
                self.events.append(
                    SupervisorEvent(self.name, "restart_failed", clock.now(), detail=str(exc))
                )
                self._stop.wait(1.0)
                continue
            self.events.append(
                SupervisorEvent(self.name, "restarted", clock.now(), self.record.pid)
            )
