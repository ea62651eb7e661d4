"""Infra logic that needs no broker: Java checks, port checks, process start/stop, errors."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from bench import clock
from bench.errors import ArtifactError, BrokerStartError, ConfigError, EnvironmentProblem, PortInUse
from bench.infra import artifacts, health, java, ports, process
from bench.infra.manager import STATE_SCHEMA_VERSION, Infra
from bench.infra.process import ProcessSpec
from bench.infra.topology import InfraSettings, pulsar_plan, rocketmq_plan, wipe


def _fake_java(tmp_path: Path, banner: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    exe = home / "bin" / "java"
    exe.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return home


def test_java_home_without_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_JAVA_HOME", "/nonexistent/jdk")
    with pytest.raises(
        EnvironmentProblem, match=r"BENCH_JAVA_HOME=/nonexistent/jdk has no executable bin/java"
    ):
        java.find_java()


def test_too_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')
    monkeypatch.setenv("BENCH_JAVA_HOME", str(home))
    with pytest.raises(EnvironmentProblem, match=r"is Java 11; the brokers need Java 17\+"):
        java.find_java()


def test_java_that_prints_no_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _fake_java(tmp_path, "Segmentation fault")
    monkeypatch.setenv("BENCH_JAVA_HOME", str(home))
    with pytest.raises(EnvironmentProblem, match="is not a working Java: Segmentation fault"):
        java.find_java()


def test_machine_java_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_JAVA_HOME", raising=False)
    rt = java.find_java()
    assert rt.major >= 17


def test_port_in_use_names_port_label_and_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not ports.is_free(port)
        with pytest.raises(PortInUse) as err:
            ports.ensure_free({"pulsar web": port})
        msg = str(err.value)
        assert f"port {port} (pulsar web)" in msg
        assert f"pid {os.getpid()}" in msg
    assert ports.is_free(port)


def test_maven_failures_are_explained() -> None:
    unreachable = (
        "[ERROR] ... Could not transfer artifact x:y:pom:1 from/to central: "
        "Unknown host repo.maven.apache.org"
    )
    assert "cannot reach Maven Central" in artifacts._explain_maven_failure("pulsar", unreachable)
    missing = (
        "[ERROR] Could not find artifact org.apache.rocketmq:rocketmq-example:jar:5.3.3 in central"
    )
    text = artifacts._explain_maven_failure("rocketmq", missing)
    assert "does not serve org.apache.rocketmq:rocketmq-example:jar:5.3.3" in text


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ArtifactError, match="unknown runtime 'kafka'"):
        artifacts.pom_path("kafka")


def test_parallel_resolution_reports_every_failure() -> None:
    with pytest.raises(ArtifactError, match=r"unknown runtime 'kafka'.*unknown runtime 'nats'"):
        artifacts.ensure_classpaths(("kafka", "nats"))


def test_settings_refuse_unknown_broker_and_topology() -> None:
    with pytest.raises(ConfigError, match="unknown broker 'kafka'"):
        InfraSettings(brokers=("kafka",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown topology 'mesh'"):
        InfraSettings(topology="mesh")  # type: ignore[arg-type]


def _spec(tmp_path: Path, script: str, ready_port: int | None = None) -> ProcessSpec:
    return ProcessSpec(
        name="test/proc",
        argv=(sys.executable, "-c", script),
        cwd=str(tmp_path),
        log=str(tmp_path / "proc.log"),
        ready_port=ready_port,
    )


def test_process_that_exits_during_start_shows_its_log(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path, "import sys; print('boom: bad config line 3'); sys.exit(3)", ready_port=1
    )
    rec = process.start(spec)
    with pytest.raises(
        BrokerStartError, match=r"(?s)test/proc exited during start.*boom: bad config line 3"
    ):
        health.wait_ready(spec, rec, timeout_s=20)


def test_start_timeout_is_reported_and_process_stopped(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    spec = _spec(
        tmp_path, "import time; print('waiting', flush=True); time.sleep(60)", ready_port=free
    )
    rec = process.start(spec)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerStartError, match=rf"did not open port {free} within 1 s"):
            health.wait_ready(spec, rec, timeout_s=1)
        assert time.monotonic() - started < 5
    finally:
        process.stop(rec, timeout_s=5)
    assert not rec.alive()
    assert process.identity(rec.pid) is None or not rec.matches(process.identity(rec.pid))


def test_a_broker_is_ready_once_the_name_server_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its port opens before it registers; a proxy started in between found an empty cluster.
    asked: list[tuple[str, str]] = []

    def registered(namesrv: str, addr: str) -> bool:
        asked.append((namesrv, addr))
        return len(asked) >= 3

    monkeypatch.setattr(health, "registered", registered)
    spec = replace(_spec(tmp_path, "import time; time.sleep(60)"), registers_with="127.0.0.1:1")
    rec = process.start(spec)
    try:
        health.wait_ready(spec, rec, timeout_s=20)
        assert asked == [("127.0.0.1:1", "127.0.0.1:None")] * 3
        monkeypatch.setattr(health, "registered", lambda namesrv, addr: False)
        with pytest.raises(
            BrokerStartError,
            match=r"test/proc did not register with the name server at 127.0.0.1:1 within 1 s",
        ):
            health.wait_ready(spec, rec, timeout_s=1)
    finally:
        process.stop(rec, timeout_s=5)


def test_kill9_returns_time_and_stop_reaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kill time is a bench.clock reading: a wall clock stepped by an hour meanwhile (a
    freshly booted machine) moves no duration measured from it."""
    rec = process.start(_spec(tmp_path, "import time; time.sleep(60)"))
    before = clock.now()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)
    at = process.kill9(rec)
    after = clock.now()
    monkeypatch.undo()
    assert before <= at <= after < before + 15.0
    assert not rec.alive()


