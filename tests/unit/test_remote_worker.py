"""Remote workers: the worker protocol over TCP (loopback), against the fake broker of
test_worker. Each server runs in this process (so the fake driver's registration reaches the
worker processes it starts); the workers are real child processes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bench.engines.pool import WorkerFailed, WorkerPool, remote_workers, reshard
from bench.engines.remote import (
    TOKEN_ENV,
    RemoteWorkerError,
    WorkerServer,
    probe_workers,
)
from bench.engines.spec import H_E2E, consistent_subscriptions, split_topics
from bench.metrics.intervals import ACKED, RECEIVED, SENT, merge
from tests.unit.test_worker import _collect, _spec, fake_driver  # noqa: F401 (a fixture)

# Every worker runs the fake broker of test_worker; the servers reach it by its registration.
pytestmark = pytest.mark.usefixtures("fake_driver")

TOKEN = "t0ken-for-tests"


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[WorkerServer]]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    made = [WorkerServer("127.0.0.1", 0, TOKEN) for _ in range(2)]
    for s in made:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield made
    for s in made:
        s.close()
        for child in s.children:
            if child.poll() is None:
                child.kill()
                child.wait(5)


def _specs(n_topics: int = 4, **kw: object) -> list:
    topics = [f"t{i}" for i in range(n_topics)]
    return [
        _spec(f"w{i}", shard, **{"rate_per_s": 200.0, "duration_s": 3.0, **kw})
        for i, shard in enumerate(split_topics(topics, 2))
    ]


def test_a_run_across_two_remote_workers_merges_like_a_local_one(
    servers: list[WorkerServer],
) -> None:
    addrs = [s.address for s in servers]
    with remote_workers(addrs), WorkerPool() as pool:
        assert pool.remote == tuple(addrs)
        pool.start(_specs())
        stats = _collect(pool, 3.6)
        assert pool.drain(10.0)
        book = pool.ledgers()
        pool.stop()
        stats += pool.poll(0)
        assert not pool.failures
        clocks = dict(pool.clocks)
    # One connection (one worker process) on each server.
    assert [s.connections for s in servers] == [1, 1]
    assert {s.worker_id for s in stats} == {"w0", "w1"}
    merged = merge(stats)
    # 200/s for 3 s per worker, as for local processes: all acknowledged and received once.
    assert merged.counters[SENT] == merged.counters[ACKED] == merged.counters[RECEIVED] == 1200
    assert merged.histogram(H_E2E).get_total_count() == 1200
    reports = book.reconcile()
    assert len(reports) == 4 and sum(r.lost for r in reports) == 0
    assert sum(r.received for r in reports) == 1200
    # Same host: the clocks agree within the (loopback) round trip.
    for clock in clocks.values():
        assert abs(clock.offset_ns) <= clock.bound_ns + 2_000_000
        assert clock.bound_ns < 50_000_000


def test_a_wrong_token_is_refused_at_once_with_one_clear_line(
    servers: list[WorkerServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    started = time.monotonic()
    with pytest.raises(WorkerFailed) as err, WorkerPool(remote=[servers[0].address]) as pool:
        pool.start(_specs(2)[:1])
    assert time.monotonic() - started < 5
    msg = str(err.value)
    assert f"bench worker at {servers[0].address} refused the connection: wrong token" in msg
    assert "not-the-token" not in msg and TOKEN not in msg
    assert "\n" not in msg
    assert servers[0].children == []  # no worker process for a refused connection


def test_the_server_closes_a_refused_connection(servers: list[WorkerServer]) -> None:
    host, port = servers[0].address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(json.dumps({"hello": 1, "token": "nope"}).encode() + b"\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    (line,) = data.splitlines()
    assert json.loads(line)["event"] == "failed"


def test_a_worker_lost_mid_step_fails_the_step_and_only_that_pool(
    servers: list[WorkerServer],
) -> None:
    addrs = [s.address for s in servers]
    pool = WorkerPool(remote=addrs)
    try:
        pool.start(_specs(duration_s=30.0))
        _collect(pool, 1.5)
        servers[1].children[0].kill()  # the host of shard w1 goes away
        with pytest.raises(
            RemoteWorkerError, match=r"remote worker w1 \(bench worker at .*\) disconnected"
        ):
            _collect(pool, 10.0)
    finally:
        pool.stop(10.0)
    assert pool.failures.keys() == {"w1"}
    # The servers live on: the next step's pool runs on both again.
    with WorkerPool(remote=addrs) as again:
        again.start(_specs(duration_s=1.0))
        stats = _collect(again, 2.0)
        assert again.drain(10.0)
    assert {s.worker_id for s in stats} == {"w0", "w1"}


def test_probe_records_each_workers_clock_and_host(
    servers: list[WorkerServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    info = probe_workers([s.address for s in servers], seen.append)
    assert info["mode"] == "remote" and len(info["workers"]) == 2
    assert {w["address"] for w in info["workers"]} == {s.address for s in servers}
    assert all(abs(w["offset_ms"]) < 50 for w in info["workers"])
    assert len(seen) == 2 and "clock offset" in seen[0]
    monkeypatch.setenv(TOKEN_ENV, "wrong")
    with pytest.raises(RemoteWorkerError, match="wrong token"):
        probe_workers([servers[0].address], seen.append)


def test_a_skewed_worker_clock_is_measured_and_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    skew_ns = 5_000_000_000
    server = WorkerServer("127.0.0.1", 0, TOKEN, clock=lambda: time.time_ns() + skew_ns)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen: list[str] = []
        info = probe_workers([server.address], seen.append)
    finally:
        server.close()
    (w,) = info["workers"]
    assert abs(w["offset_ms"] - 5000) <= w["bound_ms"] + 5
    assert server.address in info["clock_warning"]
    assert seen[-1].startswith("WARNING: clocks of ")


def test_more_hosts_than_shards_get_a_shard_each() -> None:
    specs = _specs(6)  # two shards of three topics, 200/s each
    dealt = reshard(specs, 3)
    assert [s.worker_id for s in dealt] == ["w0", "w1", "w2"]
    assert sorted(t for s in dealt for t in s.topics) == [f"t{i}" for i in range(6)]
    assert all(len(s.topics) == 2 for s in dealt)
    assert sum(s.rate_per_s or 0 for s in dealt) == pytest.approx(400.0)
    assert reshard(specs, 2) == specs  # enough shards already
    capped = [replace(s, max_messages=10) for s in specs]
    assert reshard(capped, 3) == capped  # a per-worker cap would change the total
    # One JVM spec carrying two workers' sender threads and window, over two hosts: each host
    # gets half, not the whole again.
    one = [replace(specs[0], topics=("t0", "t1"), sender_threads=8, max_in_flight=2000)]
    halves = reshard(one, 2)
    assert [(s.topics, s.sender_threads, s.max_in_flight) for s in halves] == [
        (("t0",), 4, 1000),
        (("t1",), 4, 1000),
    ]


def test_the_start_command_carries_whether_the_worker_is_open_loop() -> None:
    """A remote JVM worker is started with the JIT flags its spec needs, like a local one."""
    from bench.engines.pool import worker_command
    from bench.engines.remote import RemoteProcess

    seen: list[tuple[str, bool]] = []

    def command(engine: str, open_loop: bool) -> tuple[list[str], dict[str, str]]:
        seen.append((engine, open_loop))
        return worker_command("python")

    server = WorkerServer("127.0.0.1", 0, TOKEN, command=command)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for n, open_loop in enumerate((True, False), start=1):
            proc = RemoteProcess(server.address, "jvm", TOKEN, open_loop=open_loop)
            deadline = time.monotonic() + 10
            while len(seen) < n and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.kill()
    finally:
        server.close()
        for child in server.children:
            if child.poll() is None:
                child.kill()
                child.wait(5)
    assert seen == [("jvm", True), ("jvm", False)]


def test_a_subscription_name_is_shared_only_by_workers_with_the_same_topics() -> None:
    """A RocketMQ consumer group's members must subscribe the same topics."""
    specs = _specs(4)  # w0: t0 t2, w1: t1 t3
    named = consistent_subscriptions(specs)
    assert [s.subscription(0) for s in named] == ["sub-s0-0", "sub-s1-0"]
    same = [replace(s, topics=("t0", "t1")) for s in specs]
    assert consistent_subscriptions(same) == same  # one group, one topic set: kept
    # A producers-only spec and a consumers-only spec over the same topics share the names;
    # another prefix is its own namespace.
    other = replace(specs[1], subscription_prefix="other")
    assert consistent_subscriptions([specs[0], other]) == [specs[0], other]
    # Remote hosts: the shards reshard deals are named after the dealing.
    dealt = consistent_subscriptions(reshard([replace(specs[0], topics=("t0", "t1"))], 2))
    assert [(s.topics, s.subscription(1)) for s in dealt] == [
        (("t0",), "sub-s0-1"),
        (("t1",), "sub-s1-1"),
    ]
