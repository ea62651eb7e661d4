"""``bench calibrate``: is the suite's own load generator the bottleneck?

For each broker, against the same local broker and with the same message size, one after the
other (both share this machine's cores with the broker, so they never run at once):

1. the broker's native Java tool at full speed: ``pulsar-perf produce`` (Pulsar 4.0 runs it as
   ``org.apache.pulsar.testclient.PulsarPerfTestTool <client.conf> produce``; its
   ``PerformanceProducer`` has no ``main`` of its own), batching off as in our driver, and
   RocketMQ's ``org.apache.rocketmq.example.benchmark.Producer`` (remoting, 64 threads of sync
   sends, its defaults);
2. our driver closed-loop at maximum rate from ``--workers`` worker processes, async sends.

The ratio bench/native says how much of the broker's capacity the suite can drive. RocketMQ
gets more rows than Pulsar: the 5.x gRPC client through the proxy (what the scenarios use by
default), async over remoting straight to the broker (the same protocol as the native tool),
and ONEWAY over remoting, whose rate is counted by the broker (queue offsets of the topic),
since nothing is acknowledged.

Rates: the native tools report their own rates (pulsar-perf's per-second producer stats after
the warm-up, averaged; RocketMQ's "Send TPS", a moving average over its last <= 10 s, taken at
the end: with ``--seconds`` below 10 that window reaches into the warm-up). Ours is acknowledged
messages over the measured window (warm-up excluded).
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import click

from bench.drivers.base import open_driver
from bench.engines.pool import WorkerPool
from bench.engines.protocol import ENGINES, Engine
from bench.engines.spec import LoadSpec, is_warmup
from bench.errors import BenchError, BrokerStartError
from bench.infra.artifacts import ensure_classpath
from bench.infra.java import find_java
from bench.infra.manager import Infra
from bench.infra.paths import bench_home, project_infra_dir
from bench.infra.topology import Broker, Endpoints, InfraSettings
from bench.metrics.intervals import ACKED, RECEIVED, SENT, merge
from bench.metrics.resources import CpuMeter

TARGET_RATIO = 0.9
CLIENT_NATIVE, CLIENT_BENCH, BROKER = "native_client", "bench_client", "broker"
"""CPU-meter groups."""
NATIVE_GRACE_S = 60.0
"""How long a native tool may take beyond its run time (JVM start, producer start, exit)."""

_PERF_LINE = re.compile(r"Publish throughput:\s*([0-9.]+)\s*msg/s")
_RMQ_TPS = re.compile(r"Send TPS:\s*(\d+)")


@dataclass
class CalibrationRow:
    """One comparison: the native tool's rate against ours for one broker and send path."""

    broker: str
    path: str
    send_mode: str
    native_rate: float | None
    bench_rate: float | None
    ratio: float | None
    message_size: int
    workers: int
    seconds: float
    native_tool: str
    engine: str = "python"
    consume_rate: float | None = None
    """Messages a second our consumers (one subscription) received, in a run of their own
    that offered ``consume_offered_rate`` (the row's ``bench_rate``) at a fixed rate."""
    consume_offered_rate: float | None = None
    consume_acked_rate: float | None = None
    """What the producers of that run got acknowledged (a second): with clients and broker on
    the same cores, producers and consumers together may not reach the offered rate."""
    consume_ratio: float | None = None
    """``consume_rate / consume_acked_rate``: whether our consumers kept up with what was
    produced in the same window (null when nothing was acknowledged)."""
    bench_sent_rate: float | None = None
    broker_rate: float | None = None
    bench_errors: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    rounds: int = 1
    cpu_us_per_message: dict[str, float | None] = field(default_factory=dict)
    """CPU microseconds per message (medians over rounds) of ``native_client`` (the Java
    tool), ``bench_client`` (our worker processes) and the broker's processes during each
    (``native_broker``, ``bench_broker``): on a machine where client and broker share the cores,
    this says where the difference in rate comes from."""
    native_rates: list[float] = field(default_factory=list)
    """Each round's native rate (the row's ``native_rate`` is their median)."""
    bench_rates: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The row as JSON-able dict (rates rounded to 0.1 msg/s, ratio to 0.001)."""
        d = asdict(self)
        for k in (
            "native_rate",
            "bench_rate",
            "bench_sent_rate",
            "broker_rate",
            "consume_rate",
            "consume_offered_rate",
            "consume_acked_rate",
        ):
            if d[k] is not None:
                d[k] = round(d[k], 1)
        for k in ("ratio", "consume_ratio"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        d["cpu_us_per_message"] = {
            k: (round(v, 1) if v is not None else None) for k, v in self.cpu_us_per_message.items()
        }
        return d


# -- native tools ----------------------------------------------------------------------------
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
@dataclass
class BenchRate:
    """What our workers achieved in the measured window."""

    acked_rate: float
    sent_rate: float
    broker_rate: float | None
    received_rate: float
    errors: dict[str, int]
    failures: dict[str, str]
    window: tuple[float, float] = (0.0, 0.0)
    """Monotonic start and end of the measured window (for CPU metering)."""


def _worker_topic(topic: str, worker: int) -> str:
    return f"{topic}-w{worker}"


def bench_rate(
    broker: Broker,
    ep: Endpoints,
    *,
    path: str,
    send_mode: str,
    topic: str,
    size: int,
    seconds: float,
    warmup: float,
    workers: int,
    max_in_flight: int,
    driver_settings: dict[str, Any] | None = None,
    cpu: CpuMeter | None = None,
    engine: Engine = "python",
    rate_per_s: float | None = None,
    subscriptions: int = 0,
) -> BenchRate:
    """Run ``workers`` producer processes of ``engine`` on ``topic``, closed loop unless
    ``rate_per_s`` (in total) is given, with ``subscriptions`` consumers; measure the window
    after ``warmup``. With ONEWAY the broker's stored-message count gives ``broker_rate``.
    With consumers, worker i uses ``_worker_topic(topic, i)``: the runner shards topics over
    workers and a worker's consumers own every queue of its topics, so workers sharing one topic
    would each receive every message of a RocketMQ group."""
    run_id = f"cal-{uuid.uuid4().hex[:8]}"
    specs = [
        LoadSpec(
            worker_id=f"cal{i}",
            broker=broker,
            endpoints=LoadSpec.endpoints_text(ep),
            run_id=run_id,
            topics=(_worker_topic(topic, i) if subscriptions else topic,),
            path=path,
            producers_per_topic=1,
            rate_per_s=rate_per_s / workers if rate_per_s else None,
            max_in_flight=max_in_flight,
            send_mode=send_mode,
            message_size=size,
            subscriptions_per_topic=subscriptions,
            warmup_s=warmup,
            duration_s=seconds,
            deadline_s=warmup + seconds + 300.0,
            driver_settings=dict(driver_settings or {}),
        )
        for i in range(workers)
    ]
    used = sorted({t for spec in specs for t in spec.topics})  # the broker counts these
    collected = []
    broker_rate = None
    with open_driver(broker, ep, path=path) as admin, WorkerPool(engine) as pool:
        pool.start(specs)
        if cpu is not None:
            for pid in pool.pids().values():
                cpu.watch(CLIENT_BENCH, pid)
        go = time.monotonic()
        before: tuple[float, int] | None = None
        after: tuple[float, int] | None = None
        deadline = go + warmup + seconds + 120.0
        while not pool.producers_done() and time.monotonic() < deadline:
            collected += pool.poll(0.5)
            now = time.monotonic()
            if send_mode == "oneway":
                if before is None and now >= go + warmup:
                    before = (now, admin.broker_stats(used)["messages_in"])
                if after is None and now >= go + warmup + seconds:
                    after = (now, admin.broker_stats(used)["messages_in"])
            if pool.failures:
                break
        pool.stop()
        collected += pool.poll(0)
        failures = pool.failures
        if send_mode == "oneway" and before is not None:
            # ONEWAY frames still in socket buffers land a moment later: let them.
            time.sleep(1.0)
            end = after or (time.monotonic(), admin.broker_stats(used)["messages_in"])
            broker_rate = (end[1] - before[1]) / max(1e-9, end[0] - before[0])
    measured = [s for s in collected if not is_warmup(s)]
    if not measured:
        why = "; ".join(f"{w}: {e}" for w, e in failures.items()) or "no interval arrived"
        raise BenchError(f"calibration of {broker} ({path}, {send_mode}) measured nothing: {why}")
    m = merge(measured)
    window = (m.end_ns - m.start_ns) / 1e9
    acked = m.counters.get(ACKED, 0)
    sent = m.counters.get(SENT, 0)
    received = m.counters.get(RECEIVED, 0)
    measured_at = (go + warmup, go + warmup + seconds)
    return BenchRate(
        acked / window,
        sent / window,
        broker_rate,
        received / window,
        dict(m.errors),
        failures,
        measured_at,
    )


def _bare_pulsar_loop(
    service_url: str, topic: str, size: int, warmup: float, seconds: float, window: int, out: Any
) -> None:
    """In its own process: pulsar-client's cheapest async send loop (prebuilt payload, native
    message builder, a callback that only counts) with nothing of ours around it; puts
    (acknowledged/s, process CPU us per acknowledged message) on ``out``."""
    import pulsar

    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        producer = client.create_producer(
            topic, batching_enabled=False, max_pending_messages=window, block_if_queue_full=True
        )
        raw, build = producer._producer, pulsar._pulsar.MessageBuilder
        acked = [0]

        def done(_res: object, _msg_id: object) -> None:
            acked[0] += 1

        payload = b"x" * size
        warm_end = time.monotonic() + warmup
        while time.monotonic() < warm_end:
            raw.send_async(build().content(payload).build(), done)
        a0, t0, c0 = acked[0], time.monotonic(), time.process_time()
        while time.monotonic() < t0 + seconds:
            raw.send_async(build().content(payload).build(), done)
        a1, t1, c1 = acked[0], time.monotonic(), time.process_time()
        producer.flush()
        n = max(1, a1 - a0)
        out.put(((a1 - a0) / (t1 - t0), (c1 - c0) * 1e6 / n))
    finally:
        client.close()


def bare_pulsar(
    ep: Endpoints, topic: str, size: int, seconds: float, warmup: float, window: int
) -> tuple[float, float]:
    """The Pulsar client library's own ceiling on this machine, from one process: what our
    driver's rate would be if the suite's bookkeeping (ledger, histograms, window) cost
    nothing. Returns (acknowledged/s, client CPU us per message)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(
        target=_bare_pulsar_loop,
        args=(
            ep.service_url,
            f"persistent://public/default/{topic}",
            size,
            warmup,
            seconds,
            window,
            out,
        ),
        daemon=True,
    )
    proc.start()
    try:
        rate, cpu_us = out.get(timeout=warmup + seconds + NATIVE_GRACE_S)
    except queue.Empty:
        raise BenchError("the bare pulsar-client loop reported nothing") from None
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    return float(rate), float(cpu_us)