def test_supervisor_restarts_a_killed_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, "import time; time.sleep(60)")
    rec = process.start(spec)
    restarted: list[process.ProcessRecord] = []

    def restart(_: str) -> process.ProcessRecord:
        new = process.start(spec)
        restarted.append(new)
        return new

    sup = process.Supervisor("test/proc", rec, restart, poll_s=0.05).start()
    real = time.time
    try:
        killed = process.kill9(rec)
        # The wall clock steps back an hour while the supervisor brings the process back.
        monkeypatch.setattr(time, "time", lambda: real() - 3600.0)
        deadline = time.monotonic() + 10
        while not restarted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert restarted and restarted[0].alive()
        kinds = [e.kind for e in sup.events]
        assert kinds[:1] == ["died"]
    finally:
        monkeypatch.undo()
        sup.stop()
        for r in [rec, *restarted]:
            process.stop(r, timeout_s=5)
    assert [e.kind for e in sup.events] == ["died", "restarted"]
    died, back = sup.events
    assert killed <= died.at <= back.at < killed + 15.0


def test_record_does_not_match_a_recycled_pid(tmp_path: Path) -> None:
    rec = process.start(_spec(tmp_path, "import time; time.sleep(60)"))
    try:
        older = process.ProcessRecord(
            rec.name, rec.pid, rec.start_ticks - 100, rec.cmdline, rec.started_at
        )
        other = process.ProcessRecord(
            rec.name, rec.pid, rec.start_ticks, (*rec.cmdline, "x"), rec.started_at
        )
        assert older.process() is None  # same pid, other start: not ours
        assert other.process() is None  # same pid and start, other command line: not ours
        assert not process.signal_process(older, 0)
        assert rec.alive()
    finally:
        process.stop(rec, timeout_s=5)


