"""The brokers' native Java benchmark tools, run for a fixed time and parsed."""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from pathlib import Path

from bench.errors import BenchError
from bench.infra.artifacts import ensure_classpath
from bench.infra.java import find_java
from bench.infra.paths import project_infra_dir
from bench.infra.topology import Endpoints
from bench.metrics.resources import CpuMeter

CLIENT_NATIVE, CLIENT_BENCH, BROKER = "native_client", "bench_client", "broker"
"""CPU-meter groups."""
"""CPU-meter groups."""
NATIVE_GRACE_S = 60.0
"""How long a native tool may take beyond its run time (JVM start, producer start, exit)."""

_PERF_LINE = re.compile(r"Publish throughput:\s*([0-9.]+)\s*msg/s")
_RMQ_TPS = re.compile(r"Send TPS:\s*(\d+)")


def _run_java(
    argv: list[str],
    log: Path,
    run_s: float,
    cwd: Path,
    started: re.Pattern[str] | None = None,
    cpu: CpuMeter | None = None,
) -> tuple[str, float]:
    """Run a native tool for ``run_s`` seconds, then SIGTERM it (its shutdown hook prints the
    totals); return its output and the monotonic time it ended (or was told to). With
    ``started``, the ``run_s`` seconds count from the first output line matching it (JVM and
    client start-up take a while and vary), waiting at most :data:`NATIVE_GRACE_S` for that
    line. With ``cpu``, the process's CPU is metered as ``native_client``. The process is ours
    alone, stopped by its own PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    ended = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        if cpu is not None:
            cpu.watch(CLIENT_NATIVE, proc.pid)
        try:
            end = time.monotonic() + run_s
            if started is not None:
                end = time.monotonic() + NATIVE_GRACE_S
                while time.monotonic() < end and proc.poll() is None:
                    if started.search(log.read_text(errors="replace")):
                        end = time.monotonic() + run_s
                        break
                    time.sleep(0.2)
            try:
                proc.wait(timeout=max(0.0, end - time.monotonic()))
                ended = time.monotonic()
            except subprocess.TimeoutExpired:
                ended = time.monotonic()
                if cpu is not None:
                    cpu.read()
                proc.terminate()
                proc.wait(timeout=NATIVE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    return log.read_text(errors="replace"), ended


_NATIVE_FATAL = re.compile(r"java\.lang\.OutOfMemoryError[^\n]*")


def _check_native_output(output: str, log: Path) -> None:
    """A native tool that ran out of memory measured a backlog, not the broker: refuse its
    figure rather than report it."""
    m = _NATIVE_FATAL.search(output)
    if m:
        raise BenchError(f"the native tool failed ({m.group(0).strip()}); see {log}")


def parse_pulsar_perf(output: str, skip: int) -> float | None:
    """Mean of pulsar-perf's per-second producer throughput lines, the first ``skip`` (warm-up)
    and the last (a partial second at shutdown) left out."""
    rates = [float(m.group(1)) for m in _PERF_LINE.finditer(output)]
    rates = rates[skip:-1] if len(rates) > skip + 1 else rates[-1:]
    return statistics.fmean(rates) if rates else None


def parse_rocketmq_producer(output: str) -> float | None:
    """The last "Send TPS" of RocketMQ's benchmark Producer (a mean over its last <= 10 s)."""
    rates = [int(m.group(1)) for m in _RMQ_TPS.finditer(output)]
    return float(rates[-1]) if rates else None


def native_pulsar(
    ep: Endpoints,
    topic: str,
    size: int,
    seconds: float,
    warmup: float,
    work: Path,
    cpu: CpuMeter | None = None,
    max_outstanding: int = 5000,
) -> tuple[float | None, Path, float]:
    """Run pulsar-perf against ``ep`` at full speed with at most ``max_outstanding`` messages
    unacknowledged (as our workers bound theirs); return (rate, log path, end time).

    Unbounded (its default: ``--max-outstanding 0``, no memory limit) it queues faster than the
    broker acknowledges until its heap runs out (measured here: 10 s to OutOfMemoryError at
    -Xmx512m), and its per-second figures count acknowledgements of a growing backlog."""
    java = find_java().executable
    cp = ensure_classpath("pulsar").joined()
    conf = work / "pulsar-client.conf"
    conf.write_text(f"webServiceUrl={ep.admin_urls[0]}/\nbrokerServiceUrl={ep.service_url}/\n")
    log4j = project_infra_dir() / "conf" / "pulsar" / "log4j2.xml"
    run_s = warmup + seconds
    argv = [
        java,
        "-Xmx512m",
        f"-Dlog4j.configurationFile={log4j}",
        "-cp",
        cp,
        "org.apache.pulsar.testclient.PulsarPerfTestTool",
        str(conf),
        "produce",
        "--service-url",
        ep.service_url,
        "--admin-url",
        ep.admin_urls[0],
        # pulsar-perf refuses rate 0; this is far above what one machine can send.
        "--rate",
        "10000000",
        "--size",
        str(size),
        "--test-duration",
        str(round(run_s)),
        "--stats-interval-seconds",
        "1",
        "--disable-batching",
        "--max-outstanding",
        str(max_outstanding),
        f"persistent://public/default/{topic}",
    ]
    log = work / f"pulsar-perf-{topic}.log"
    out, ended = _run_java(argv, log, run_s + NATIVE_GRACE_S, work, cpu=cpu)
    _check_native_output(out, log)
    return parse_pulsar_perf(out, skip=max(1, int(warmup))), log, ended


def native_rocketmq(
    ep: Endpoints,
    topic: str,
    size: int,
    seconds: float,
    warmup: float,
    work: Path,
    cpu: CpuMeter | None = None,
) -> tuple[float | None, Path, float]:
    """Run RocketMQ's benchmark Producer against ``ep``; return (rate, log path, end time)."""
    java = find_java().executable
    cp = ensure_classpath("rocketmq-perf").joined()
    home = work / "rocketmq-perf-home"
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        java,
        "-Xmx512m",
        # Its client logs go under user.home: keep them in the work dir.
        f"-Duser.home={home}",
        "-cp",
        cp,
        "org.apache.rocketmq.example.benchmark.Producer",
        "-n",
        ep.namesrv,
        "-t",
        topic,
        "-s",
        str(size),
        "-ri",
        "1000",
    ]
    log = work / f"rocketmq-producer-{topic}.log"
    # It runs until stopped: warm-up and the measured window from its first report on.
    out, ended = _run_java(argv, log, warmup + seconds, work, started=_RMQ_TPS, cpu=cpu)
    _check_native_output(out, log)
    return parse_rocketmq_producer(out), log, ended


# -- our driver ------------------------------------------------------------------------------