# -- the command -----------------------------------------------------------------------------
def _ratio(bench: float | None, native: float | None) -> float | None:
    if bench is None or not native:
        return None
    return bench / native


def _per_message_us(
    cpu: CpuMeter, group: str, window: tuple[float, float], rate: float | None
) -> float | None:
    cores = cpu.cores(group, *window)
    if cores is None or not rate:
        return None
    return cores * 1e6 / rate


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def calibrate_broker(
    broker: Broker,
    ep: Endpoints,
    *,
    size: int,
    seconds: float,
    warmup: float,
    workers: int,
    max_in_flight: int,
    work: Path,
    progress: Callable[[str], None],
    rounds: int,
    cpu: CpuMeter,
    bare: bool = False,
    engines: Sequence[Engine] = ("python",),
) -> list[CalibrationRow]:
    """Native tool, then each engine's workers on each path, ``rounds`` times interleaved; one
    row per (engine, path, mode) with the medians (a shared machine's load drifts, so the sides
    are measured alternately rather than one long run each). Then, per row, a run of its own at
    the rate the producers reached, with one subscription: the rate our consumers sustain.
    ``cpu`` meters the clients as they start, beside whatever broker processes it watches."""
    tag = uuid.uuid4().hex[:6]
    if broker == "pulsar":
        tool = "pulsar-perf produce (batching off)"
        paths = [("direct", "async", "batching off in both")]
    else:
        tool = "rocketmq-example benchmark.Producer (remoting, 64 sync threads)"
        paths = [
            ("proxy", "async", "5.x gRPC client through the proxy"),
            ("direct", "async", "remoting straight to the broker"),
            (
                "direct",
                "oneway",
                "ONEWAY over remoting, offered at the native tool's rate of the round; "
                "rate = broker-stored",
            ),
        ]
    runs = [
        (engine, path, mode, f"calibrate-{tag}-{engine}-{path}-{mode}", note)
        for engine in engines
        for path, mode, note in paths
    ]
    # Consumers get fresh topics: a new RocketMQ pop group may start at a queue's first offset.
    consume_topics = {run[:3]: f"{run[3]}-consume" for run in runs}
    with open_driver(broker, ep, path="direct" if broker == "pulsar" else "proxy") as admin:
        topics = [
            f"calibrate-{tag}-native",
            f"calibrate-{tag}-bare",
            *(r[3] for r in runs),
            *(_worker_topic(t, i) for t in consume_topics.values() for i in range(workers)),
        ]
        for r in admin.create_topics(topics, 4):
            if not r.ok:
                raise BrokerStartError(f"cannot create calibration topic {r.name}: {r.error}")
    natives: list[float] = []
    bares: list[tuple[float, float]] = []
    native_cpu: dict[str, list[float | None]] = {CLIENT_NATIVE: [], BROKER: []}
    got: dict[tuple[str, str, str], list[BenchRate]] = {r[:3]: [] for r in runs}
    for n in range(rounds):
        progress(f"{broker}: round {n + 1}/{rounds}: {tool} for {warmup + seconds:.0f} s")
        if broker == "pulsar":
            native, log, ended = native_pulsar(
                ep, topics[0], size, seconds, warmup, work, cpu, max_outstanding=max_in_flight
            )
        else:
            native, log, ended = native_rocketmq(ep, topics[0], size, seconds, warmup, work, cpu)
        if native is None:
            raise BenchError(f"{tool} reported no rate; see {log}")
        natives.append(native)
        for group in (CLIENT_NATIVE, BROKER):
            native_cpu[group].append(_per_message_us(cpu, group, (ended - seconds, ended), native))
        for engine, path, mode, topic, _ in runs:
            progress(
                f"{broker}: round {n + 1}/{rounds}: {engine} engine ({path}, {mode}), "
                f"{workers} workers"
            )
            got[(engine, path, mode)].append(
                bench_rate(
                    broker,
                    ep,
                    path=path,
                    send_mode=mode,
                    topic=topic,
                    size=size,
                    seconds=seconds,
                    warmup=warmup,
                    workers=workers,
                    max_in_flight=max_in_flight,
                    cpu=cpu,
                    engine=engine,
                    # ONEWAY has no acknowledgement to close a loop on: as fast as the JVM
                    # client writes, the broker's send queue overflows and it drops what does
                    # not fit (0 stored in one such run). Offered at what the broker took from
                    # the native tool, the stored rate says whether our client delivers it.
                    rate_per_s=native if mode == "oneway" else None,
                )
            )
        if bare and broker == "pulsar":
            progress(f"{broker}: round {n + 1}/{rounds}: bare pulsar-client loop, 1 process")
            bares.append(
                bare_pulsar(ep, f"calibrate-{tag}-bare", size, seconds, warmup, max_in_flight)
            )
    native_rate = statistics.median(natives)
    rows: list[CalibrationRow] = []
    if bares:
        bare_rate = statistics.median(r for r, _ in bares)
        rows.append(
            CalibrationRow(
                broker=broker,
                path="bare",
                send_mode="async",
                native_rate=native_rate,
                bench_rate=bare_rate,
                ratio=_ratio(bare_rate, native_rate),
                message_size=size,
                workers=1,
                seconds=seconds,
                native_tool=tool,
                notes="pulsar-client alone (no ledger, histograms or window): the library's "
                "own ceiling here",
                rounds=rounds,
                cpu_us_per_message={"bench_client": statistics.median(c for _, c in bares)},
                native_rates=[round(x, 1) for x in natives],
                bench_rates=[round(r, 1) for r, _ in bares],
            )
        )
    for engine, path, mode, _, note in runs:
        results = got[(engine, path, mode)]
        per_round = [g.broker_rate if mode == "oneway" else g.acked_rate for g in results]
        rates = [r for r in per_round if r is not None]
        rate = statistics.median(rates) if rates else None
        errors: dict[str, int] = {}
        notes = note
        for g in results:
            for k, v in g.errors.items():
                errors[k] = errors.get(k, 0) + v
            if g.failures:
                notes += "; worker failures: " + "; ".join(
                    f"{w}: {e}" for w, e in g.failures.items()
                )
        brokers = [g.broker_rate for g in results if g.broker_rate is not None]
        cpu_us = {
            "native_client": _median(native_cpu[CLIENT_NATIVE]),
            "native_broker": _median(native_cpu[BROKER]),
            "bench_client": _median(
                [
                    _per_message_us(cpu, CLIENT_BENCH, g.window, r)
                    for g, r in zip(results, per_round, strict=True)
                ]
            ),
            "bench_broker": _median(
                [
                    _per_message_us(cpu, BROKER, g.window, r)
                    for g, r in zip(results, per_round, strict=True)
                ]
            ),
        }
        consumed = consume_run = None
        if rate:
            progress(f"{broker}: {engine} engine ({path}, {mode}): consumers at {rate:.0f}/s")
            consume_run = bench_rate(
                broker,
                ep,
                path=path,
                send_mode=mode,
                topic=consume_topics[(engine, path, mode)],
                size=size,
                seconds=seconds,
                warmup=warmup,
                workers=workers,
                max_in_flight=max_in_flight,
                engine=engine,
                rate_per_s=rate,
                subscriptions=1,
            )
            consumed = consume_run.received_rate
        # ONEWAY has no acknowledgement: the broker's count is what was produced.
        produced = (
            None
            if consume_run is None
            else consume_run.broker_rate
            if mode == "oneway"
            else consume_run.acked_rate
        )
        rows.append(
            CalibrationRow(
                broker=broker,
                path=path,
                send_mode=mode,
                native_rate=native_rate,
                bench_rate=rate,
                ratio=_ratio(rate, native_rate),
                message_size=size,
                workers=workers,
                seconds=seconds,
                native_tool=tool,
                engine=engine,
                consume_rate=consumed,
                consume_offered_rate=rate,
                consume_acked_rate=produced,
                consume_ratio=_ratio(consumed, produced),
                bench_sent_rate=statistics.median([g.sent_rate for g in results]),
                broker_rate=statistics.median(brokers) if brokers else None,
                bench_errors=errors,
                notes=notes,
                rounds=rounds,
                cpu_us_per_message=cpu_us,
                native_rates=[round(x, 1) for x in natives],
                bench_rates=[round(x, 1) for x in rates],
            )
        )
    return rows


