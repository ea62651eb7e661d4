"""``Infra``: brings brokers up healthy, reports status, injects faults, and stops them.

State lives in ``<infra dir>/state.json`` (versioned): the settings, each broker's endpoints and
process specs, and the PID record of every process started. ``down`` and every fault act on those
records only, so nothing the suite did not start is ever signalled.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psutil

from bench.errors import BenchError, BrokerStartError, BrokerUnavailable, ConfigError
from bench.infra import disk, health
from bench.infra.artifacts import ensure_classpath, pinned_version
from bench.infra.java import find_java
from bench.infra.paths import default_infra_dir
from bench.infra.ports import accepts, ensure_free, is_free, listener_pid, wait_closed
from bench.infra.process import (
    ProcessRecord,
    ProcessSpec,
    Supervisor,
    identity,
    kill9,
    start,
    stop,
    tail,
)
from bench.infra.topology import (
    Broker,
    Endpoints,
    InfraSettings,
    Plan,
    pulsar_plan,
    rocketmq_plan,
    tmp_dir,
    wipe,
)

STATE_SCHEMA_VERSION = 1
PROCESS_READY_TIMEOUT_S = 180.0
HEALTH_TIMEOUT_S = 120.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _stop_group(spec: ProcessSpec | None, name: str) -> str:
    """Peers stopped at once share a key; any other process is a group of its own."""
    if spec and spec.stop_group:
        return f"group:{name.split('/', 1)[0]}/{spec.stop_group}"
    return f"process:{name}"


def _empty_tmp(broker_root: Path) -> None:
    """Empty a broker's JVM temp dir; only called while none of its processes runs."""
    tmp = tmp_dir(broker_root)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)