def test_a_clock_step_after_boot_does_not_lose_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psutil's create time is the boot time (wall clock) plus the start ticks: a clock still
    being adjusted after boot moves it. The record must find and stop its process anyway."""
    rec = process.start(_spec(tmp_path, "import time; time.sleep(60)"))
    real_boot = psutil.boot_time()
    real_create = psutil.Process.create_time
    monkeypatch.setattr(psutil, "boot_time", lambda: real_boot + 14.0)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: real_create(self) + 14.0)
    monkeypatch.setattr(time, "time", lambda: real_boot + 1e6)
    try:
        assert rec.alive()
        process.stop(rec, timeout_s=5)
        assert not rec.alive()
        assert process.identity(rec.pid) is None
    finally:
        monkeypatch.undo()
        process.stop(rec, timeout_s=5)


def test_down_finds_a_process_its_record_no_longer_identifies(tmp_path: Path) -> None:
    """A state file whose record cannot identify the process (written before start ticks were
    kept): down finds our process by its port and exact command line, and stops it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = (
        "import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)"
    )
    spec = ProcessSpec(
        name="pulsar/standalone",
        argv=(sys.executable, "-c", script),
        cwd=str(tmp_path),
        log=str(tmp_path / "proc.log"),
        ports={"web": port},
        ready_port=port,
    )
    rec = process.start(spec)
    try:
        health.wait_ready(spec, rec, timeout_s=20)
        infra = Infra(tmp_path / "infra")
        infra._save(
            {
                "schema_version": STATE_SCHEMA_VERSION,
                "brokers": {
                    "pulsar": {
                        "endpoints": {},
                        "specs": [spec.to_json()],
                        "records": {
                            spec.name: {"pid": rec.pid, "create_time": 1.0, "started_at": 1.0}
                        },
                    }
                },
            }
        )
        assert infra.records() == {}  # the old record identifies nothing
        stopped = infra.down()
        assert stopped == [f"pulsar/standalone (pid {rec.pid}, found by port {port})"]
        assert not rec.alive()
        assert ports.is_free(port)
    finally:
        process.stop(rec, timeout_s=5)


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_plans_bind_loopback_and_do_not_clash(tmp_path: Path, topology: str) -> None:
    settings = InfraSettings(topology=topology, proxy=True, port_offset=100)  # type: ignore[arg-type]
    plans = [
        pulsar_plan(settings, tmp_path / "pulsar", "java", "cp"),
        rocketmq_plan(settings, tmp_path / "rocketmq", "java", "cp"),
    ]
    all_ports = [p for plan in plans for spec in plan.specs for p in spec.ports.values()]
    assert len(all_ports) == len(set(all_ports)), "two processes would share a port"
    assert all(p >= 100 for p in all_ports)
    for conf in (tmp_path / "pulsar" / "conf").iterdir():
        text = conf.read_text()
        if "bindAddress" in text:
            assert "bindAddress=127.0.0.1" in text
    assert (
        '"localServeAddr": "127.0.0.1"'
        in (tmp_path / "rocketmq" / "conf" / "rmq-proxy.json").read_text()
    )
    # The Pulsar proxy forwards only to the broker ports it is told (default 6650,6651).
    broker_ports = [
        str(p)
        for s in plans[0].specs
        for label, p in s.ports.items()
        if label.startswith("pulsar broker")
    ]
    proxy_conf = (tmp_path / "pulsar" / "conf" / "proxy.conf").read_text()
    assert broker_ports
    assert f"brokerProxyAllowedTargetPorts={','.join(broker_ports)}\n" in proxy_conf


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_every_jvm_keeps_its_temp_files_under_its_broker_root(
    tmp_path: Path, topology: str
) -> None:
    # RocksDB's native library alone is ~12 MiB per start and is left behind by kill -9.
    settings = InfraSettings(topology=topology, proxy=True)  # type: ignore[arg-type]
    for broker, plan_of in (("pulsar", pulsar_plan), ("rocketmq", rocketmq_plan)):
        root = tmp_path / broker
        plan = plan_of(settings, root, "java", "cp")
        specs = [*plan.specs, *plan.oneshot_after.values()]
        assert specs
        for spec in specs:
            assert f"-Djava.io.tmpdir={root / 'tmp'}" in spec.argv, spec.name
        (root / "tmp" / "librocksdbjni1.so").parent.mkdir(parents=True, exist_ok=True)
        (root / "tmp" / "librocksdbjni1.so").write_bytes(b"x")
        wipe(root)
        assert not (root / "tmp").exists()


def test_down_stops_in_reverse_plan_order_and_peers_at_once(tmp_path: Path) -> None:
    # The state file keeps records by name, so reversing the records stopped the name server
    # before the brokers that talk to it; down() goes by the plan. The two brokers are peers
    # (one stop group): both get SIGTERM before either has finished its (1 s) shutdown.
    log = tmp_path / "stopping.txt"
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(log)!r}, 'a').write('term ' + sys.argv[1] + '\\n')\n"
        "    time.sleep(1.0)\n"
        f"    open({str(log)!r}, 'a').write('exit ' + sys.argv[1] + '\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "time.sleep(60)\n"
    )
    specs = [
        ProcessSpec(
            name=f"demo/{n}",
            argv=(sys.executable, "-c", script, n),
            cwd=str(tmp_path),
            log=str(tmp_path / f"{n}.log"),
            stop_group="" if n == "namesrv" else "brokers",
        )
        for n in ("namesrv", "broker-a", "broker-b")
    ]
    infra = Infra(tmp_path / "infra")
    infra._save(
        {
            "schema_version": STATE_SCHEMA_VERSION,
            "brokers": {"demo": {"endpoints": {}, "specs": [s.to_json() for s in specs]}},
        }
    )
    for spec in specs:
        infra._set_record(process.start(spec), spec.name)
    assert list(infra.records()) == ["demo/broker-a", "demo/broker-b", "demo/namesrv"]
    time.sleep(0.5)  # all have installed their SIGTERM handler
    assert infra.down(timeout_s=10) == ["demo/broker-b", "demo/broker-a", "demo/namesrv"]
    lines = log.read_text().splitlines()
    assert sorted(lines[:2]) == ["term broker-a", "term broker-b"], lines
    assert sorted(lines[2:4]) == ["exit broker-a", "exit broker-b"], lines
    assert lines[4:] == ["term namesrv", "exit namesrv"], lines


