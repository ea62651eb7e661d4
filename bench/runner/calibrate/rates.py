"""Our workers' rates on one topic (closed loop or at a rate), and pulsar-client's bare loop."""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from dataclasses import dataclass
from typing import Any

from bench.drivers.base import open_driver
from bench.engines.pool import WorkerPool
from bench.engines.protocol import Engine
from bench.engines.spec import LoadSpec, is_warmup
from bench.errors import BenchError
from bench.infra.topology import Broker, Endpoints
from bench.metrics.intervals import ACKED, RECEIVED, SENT, merge
from bench.metrics.resources import CpuMeter
from bench.runner.calibrate.native import CLIENT_BENCH, NATIVE_GRACE_S


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


def worker_topic(topic: str, worker: int) -> str:
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
    peak: bool = False,
) -> BenchRate:
    """Run ``workers`` producer processes of ``engine`` on ``topic``, closed loop unless
    ``rate_per_s`` (in total) is given, with ``subscriptions`` consumers; measure the window
    after ``warmup``. With ONEWAY the broker's stored-message count gives ``broker_rate``.
    With consumers, worker i uses ``worker_topic(topic, i)``: the runner shards topics over
    workers and a worker's consumers own every queue of its topics, so workers sharing one topic
    would each receive every message of a RocketMQ group."""
    run_id = f"cal-{uuid.uuid4().hex[:8]}"
    specs = [
        LoadSpec(
            worker_id=f"cal{i}",
            broker=broker,
            endpoints=LoadSpec.endpoints_text(ep),
            run_id=run_id,
            topics=(worker_topic(topic, i) if subscriptions else topic,),
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
    with open_driver(broker, ep, path=path) as admin, WorkerPool(engine, peak=peak) as pool:
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