@dataclass
class BrokerState:
    """One broker's part of the state file."""

    endpoints: dict[str, Any]
    specs: list[dict[str, Any]]
    records: dict[str, dict[str, float | int | str]] = field(default_factory=dict)
    version: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def _non_loopback_listeners(rec: ProcessRecord) -> list[str]:
    """Listening sockets of a process that are not bound to loopback (``addr:port``).

    RocketMQ 5.3.3 has no setting to bind its proxy's gRPC and remoting servers or the broker's
    HA port to an address; they listen on every interface. Status shows them rather than hide it.
    """
    proc = rec.process()
    if proc is None:
        return []
    try:
        conns = proc.net_connections(kind="inet")
    except psutil.Error:
        return []
    out = []
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr:
            ip = c.laddr.ip
            if not (ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1")):
                out.append(f"{ip}:{c.laddr.port}")
    return sorted(set(out))


class Infra:
    """The brokers of one infra directory."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else default_infra_dir()
        self.state_path = self.root / "state.json"

    # -- state -----------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if not self.state_path.is_file():
            return {"schema_version": STATE_SCHEMA_VERSION, "brokers": {}}
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.state_path}: unreadable infra state ({exc})") from exc
        if data.get("schema_version") != STATE_SCHEMA_VERSION:
            raise ConfigError(
                f"{self.state_path}: schema_version {data.get('schema_version')!r} is not "
                f"understood (this bench writes {STATE_SCHEMA_VERSION}); remove the directory"
            )
        return dict(data)

    def _save(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.state_path)

    def _brokers(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]], data.setdefault("brokers", {}))

    def settings(self) -> InfraSettings | None:
        """The settings of the running infra, if any."""
        raw = self._load().get("settings")
        if not isinstance(raw, dict):
            return None
        values = dict(raw)
        values["brokers"] = tuple(values.get("brokers", ()))
        return InfraSettings(**values)

    def endpoints(self, broker: Broker) -> Endpoints:
        """How to reach ``broker``; raises if it is not up in this infra."""
        entry = self._brokers(self._load()).get(broker)
        if not entry:
            raise BrokerStartError(
                f"{broker} is not up in {self.root}; run `bench infra up {broker}` first"
            )
        raw = dict(entry["endpoints"])
        raw["admin_urls"] = tuple(raw.get("admin_urls", ()))
        return Endpoints(**raw)

    def records(self) -> dict[str, ProcessRecord]:
        """Every process this infra started and still tracks, by name."""
        out: dict[str, ProcessRecord] = {}
        for entry in self._brokers(self._load()).values():
            for name, raw in entry.get("records", {}).items():
                rec = ProcessRecord.from_json(name, raw)
                if rec is not None:
                    out[name] = rec
        return out

    def specs(self) -> dict[str, ProcessSpec]:
        out: dict[str, ProcessSpec] = {}
        for entry in self._brokers(self._load()).values():
            for raw in entry.get("specs", []):
                spec = ProcessSpec.from_json(raw)
                out[spec.name] = spec
        return out

    def pids(self) -> dict[str, int]:
        """PIDs of the live processes, by name (for resource sampling)."""
        return {name: rec.pid for name, rec in self.records().items() if rec.alive()}

    def _set_record(self, rec: ProcessRecord | None, name: str) -> None:
        data = self._load()
        broker = name.split("/", 1)[0]
        entry = self._brokers(data).get(broker)
        if entry is None:
            return
        records = entry.setdefault("records", {})
        assert isinstance(records, dict)
        if rec is None:
            records.pop(name, None)
        else:
            records[name] = rec.to_json()
        self._save(data)

    # -- up / down -------------------------------------------------------------------------
    def up(
        self,
        settings: InfraSettings,
        *,
        fresh: bool = False,
        progress: Progress = _quiet,
    ) -> dict[str, dict[str, float]]:
        """Start ``settings.brokers`` and wait until each is healthy; return timings per broker.

        Anything started by this call is stopped again if a later step fails.
        """
        data = self._load()
        running = [n for n, r in self.records().items() if r.alive()]
        if running:
            raise BrokerStartError(
                f"brokers already run from {self.root} ({', '.join(sorted(running))}); "
                "run `bench infra down` first"
            )
        disk.check(self.root, settings.brokers)
        java = find_java()
        data = {
            "schema_version": STATE_SCHEMA_VERSION,
            "brokers": {},
            "settings": settings.to_json(),
            "java": java.version,
            "started_at": time.time(),
        }
        self._save(data)
        timings: dict[str, dict[str, float]] = {}
        try:
            for broker in settings.brokers:
                timings[broker] = self._up_broker(
                    broker, settings, java.executable, fresh, progress
                )
        except BaseException:
            self.down()  # the error itself is the message; nothing started is left running
            raise
        return timings

    def _plan(self, broker: Broker, settings: InfraSettings, java: str) -> tuple[Plan, float]:
        runtime = "pulsar" if broker == "pulsar" else "rocketmq"
        cp = ensure_classpath(runtime)
        root = self.root / broker
        build = pulsar_plan if broker == "pulsar" else rocketmq_plan
        return build(settings, root, java, cp.joined()), cp.resolve_seconds

    def _up_broker(
        self, broker: Broker, settings: InfraSettings, java: str, fresh: bool, progress: Progress
    ) -> dict[str, float]:
        t0 = time.monotonic()
        if fresh:
            wipe(self.root / broker)
        _empty_tmp(self.root / broker)
        plan, resolve_s = self._plan(broker, settings, java)
        ports = {label: p for spec in plan.specs for label, p in spec.ports.items()}
        ensure_free(ports)
        data = self._load()
        runtime = "pulsar" if broker == "pulsar" else "rocketmq"
        self._brokers(data)[broker] = {
            "endpoints": plan.endpoints.to_json(),
            "specs": [s.to_json() for s in plan.specs],
            "records": {},
            "version": pinned_version(runtime),
        }
        self._save(data)
        t_start = time.monotonic()
        for spec in plan.specs:
            progress(f"starting {spec.name}")
            self._start_ready(spec)
            oneshot = plan.oneshot_after.get(spec.name)
            if oneshot:
                progress(f"running {oneshot.name}")
                self._run_once(oneshot)
        progress(f"checking {broker} with a produce/consume round trip")
        self.check_health(broker)
        done = time.monotonic()
        timings = {
            "resolve_s": resolve_s,
            "start_to_healthy_s": done - t_start,
            "total_s": done - t0,
        }
        data = self._load()
        entry = self._brokers(data)[broker]
        entry["timings"] = timings
        self._save(data)
        progress(f"{broker} healthy in {timings['start_to_healthy_s']:.1f} s")
        return timings

    def _start_ready(
        self, spec: ProcessSpec, timeout_s: float = PROCESS_READY_TIMEOUT_S
    ) -> ProcessRecord:
        record = start(spec)
        self._set_record(record, spec.name)
        health.wait_ready(spec, record, timeout_s)
        return record

    def _run_once(self, spec: ProcessSpec, timeout_s: float = 180.0) -> None:
        Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
        Path(spec.cwd).mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as log:
            try:
                out = subprocess.run(
                    list(spec.argv),
                    cwd=spec.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,
                    env={**os.environ, **spec.env},
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerStartError(
                    f"{spec.name} did not finish within {timeout_s:.0f} s"
                ) from exc
        if out.returncode != 0:
            raise BrokerStartError(
                f"{spec.name} failed (exit {out.returncode}); last lines of {spec.log}:\n"
                f"{tail(spec.log)}"
            )

    def check_health(
        self, broker: Broker, timeout_s: float = HEALTH_TIMEOUT_S, messages: int = 1
    ) -> list[health.RoundTrip]:
        """Round trips through the real client (direct, and via the Pulsar proxy when it runs;
        signed by the infra's account when RocketMQ's ACL is on).

        Raises :class:`BrokerUnavailable` unless every message sent was acknowledged and came
        back.
        """
        ep = self.endpoints(broker)
        trips: list[tuple[str, health.RoundTrip]] = []
        if broker == "pulsar":
            for url in ep.admin_urls:
                health.pulsar_namespace_ready(url, timeout_s)
            trips.append(
                (ep.service_url, health.pulsar_round_trip(ep.service_url, timeout_s, messages))
            )
            if ep.proxy_url:
                trips.append(
                    (ep.proxy_url, health.pulsar_round_trip(ep.proxy_url, timeout_s, messages))
                )
        elif ep.acl_access_key_env:
            # ACL on: every request signed with the infra's account, through the driver.
            from bench.drivers.rocketmq.health import signed_round_trip

            trips.append((ep.grpc_endpoint, signed_round_trip(ep, timeout_s, messages)))
        else:
            trip = health.rocketmq_round_trip(
                ep.grpc_endpoint, list(ep.broker_addrs.values()), ep.namesrv, timeout_s, messages
            )
            trips.append((ep.grpc_endpoint, trip))
        for where, trip in trips:
            if not trip.complete:
                raise BrokerUnavailable(
                    f"{broker} via {where}: sent {trip.sent}, acknowledged {trip.acked}, "
                    f"came back {trip.received}"
                )
        return [trip for _, trip in trips]

    def down(self, timeout_s: float = 60.0, *, graceful: bool = True) -> list[str]:
        """Stop every process this infra started, in reverse plan order; return their names.

        ``graceful`` False is for data that is thrown away next (a run brings every scenario's
        brokers up fresh; a test's temp dir): SIGKILL at once, since there is nothing to flush,
        where a graceful stop of RocketMQ takes 13 s (its store waits 3 s on purpose, its name
        server's Netty groups a quiet period). Logs stay either way.

        Plan order, not record order: the state file keeps records sorted by name, so reversing
        them stopped RocketMQ's name server and Pulsar's ZooKeeper before the brokers that talk
        to them. Peers of one stop group (a cluster's brokers) are stopped at once.
        """
        specs = self.specs()
        records = self.records()
        order = {name: i for i, name in enumerate(specs)}
        stopped: list[str] = []
        errors: list[str] = []
        names = sorted(records, key=lambda n: order.get(n, len(order)), reverse=True)
        for _, group in itertools.groupby(names, key=lambda n: _stop_group(specs.get(n), n)):
            batch = list(group)
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                grace = timeout_s if graceful else 0.0
                futures = {n: pool.submit(stop, records[n], grace) for n in batch}
            for name, future in futures.items():
                if (exc := future.exception()) is None:
                    stopped.append(name)
                    self._set_record(None, name)
                else:
                    errors.append(f"{name}: {exc}")
        stopped += self._stop_unrecorded(specs, records, errors)
        ports = [p for s in specs.values() for p in s.ports.values()]
        busy = wait_closed(ports, 15.0)
        data = self._load()
        if not errors:
            for broker in self._brokers(data):
                _empty_tmp(self.root / broker)
        data["brokers"] = {}
        data.pop("settings", None)
        self._save(data)
        if errors:
            raise BenchError("could not stop: " + "; ".join(errors))
        if busy:
            raise BenchError(f"ports still in use after stopping the brokers: {busy}")
        return stopped

    def _stop_unrecorded(
        self, specs: dict[str, ProcessSpec], records: dict[str, ProcessRecord], errors: list[str]
    ) -> list[str]:
        """Stop a process of ours that no record identifies any more, found by its ports.

        A record can fail to identify its process (a state file written before start ticks
        were kept, or a record lost in a crash); forgetting it would leave a JVM running.
        A listener on a port of the plan whose command line is exactly the spec's argv is the
        process that spec started: nothing else runs our configs from our directories.
        """
        stopped: list[str] = []
        for name, spec in specs.items():
            for port in spec.ports.values():
                if is_free(port):
                    continue
                pid = listener_pid(port)
                ident = identity(pid) if pid else None
                if pid is None or ident is None or ident.cmdline != tuple(spec.argv):
                    continue
                rec = ProcessRecord(name, pid, ident.start_ticks, ident.cmdline, time.time())
                try:
                    stop(rec, 60.0)
                    stopped.append(f"{name} (pid {pid}, found by port {port})")
                except Exception as exc:
                    errors.append(f"{name}: {exc}")
                break
        return stopped

    # -- status ----------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """One row per tracked process: name, pid, alive, ports (accepting or not), data dir."""
        rows: list[dict[str, Any]] = []
        records = self.records()
        for name, spec in self.specs().items():
            rec = records.get(name)
            alive = bool(rec and rec.alive())
            rows.append(
                {
                    "name": name,
                    "pid": rec.pid if rec else None,
                    "alive": alive,
                    "ports": {
                        label: {"port": p, "accepting": alive and accepts(p)}
                        for label, p in spec.ports.items()
                    },
                    "ready": alive and (spec.ready_port is None or accepts(spec.ready_port)),
                    "exposed": _non_loopback_listeners(rec) if rec and alive else [],
                    "data_dir": spec.data_dirs[0] if spec.data_dirs else spec.cwd,
                    "log": spec.log,
                }
            )
        return rows

    def log_path(self, name: str) -> Path:
        """The log file of process ``name`` (full name or its last part, e.g. ``broker-a``)."""
        return Path(self.specs()[self._resolve(name)].log)

    # -- faults ----------------------------------------------------------------------------
    def _resolve(self, name: str) -> str:
        specs = self.specs()
        matches = [n for n in specs if n == name or n.endswith("/" + name)]
        if len(matches) != 1:
            known = ", ".join(sorted(specs)) or "none (nothing is up)"
            raise ConfigError(f"no single process named {name!r}; known: {known}")
        return matches[0]

    def killable(self, broker: Broker) -> list[str]:
        """Names of the broker processes a kill -9 may target."""
        return [n for n, s in self.specs().items() if n.startswith(broker + "/") and s.killable]

    def kill9(self, name: str) -> float:
        """SIGKILL a process by its recorded PID; return the kill time (``time.time()``)."""
        full = self._resolve(name)
        rec = self.records().get(full)
        if rec is None:
            raise BrokerStartError(f"{full} has no running process to kill")
        killed_at = kill9(rec)
        self._set_record(None, full)
        return killed_at

    def restart(self, name: str, timeout_s: float = PROCESS_READY_TIMEOUT_S) -> ProcessRecord:
        """Start a (dead) process again on the same data directories and wait for readiness."""
        full = self._resolve(name)
        rec = self.records().get(full)
        if rec is not None and rec.alive():
            raise BrokerStartError(f"{full} is still running (pid {rec.pid})")
        spec = self.specs()[full]
        # A killed JVM's threads may still hold its listening sockets for a moment after its
        # pid reads as dead: readiness probed then answered from the dying process (a Pulsar
        # "restart" 0.1 s after its kill). The new one is probed once the old one's ports close.
        wait_closed(list(spec.ports.values()), 15.0)
        return self._start_ready(spec, timeout_s)

    def supervise(self, name: str, *, poll_s: float = 0.1) -> Supervisor:
        """Start a supervisor that restarts ``name`` as soon as it dies (stop it when done)."""
        full = self._resolve(name)
        rec = self.records().get(full)
        if rec is None:
            raise BrokerStartError(f"{full} is not running; nothing to supervise")
        return Supervisor(full, rec, lambda n: self.restart(n), poll_s=poll_s).start()


def stop_orphans(run_root: Path, progress: Progress = _quiet) -> list[str]:
    """Stop the brokers that a ``bench run`` on ``run_root`` started and left behind.

    Called with ``run_root``'s :class:`~bench.infra.lock.InfraLock` held, so no live run owns
    them: they were left by a run that was killed (kill -9 leaves no chance to clean up).
    Returns what was stopped, each with the state file it came from.
    """
    stopped: list[str] = []
    if not run_root.is_dir():
        return stopped
    for state in sorted(run_root.glob("*/state.json")):
        infra = Infra(state.parent)
        if not infra.records() and not infra.specs():
            continue
        names = infra.down()
        if names:
            progress(f"stopped {len(names)} process(es) left by an earlier run: {', '.join(names)}")
            stopped += names
    return stopped