def test_a_down_that_keeps_nothing_kills_at_once(tmp_path: Path) -> None:
    # graceful=False (data thrown away next): SIGKILL, so no shutdown handler runs and the
    # stop does not wait out one (RocketMQ's graceful stop takes 13 s).
    log = tmp_path / "stopping.txt"
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(log)!r}, 'a').write('term\\n'); time.sleep(5.0); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "time.sleep(60)\n"
    )
    spec = ProcessSpec(
        name="demo/broker",
        argv=(sys.executable, "-c", script),
        cwd=str(tmp_path),
        log=str(tmp_path / "broker.log"),
    )
    infra = Infra(tmp_path / "infra")
    infra._save(
        {
            "schema_version": STATE_SCHEMA_VERSION,
            "brokers": {"demo": {"endpoints": {}, "specs": [spec.to_json()]}},
        }
    )
    record = process.start(spec)
    infra._set_record(record, spec.name)
    time.sleep(0.5)  # its SIGTERM handler is installed
    started = time.monotonic()
    assert infra.down(graceful=False) == ["demo/broker"]
    assert time.monotonic() - started < 3.0
    assert not record.alive()
    assert not log.exists(), "SIGTERM was sent: the shutdown handler ran"


def test_a_child_still_exiting_is_kept_until_it_can_be_reaped() -> None:
    """A dropped Popen of a running process is never waited for (and warns at collection)."""
    import subprocess

    from bench.infra import process as proc_mod

    child = subprocess.Popen(["sleep", "30"])
    proc_mod._children[child.pid] = child
    try:
        proc_mod._reap(child.pid)  # still running: kept
        assert proc_mod._children.get(child.pid) is child
        child.kill()
        child.wait(5)
        proc_mod._reap(child.pid)
        assert child.pid not in proc_mod._children
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        proc_mod._children.pop(child.pid, None)


def test_a_disk_the_brokers_would_refuse_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RocketMQ refuses sends past 90% of its filesystem in use; Pulsar's bookie turns
    read-only past its diskUsageThreshold of the usable space, and every topic creation then
    fails ("Not enough non-faulty bookies available"). `infra up` says so, with the figures,
    and starts nothing."""
    from bench.infra import disk

    gib = 1 << 30

    def usage(total: int, used: int, free: int) -> None:
        fake = shutil._ntuple_diskusage(total * gib, used * gib, free * gib)
        monkeypatch.setattr(disk.shutil, "disk_usage", lambda p: fake)

    # This machine's disk when a kill -9 step failed so: 95.2% as BookKeeper counts it, past
    # its default 0.95 (the whole filesystem's, not our data's). Our configs raise it to 0.99,
    # for the standalone's embedded bookie (it reads standalone.conf) as for a cluster's.
    usage(252, 80, 12)
    assert disk.problems(tmp_path, ["pulsar", "rocketmq"]) == []
    conf = Path(__file__).resolve().parents[2] / "infra" / "conf" / "pulsar"
    for name in ("standalone.conf", "bookkeeper.conf"):
        assert f"diskUsageThreshold={disk.PULSAR_LIMIT}" in (conf / name).read_text().splitlines()
    usage(100, 89, 3)
    infra = Infra(tmp_path / "infra")
    with pytest.raises(BrokerStartError) as err:
        infra.up(InfraSettings(brokers=("pulsar", "rocketmq"), port_offset=25000))
    assert str(err.value) == (
        f"the filesystem holding {tmp_path / 'infra'} is too full for the brokers: "
        "3.0 GiB free (a run needs 4 GiB); "
        "97.0% full as Pulsar's bookie counts it (it turns read-only at 99%, and 2% is left "
        "for the run); "
        "89.0% full as RocketMQ counts it (it refuses sends at 90%, and 2% is left for the "
        "run). Free space there, or point --infra-dir (BENCH_INFRA_DIR) at another disk."
    )
    assert infra.records() == {}
    usage(100, 20, 50)
    disk.check(tmp_path, ["pulsar", "rocketmq"])