def _format_table(rows: Sequence[CalibrationRow]) -> str:
    head = (
        f"{'broker':9} {'engine':7} {'path':7} {'mode':7} {'native/s':>10} {'bench/s':>10}"
        f" {'ratio':>6} {'consumed/s':>10} {'of acked':>8}"
        f"  {'client CPU us/msg':>17}  {'broker CPU us/msg':>17}"
        "  notes"
    )
    lines = [head]

    def num(v: float | None, fmt: str = ".0f") -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        c = r.cpu_us_per_message
        flag = "" if r.ratio is None or r.ratio >= TARGET_RATIO else "  (below 0.9)"
        client = f"{num(c.get('native_client'))} / {num(c.get('bench_client'))}"
        brk = f"{num(c.get('native_broker'))} / {num(c.get('bench_broker'))}"
        lines.append(
            f"{r.broker:9} {r.engine:7} {r.path:7} {r.send_mode:7} {num(r.native_rate):>10} "
            f"{num(r.bench_rate):>10} {num(r.ratio, '.2f'):>6} {num(r.consume_rate):>10} "
            f"{num(r.consume_ratio, '.2f'):>8}  "
            f"{client:>17}  {brk:>17}  {r.notes}{flag}"
        )
    lines.append(
        "(consumed/s: our consumers at bench/s offered, one subscription; of acked: their rate "
        "over what the producers got acknowledged in that run. CPU per message: native tool / "
        "our workers, and the broker during each)"
    )
    return "\n".join(lines)


