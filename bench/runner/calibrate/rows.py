"""One calibration row per (broker, engine, path, mode): the native tool against our engines."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.drivers.base import open_driver
from bench.engines.protocol import Engine
from bench.errors import BenchError, BrokerStartError
from bench.infra.topology import Broker, Endpoints
from bench.metrics.resources import CpuMeter
from bench.runner.calibrate.native import (
    BROKER,
    CLIENT_BENCH,
    CLIENT_NATIVE,
    native_pulsar,
    native_rocketmq,
)
from bench.runner.calibrate.rates import BenchRate, bare_pulsar, bench_rate, worker_topic
from bench.runner.load import ENGINE_WORKERS

TARGET_RATIO = 0.9


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
    workers: int | None,
    max_in_flight: int,
    work: Path,
    progress: Callable[[str], None],
    rounds: int,
    cpu: CpuMeter,
    bare: bool = False,
    engines: Sequence[Engine] = ("python",),
    created: list[str] | None = None,
) -> list[CalibrationRow]:
    """Native tool, then each engine's workers on each path, ``rounds`` times interleaved; one
    row per (engine, path, mode) with the medians (a shared machine's load drifts, so the sides
    are measured alternately rather than one long run each). Then, per row, a run of its own at
    the rate the producers reached, with one subscription: the rate our consumers sustain.
    ``cpu`` meters the clients as they start, beside whatever broker processes it watches.
    ``created`` gets the names of the topics as they are created (the caller deletes them)."""
    tag = uuid.uuid4().hex[:6]

    def workers_of(engine: Engine) -> int:
        return workers if workers is not None else ENGINE_WORKERS[engine]

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
            *(
                worker_topic(t, i)
                for (engine, _, _), t in consume_topics.items()
                for i in range(workers_of(engine))
            ),
        ]
        if created is not None:
            created += topics
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
                f"{workers_of(engine)} workers"
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
                    workers=workers_of(engine),
                    max_in_flight=max_in_flight,
                    cpu=cpu,
                    engine=engine,
                    # ONEWAY has no acknowledgement to close a loop on: as fast as the JVM
                    # client writes, the broker's send queue overflows and it drops what does
                    # not fit (0 stored in one such run). Offered at what the broker took from
                    # the native tool, the stored rate says whether our client delivers it.
                    rate_per_s=native if mode == "oneway" else None,
                    peak=True,  # a JVM worker compiles for peak at that fixed rate too
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
                workers=workers_of(engine),
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
                workers=workers_of(engine),
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
