"""Faults on brokers the suite did not start: the target's own commands, or the Kubernetes API.

A command is an argv template from the targets file with its placeholders filled, run without a
shell and bounded by the target's ``timeout_s``. Times are :func:`bench.clock.now` readings, as
for local faults: the kill time is when the kill command had returned (the event also records how
long it took), a restart's time is when the process answered again.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import clock
from bench.errors import BrokerStartError, ConfigError
from bench.targets.model import Faults, PulsarTarget, RocketMQTarget

UP_POLL_S = 0.5


def _run(argv: list[str], timeout_s: float, what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ConfigError(f"{what}: program {argv[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise BrokerStartError(f"{what}: {argv[0]} did not finish within {timeout_s:g} s") from None


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:200] if lines else ""


@dataclass
class Restarted:
    """A process seen back (mirrors :class:`bench.infra.process.Supervisor`'s events)."""

    at: float
    kind: str = "restarted"
    pid: int | None = None


@dataclass
class UpWatcher:
    """Watches a killed process until the platform brings it back (``supervised`` on a target
    whose processes restart by themselves), polling ``is_up``."""

    is_up: Callable[[], bool]
    poll_s: float = UP_POLL_S
    events: list[Restarted] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, after: float = 1.0) -> UpWatcher:
        self._after = after
        self._thread = threading.Thread(target=self._run, name="target-up-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        # A pod being deleted still answers for a moment: look only after the grace.
        if self._stop.wait(self._after):
            return
        while not self._stop.is_set():
            try:
                if self.is_up():
                    self.events.append(Restarted(clock.now()))
                    return
            except Exception:  # a probe that fails means "not up yet"
                pass
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class TargetFaults:
    """kill -9, restart and "is it up" for one target's processes."""

    def __init__(self, target: PulsarTarget | RocketMQTarget) -> None:
        if target.faults is None:
            raise ConfigError(
                f"target {target.name}: no `faults` section: kill -9 recovery needs the "
                "commands (or the Kubernetes API settings) to kill and restart its brokers"
            )
        self.target = target
        self.faults: Faults = target.faults
        self._k8s = None
        if self.faults.kubernetes is not None and self.faults.kill is None:
            from bench.k8s.faults import PodFaults

            self._k8s = PodFaults(self.faults.kubernetes)

    def _local(self, name: str) -> str:
        """``pulsar/broker-1`` or ``broker-1`` -> ``broker-1`` (a name of the file's)."""
        short = name.split("/", 1)[1] if name.startswith(self.target.broker + "/") else name
        if short not in self.faults.processes:
            known = ", ".join(sorted(self.faults.processes))
            raise ConfigError(f"target {self.target.name}: no process {short!r}; known: {known}")
        return short

    def victims(self) -> list[str]:
        """Process names as the runner knows them (``<broker>/<name>``)."""
        return [f"{self.target.broker}/{n}" for n in self.faults.processes]

    def serves(self, name: str) -> str | None:
        """host:port of the broker service ``name`` runs (to match a topic's owner)."""
        return self.faults.processes[self._local(name)].serves

    def _command(self, which: str, name: str) -> None:
        short = self._local(name)
        argv = self.faults.argv(which, short)  # type: ignore[arg-type]
        if argv is None:
            raise ConfigError(f"target {self.target.name}: no `{which}` command in its faults")
        what = f"target {self.target.name}: {which} {short}"
        done = _run(argv, self.faults.timeout_s, what)
        if done.returncode != 0:
            tail = _last_line(done.stderr) or _last_line(done.stdout)
            raise BrokerStartError(f"{what}: {argv[0]} exited {done.returncode}: {tail}")

    def kill9(self, name: str) -> tuple[float, float]:
        """Kill ``name`` hard; return (when the kill had surely happened: the command's end,
        seconds the command took). A local kill is timed at the signal; a command may take a
        while to start (``ssh``, ``kubectl``), and a send acknowledged meanwhile must not count
        as one made after the kill."""
        short = self._local(name)
        started = clock.now()
        if self._k8s is not None:
            pod = self.faults.processes[short].vars[self.faults.kubernetes.pod_var]  # type: ignore[union-attr]
            self._k8s.delete_pod(pod)
        else:
            self._command("kill", short)
        ended = clock.now()
        return ended, ended - started

    def can_restart(self) -> bool:
        """True when the target has a restart command."""
        return self.faults.restart is not None

    def can_tell_up(self) -> bool:
        """True when the target can say whether a process is up (``is_up`` or the API)."""
        return self.faults.is_up is not None or self._k8s is not None

    def is_up(self, name: str) -> bool:
        """True when ``name`` serves (``is_up`` exits 0, or its pod is Ready)."""
        short = self._local(name)
        if self.faults.is_up is not None:
            argv = self.faults.argv("is_up", short)
            assert argv is not None
            return _run(argv, self.faults.timeout_s, f"target {self.target.name}").returncode == 0
        if self._k8s is not None:
            pod = self.faults.processes[short].vars[self.faults.kubernetes.pod_var]  # type: ignore[union-attr]
            return self._k8s.pod_ready(pod)
        raise ConfigError(f"target {self.target.name}: no `is_up` command in its faults")

    def restart(self, name: str) -> float:
        """Run the restart command, then wait (bounded) until ``is_up`` says it serves;
        return when it did."""
        self._command("restart", name)
        deadline = time.monotonic() + self.faults.timeout_s
        while self.can_tell_up() and not self.is_up(name):
            if time.monotonic() >= deadline:
                raise BrokerStartError(
                    f"target {self.target.name}: {self._local(name)} not up "
                    f"{self.faults.timeout_s:g} s after its restart"
                )
            time.sleep(UP_POLL_S)
        return clock.now()

    def watch(self, name: str) -> UpWatcher:
        """Start watching ``name`` come back by itself."""
        return UpWatcher(lambda: self.is_up(name)).start()