@click.command("calibrate")
@click.option(
    "--broker",
    type=click.Choice(["pulsar", "rocketmq", "all"]),
    default="all",
    show_default=True,
)
@click.option(
    "--engine",
    type=click.Choice([*ENGINES, "all"]),
    default="all",
    show_default=True,
    help="The load engine(s) to measure against the native tool.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
@click.option("--message-size", type=click.IntRange(64, 4 << 20), default=1024, show_default=True)
@click.option("--seconds", type=click.FloatRange(1, 3600), default=20.0, show_default=True)
@click.option(
    "--warmup", type=click.FloatRange(0, 600), default=3.0, show_default=True, help="Seconds."
)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 10000),
    default=5000,
    show_default=True,
    help="Outstanding async sends per worker (pulsar-perf's own limit is memory-based).",
)
@click.option(
    "--infra-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Use the brokers already up in this infra directory instead of starting our own.",
)
@click.option(
    "--port-offset",
    type=click.IntRange(0, 40000),
    default=13000,
    show_default=True,
    help="Port offset of the brokers calibrate starts itself.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Alternate native and bench runs this many times; report the medians.",
)
@click.option(
    "--bare",
    is_flag=True,
    help="Pulsar: also time pulsar-client's own send loop alone, the library's ceiling here.",
)
@click.option(
    "--min-ratio",
    type=click.FloatRange(0, 10),
    default=None,
    help="Exit non-zero if any ratio is below this (for CI).",
)
def calibrate_cmd(
    broker: str,
    engine: str,
    as_json: bool,
    message_size: int,
    seconds: float,
    warmup: float,
    workers: int,
    max_in_flight: int,
    infra_dir: Path | None,
    port_offset: int,
    rounds: int,
    bare: bool,
    min_ratio: float | None,
) -> None:
    """Compare the native Java tools' maximum rate with our driver's, on the same broker."""
    brokers = cast(tuple[Broker, ...], ("pulsar", "rocketmq") if broker == "all" else (broker,))

    def progress(msg: str) -> None:
        click.echo(f"  {msg}", err=True)

    work = Path(tempfile.mkdtemp(prefix="calibrate-", dir=_work_root()))
    rows: list[CalibrationRow] = []
    try:
        for b in brokers:
            rows += _calibrate_one(
                b,
                infra_dir=infra_dir,
                port_offset=port_offset,
                size=message_size,
                seconds=seconds,
                warmup=warmup,
                workers=workers,
                max_in_flight=max_in_flight,
                work=work,
                progress=progress,
                rounds=rounds,
                bare=bare,
                engines=cast(tuple[Engine, ...], ENGINES if engine == "all" else (engine,)),
            )
    finally:
        if infra_dir is None:
            shutil.rmtree(work / "infra", ignore_errors=True)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        click.echo(_format_table(rows))
        click.echo(f"(logs of the native tools: {work})")
    if min_ratio is not None:
        low = [r for r in rows if r.ratio is None or r.ratio < min_ratio]
        if low:
            what = ", ".join(f"{r.broker}/{r.engine}/{r.path}/{r.send_mode}={r.ratio}" for r in low)
            raise BenchError(f"calibration ratio below {min_ratio}: {what}")


