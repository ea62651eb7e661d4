"""Both drivers and the worker pool against real brokers (no fakes stand in for a broker here).

Each broker is the session's shared standalone one (``shared_pulsar``, ``shared_rocketmq`` in
conftest). Tests that kill the broker run last for their broker and restart it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
from click.testing import CliRunner

from bench.drivers.base import Driver, open_driver
from bench.drivers.rocketmq.driver import DEFAULTS as ROCKETMQ_DEFAULTS
from bench.engines.pool import WorkerPool
from bench.engines.protocol import Engine
from bench.engines.spec import H_PUBLISH, LoadSpec, split_topics
from bench.infra.manager import Infra
from bench.infra.topology import Broker
from bench.metrics.intervals import ACKED, SENT, IntervalStats, merge
from bench.runner.calibrate import calibrate_cmd
from tests.integration.pulsar_admin import subscriptions
from tests.integration.pulsar_admin import topics as pulsar_topics

pytestmark = pytest.mark.integration

PATHS = {"pulsar": "direct", "rocketmq": "proxy"}


@pytest.fixture(scope="module", params=["pulsar", "rocketmq"])
def infra(request: pytest.FixtureRequest) -> tuple[str, Infra]:
    broker: str = request.param
    shared: Infra = request.getfixturevalue(f"shared_{broker}")
    return broker, shared


def _driver(broker: str, infra: Infra, path: str | None = None) -> Driver:
    return open_driver(broker, infra.endpoints(cast(Broker, broker)), path=path or PATHS[broker])


def _names(prefix: str, n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{prefix}-{tag}-{i}" for i in range(n)]


def test_create_1000_topics_and_look_each_up(infra: tuple[str, Infra]) -> None:
    broker, inf = infra
    names = _names("grow", 1000)
    with _driver(broker, inf) as driver:
        started = time.monotonic()
        results = list(driver.create_topics(names, concurrency=32))
        took = time.monotonic() - started
        failed = [r for r in results if not r.ok]
        assert not failed, f"{len(failed)} creations failed, e.g. {failed[:3]}"
        assert sorted(r.name for r in results) == sorted(names)
        assert all(r.latency_us > 0 for r in results)
        print(f"{broker}: 1000 topics in {took:.1f} s ({1000 / took:.0f}/s)")

        with ThreadPoolExecutor(16) as pool:
            admin = list(pool.map(lambda t: driver.lookup(t, 30.0, "admin"), names))
        assert len(admin) == 1000 and all(us > 0 for us in admin)
        # The client-side lookup (Pulsar: a producer's binary lookup; RocketMQ: the proxy's
        # QueryRoute) is slower to set up; a sample of 100 topics covers it.
        client = [driver.lookup(t, 30.0, "client") for t in names[::10]]
        assert len(client) == 100 and all(us > 0 for us in client)

        missing = f"never-created-{uuid.uuid4().hex[:6]}"
        if broker == "rocketmq":
            # Auto-creation is off: a lookup of an unknown topic is a broker refusal.
            with pytest.raises(Exception) as err:
                driver.lookup(missing, 10.0, "admin")
            assert driver.classify(err.value) == "broker_error"


def _run(
    broker: str,
    inf: Infra,
    topics: list[str],
    *,
    workers: int,
    path: str,
    send_mode: str = "async",
    rate: float | None = None,
    max_messages: int | None = None,
    duration_s: float | None = None,
    subs: int = 1,
) -> tuple[list[IntervalStats], bool, WorkerPool]:
    run_id = f"it-{uuid.uuid4().hex[:8]}"
    ep = inf.endpoints(cast(Broker, broker))
    specs = [
        LoadSpec(
            worker_id=f"w{i}",
            broker=broker,
            endpoints=LoadSpec.endpoints_text(ep),
            run_id=run_id,
            topics=shard,
            path=path,
            send_mode=send_mode,
            rate_per_s=rate / workers if rate else None,
            max_messages=max_messages // workers if max_messages else None,
            duration_s=duration_s,
            subscriptions_per_topic=subs,
            max_in_flight=200,
            deadline_s=300.0,
        )
        for i, shard in enumerate(split_topics(topics, workers))
    ]
    pool = WorkerPool()
    stats: list[IntervalStats] = []
    try:
        pool.start(specs)
        deadline = time.monotonic() + 120
        while not pool.producers_done() and time.monotonic() < deadline:
            stats += pool.poll(0.5)
        assert pool.producers_done(), "producers did not finish in 120 s"
        drained = pool.drain(90.0)
        stats += pool.poll(0)
    except BaseException:
        pool.stop()
        raise
    return stats, drained, pool


def test_sequenced_messages_arrive_with_zero_loss(infra: tuple[str, Infra]) -> None:
    broker, inf = infra
    topics = _names("seq", 4)
    with _driver(broker, inf) as driver:
        assert all(r.ok for r in driver.create_topics(topics))
    stats, drained, pool = _run(
        broker, inf, topics, workers=2, path=PATHS[broker], rate=400.0, duration_s=5.0, subs=2
    )
    try:
        book = pool.ledgers()
    finally:
        pool.stop()
    stats += pool.poll(0)  # the final interval, shipped as the workers stop
    assert not pool.failures
    assert drained, "every acknowledged message must arrive in a clean run"
    reports = book.reconcile()
    assert len(reports) == len(topics) * 2
    merged = merge(stats)
    # RocketMQ's 5.x client (the proxy path) sends a message again when an attempt times out
    # (request_timeout_s): if the first attempt was stored, every group gets it twice, and the
    # ledger counts a duplicate. Only a send that took that long can have been retried.
    slowest_us = merged.histogram(H_PUBLISH).get_max_value()
    retried = broker == "rocketmq" and slowest_us >= ROCKETMQ_DEFAULTS["request_timeout_s"] * 1e6
    for r in reports:
        assert r.acked > 0, f"{r.topic}/{r.subscription}: nothing acknowledged"
        assert (r.lost, r.received_not_acked) == (0, 0), r
        assert r.duplicated == 0 or retried, (r, f"slowest send {slowest_us} us")
        assert r.received == r.acked
    assert merged.counters[SENT] == merged.counters[ACKED] == sum(r.acked for r in reports) // 2
    assert not merged.errors


@pytest.mark.parametrize(("producing", "consuming"), [("python", "jvm"), ("jvm", "python")])
def test_the_ledger_is_exact_across_engines(
    infra: tuple[str, Infra], producing: str, consuming: str
) -> None:
    """One engine's producers, the other's consumers, on the same topics: one payload format
    and one ledger, so every acknowledged message is counted exactly once."""
    broker, inf = infra
    topics = _names(f"x-{producing}", 2)
    with _driver(broker, inf, "direct") as driver:
        assert all(r.ok for r in driver.create_topics(topics))
    run_id = f"cross-{uuid.uuid4().hex[:8]}"
    common = {
        "broker": broker,
        "endpoints": LoadSpec.endpoints_text(inf.endpoints(cast(Broker, broker))),
        "run_id": run_id,
        "topics": tuple(topics),
        "path": "direct",
        "deadline_s": 300.0,
        "subscription_prefix": f"cross-{producing}",
    }
    consumer_spec = LoadSpec(
        worker_id="c0", producers_per_topic=0, subscriptions_per_topic=1, **common
    )
    producer_spec = LoadSpec(
        worker_id="p0",
        producers_per_topic=1,
        subscriptions_per_topic=0,
        rate_per_s=500.0,
        max_messages=1500,
        **common,
    )
    with (
        WorkerPool(cast(Engine, consuming)) as consumers,
        WorkerPool(cast(Engine, producing)) as producers,
    ):
        consumers.start([consumer_spec])  # subscribed before the first send
        producers.start([producer_spec])
        deadline = time.monotonic() + 60
        stats: list[IntervalStats] = []
        while not producers.producers_done() and time.monotonic() < deadline:
            stats += producers.poll(0.5)
        assert producers.drain(30.0)  # no subscriptions of its own: every ack is in
        stats += producers.poll(0)
        book = producers.ledgers()
        acked = sum(len(p.acked) for p in book.producers.values())
        while time.monotonic() < deadline:
            book = producers.ledgers()
            book.join(consumers.ledgers())
            if sum(r.received for r in book.reconcile()) >= acked:
                break
            time.sleep(0.5)
        assert not producers.failures and not consumers.failures
    reports = book.reconcile()
    assert len(reports) == len(topics)
    # Every send is in the ledger; one that failed is counted as failed, never as lost. Sends do
    # fail on a starved machine: RocketMQ refuses every send that waited 200 ms in its queue
    # (SYSTEM_BUSY, "[TIMEOUT_CLEAN_QUEUE]"), so a broker without CPU for half a second refuses
    # half a second of sends at once (CI under load: 198 of 1,500), and a connection the
    # client dropped fails what it held (both CPUs busy with other work: 499). Each failure
    # is the broker's or the connection's, and is in the error counts; one that the broker
    # stored all the same arrives as received-not-acked, never as lost or duplicated.
    producers_ = book.producers.values()
    assert sum(len(p.sent) for p in producers_) == 1500
    failed = sum(len(p.failed) for p in producers_)
    errors: dict[str, int] = {}
    for s in stats:
        for k, v in s.errors.items():
            errors[k] = errors.get(k, 0) + v
    send_errors = {k: v for k, v in errors.items() if k.startswith("send.")}
    assert sum(send_errors.values()) == failed, errors
    assert set(send_errors) <= {f"send.{k}" for k in ("broker_error", "disconnected", "timeout")}
    assert failed <= 1500 // 2, f"{failed} of 1,500 sends failed"
    assert sum(r.acked for r in reports) == 1500 - failed
    assert sum(r.received_not_acked for r in reports) <= failed
    for r in reports:
        assert (r.lost, r.duplicated) == (0, 0), r
        assert r.received == r.acked + r.received_not_acked
    if broker == "pulsar":  # the consumers' warm-up subscription is gone (remoting cannot)
        assert subscriptions(inf.endpoints("pulsar"), topics[0]) == {f"cross-{producing}-0"}


def test_sync_sends_through_the_other_path(infra: tuple[str, Infra]) -> None:
    broker, inf = infra
    # Pulsar: its direct path (test_jvm_worker takes the proxy); RocketMQ: remoting to the broker.
    path = "direct"
    topics = _names("sync", 2)
    with _driver(broker, inf) as driver:
        assert all(r.ok for r in driver.create_topics(topics))
    _stats, drained, pool = _run(
        broker, inf, topics, workers=1, path=path, send_mode="sync", max_messages=300
    )
    try:
        book = pool.ledgers()
    finally:
        pool.stop()
    assert drained and not pool.failures
    reports = book.reconcile()
    assert sum(r.acked for r in reports) == 300
    assert sum(r.lost + r.duplicated for r in reports) == 0


@pytest.mark.parametrize("infra", ["rocketmq"], indirect=True)  # ONEWAY is RocketMQ's alone
def test_rocketmq_oneway_sends_arrive(infra: tuple[str, Infra]) -> None:
    broker, inf = infra
    topics = _names("oneway", 2)
    with _driver(broker, inf, "direct") as driver:
        assert all(r.ok for r in driver.create_topics(topics))
        _stats, drained, pool = _run(
            broker,
            inf,
            topics,
            workers=2,
            path="direct",
            send_mode="oneway",
            rate=500.0,
            max_messages=2000,
        )
        try:
            book = pool.ledgers()
        finally:
            pool.stop()
        stored = driver.broker_stats(topics)
    assert not pool.failures
    sent = sum(len(p.sent) for p in book.producers.values())
    assert sent == 2000
    assert all(len(p.acked) == 0 for p in book.producers.values())
    received = sum(len(r.received) for c in book.consumers.values() for r in c.by_producer.values())
    # The consumers count exactly what the broker stored. A broker starved of CPU drops a
    # ONEWAY request that waited 200 ms in its send queue, and nothing tells the client: the
    # drain then ends unfinished, short by exactly those, and they stay rare.
    assert received == stored["messages_in"], "consumers count every stored ONEWAY message"
    assert drained == (received == sent), (drained, received, sent)
    assert sent - received <= sent // 100, f"{sent - received} of {sent} ONEWAY sends not stored"


# bench calibrate --json rounds ratios to 3 decimals (CalibrationRow.to_json).
ROUNDED_RATIO = 0.0005


def _calibrate_engine(broker: str) -> str:
    # RocketMQ has three paths (proxy, direct async, direct ONEWAY), each a native and a bench
    # run per engine: CI measures them with one engine, the nightly job with both; Pulsar's two
    # rows take both engines everywhere. CI's is the Python engine (six more runs of the JVM
    # engine's start would cost CI about a minute); the nightly job measures both.
    if broker == "rocketmq" and os.environ.get("BENCH_NIGHTLY") != "1":
        return "python"
    return "all"


def test_calibrate_json_end_to_end(infra: tuple[str, Infra]) -> None:
    broker, inf = infra
    engine = _calibrate_engine(broker)
    result = CliRunner().invoke(
        calibrate_cmd,
        [
            "--broker",
            broker,
            "--engine",
            engine,
            "--json",
            "--seconds",
            "4",
            "--warmup",
            "1",
            "--workers",
            "2",
            "--infra-dir",
            str(inf.root),
            "--bare",  # Pulsar only: the client library's own loop; nothing for RocketMQ
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    expected = (
        {("pulsar", "direct", "async"), ("pulsar", "bare", "async")}
        if broker == "pulsar"
        else {
            ("rocketmq", "proxy", "async"),
            ("rocketmq", "direct", "async"),
            ("rocketmq", "direct", "oneway"),
        }
    )
    engines = {"python", "jvm"} if engine == "all" else {engine}
    want = {(*e, name) for e in expected for name in engines if e[1] != "bare"}
    want |= {(*e, "python") for e in expected if e[1] == "bare"}
    assert {(r["broker"], r["path"], r["send_mode"], r["engine"]) for r in rows} == want
    for bare in [r for r in rows if r["path"] == "bare"]:
        # One process of pulsar-client with nothing of ours: a rate and its CPU per message.
        assert bare["bench_rate"] > 0 and bare["workers"] == 1
        assert bare["cpu_us_per_message"]["bench_client"] > 0
    for row in [r for r in rows if r["path"] != "bare"]:
        assert row["native_rate"] > 0 and row["bench_rate"] > 0
        assert row["ratio"] == pytest.approx(
            row["bench_rate"] / row["native_rate"], rel=0.01, abs=ROUNDED_RATIO
        )
        assert row["message_size"] == 1024 and row["workers"] == 2
        # The consumers ran at the rate the producers reached; how much of it they took is a
        # figure (bench calibrate prints it), not something a test on a shared machine can fix.
        assert row["consume_offered_rate"] == pytest.approx(row["bench_rate"], rel=0.01)
        # Measured, never null; how much of the offered rate the consumers took is the
        # benchmark's figure (on a loaded machine a consumer may take nothing in 4 s).
        assert row["consume_rate"] is not None and row["consume_rate"] >= 0, row
        # What the producers of that run got acknowledged (the broker's count for ONEWAY), and
        # the consumers' share of it.
        produced = row["consume_acked_rate"]
        assert produced is not None and produced > 0, row
        assert row["consume_ratio"] == pytest.approx(
            row["consume_rate"] / produced, rel=0.01, abs=ROUNDED_RATIO
        )
        assert row["notes"]
        # Where the difference comes from: CPU per message of each client and of the broker.
        cpu = row["cpu_us_per_message"]
        assert set(cpu) == {"native_client", "native_broker", "bench_client", "bench_broker"}
        assert cpu["native_client"] > 0 and cpu["bench_client"] > 0, cpu
        assert cpu["native_broker"] > 0 and cpu["bench_broker"] > 0, cpu
    if broker == "pulsar":
        # On brokers it did not start, calibrate deletes its topics and what they hold.
        left = sorted(
            t for t in pulsar_topics(inf.endpoints("pulsar")) if t.startswith("calibrate-")
        )
        assert left == [], left


def test_producers_survive_a_kill_9_and_restart(infra: tuple[str, Infra]) -> None:
    """Runs last for its broker: the broker is killed and restarted under load."""
    broker, inf = infra
    topics = _names("kill", 2)
    with _driver(broker, inf) as driver:
        assert all(r.ok for r in driver.create_topics(topics))
    ep = inf.endpoints(cast(Broker, broker))
    specs = [
        LoadSpec(
            worker_id="k0",
            broker=broker,
            endpoints=LoadSpec.endpoints_text(ep),
            run_id=f"kill-{uuid.uuid4().hex[:6]}",
            topics=tuple(topics),
            path=PATHS[broker],
            rate_per_s=100.0,
            subscriptions_per_topic=1,
            max_in_flight=500,
            deadline_s=400.0,
        )
    ]
    target = inf.killable(cast(Broker, broker))[0]
    with WorkerPool() as pool:
        pool.start(specs)
        before = _acked_within(pool, 3.0)
        assert before > 0
        inf.kill9(target)
        inf.restart(target)
        # Clients reconnect by themselves; acknowledgements must resume (polled: the test ends
        # at the first one).
        after = _acked_within(pool, 60.0, first=True)
        assert not pool.failures, pool.failures
        assert after > 0, "no send was acknowledged after the broker came back"
        pool.stop()


def _acked_within(pool: WorkerPool, seconds: float, *, first: bool = False) -> int:
    """Acknowledgements within ``seconds`` (``first``: returns at the first ones)."""
    acked = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (first and acked):
        acked += sum(s.counters.get(ACKED, 0) for s in pool.poll(0.5))
    return acked