def _metered(broker: Broker, infra: Infra, kwargs: dict[str, Any]) -> list[CalibrationRow]:
    """:func:`calibrate_broker` with every live process of ``broker`` in ``infra`` (broker,
    name server, proxy...) metered as the broker side."""
    with CpuMeter() as cpu:
        for name, pid in infra.pids().items():
            if name.split("/", 1)[0] == broker:
                cpu.watch(BROKER, pid)
        return calibrate_broker(broker, infra.endpoints(broker), cpu=cpu, **kwargs)


def _work_root() -> Path:
    root = bench_home() / "calibrate"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _calibrate_one(
    broker: Broker,
    *,
    infra_dir: Path | None,
    port_offset: int,
    size: int,
    seconds: float,
    warmup: float,
    workers: int,
    max_in_flight: int,
    work: Path,
    progress: Callable[[str], None],
    rounds: int,
    bare: bool = False,
    engines: Sequence[Engine] = ("python",),
) -> list[CalibrationRow]:
    kwargs: dict[str, Any] = {
        "rounds": rounds,
        "bare": bare,
        "engines": engines,
        "size": size,
        "seconds": seconds,
        "warmup": warmup,
        "workers": workers,
        "max_in_flight": max_in_flight,
        "work": work,
        "progress": progress,
    }
    if infra_dir is not None:
        return _metered(broker, Infra(infra_dir), kwargs)
    infra = Infra(work / "infra" / broker)
    progress(f"starting {broker} (port offset {port_offset}) in {infra.root}")
    try:
        infra.up(InfraSettings(brokers=(broker,), port_offset=port_offset), progress=progress)
        return _metered(broker, infra, kwargs)
    finally:
        progress(f"stopping {broker}")
        try:
            infra.down(graceful=False)  # its own temporary brokers: nothing to keep
        except BenchError as exc:
            progress(f"stopping {broker}: {exc}")
