"""The remoting pull consumer against a real RocketMQ 5.3.3 broker (started once per module).

Every test uses its own topics and groups. The kill -9 test runs last: it restarts the broker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future

import pytest

from bench.drivers.base import open_driver
from bench.drivers.rocketmq.driver import RocketMQClient, _PullGroup
from bench.infra.manager import Infra
from bench.infra.topology import Endpoints
from bench.metrics.ledger import ConsumerLedger, encode_payload
from bench.protocol.remoting import RemotingClient, RemotingError, SendResult, wait_result
from bench.protocol.remoting_codec import ResponseCode
from bench.protocol.remoting_pull import PullConsumer

pytestmark = pytest.mark.integration

SIZE = 1024


@pytest.fixture(scope="module")
def rmq(shared_rocketmq: Infra) -> tuple[Infra, Endpoints]:
    """RocketMQ standalone, the session's shared one."""
    return shared_rocketmq, shared_rocketmq.endpoints("rocketmq")


def _create(ep: Endpoints, *topics: str) -> None:
    with open_driver("rocketmq", ep, path="direct") as driver:
        results = list(driver.create_topics(list(topics)))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]


def _send(
    ep: Endpoints, topic: str, run_id: str, seqs: Iterable[int], pid: str = "p0", window: int = 256
) -> None:
    """Acknowledged, pipelined sends of payloads ``seqs`` (1 KiB each).

    A send the broker refuses under flow control (SYSTEM_BUSY: not stored) is sent again.
    """
    todo = deque(seqs)
    inflight: deque[tuple[int, Future[SendResult]]] = deque()
    refused = 0
    with RemotingClient(ep.namesrv, timeout=10) as client:
        while todo or inflight:  # each pass sends or settles one; refusals are bounded below
            if todo and len(inflight) < window:
                s = todo.popleft()
                body = encode_payload(run_id, pid, s, time.time_ns(), SIZE)
                inflight.append((s, client.send_async(topic, body)))
                continue
            s, fut = inflight.popleft()
            try:
                wait_result(fut, 10)
            except RemotingError as exc:
                refused += 1
                if exc.code != ResponseCode.SYSTEM_BUSY or refused > 10_000:
                    raise
                todo.append(s)
                time.sleep(0.01)


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _received(ledger: ConsumerLedger, pid: str = "p0") -> set[int]:
    r = ledger.by_producer.get(pid)
    return {n for a, b in r.received for n in range(a, b + 1)} if r else set()


def _count(ledger: ConsumerLedger) -> int:
    return sum(len(r.received) for r in ledger.by_producer.values())


def _dups(ledger: ConsumerLedger) -> int:
    return sum(r.duplicates for r in ledger.by_producer.values())


def _recorder(ledger: ConsumerLedger) -> Callable[[bytes, int], None]:
    def on_message(body: bytes, _receive_ns: int) -> None:
        ledger.record_payload(body)

    return on_message


def test_four_consumers_get_100k_messages_exactly_once(rmq: tuple[Infra, Endpoints]) -> None:
    _, ep = rmq
    topic, group, run_id = "pull-exact", "g-exact", uuid.uuid4().hex[:8]
    n = 100_000
    _create(ep, topic)
    ledger = ConsumerLedger(run_id, topic, group, "test")
    errors: list[BaseException] = []
    consumers = [
        PullConsumer(
            group, namesrv=ep.namesrv, consumer_index=i, consumer_count=4, on_error=errors.append
        )
        for i in range(4)
    ]
    try:
        for c in consumers:
            c.subscribe(topic, _recorder(ledger))
        shares = [c.assignment(topic) for c in consumers]
        queues = [(b, q) for share in shares for b, q, _off in share]
        assert [len(s) for s in shares] == [2, 2, 2, 2]
        assert sorted(queues) == [("broker-a", i) for i in range(8)]

        started = time.monotonic()
        _send(ep, topic, run_id, range(n))
        sent_s = time.monotonic() - started
        assert _wait_for(lambda: _count(ledger) >= n, 60), f"{_count(ledger)} of {n} received"
        done_s = time.monotonic() - started
        time.sleep(1.0)  # nothing more may come
        assert _received(ledger) == set(range(n))
        assert _dups(ledger) == 0 and ledger.undecodable == 0 and ledger.foreign == 0
        stats = [c.stats() for c in consumers]
        assert sum(s.messages for s in stats) == n
        assert all(s.messages > 0 for s in stats)
        assert not errors, errors[:5]
        print(
            f"\n4 pull consumers, one process, while sending: {n} x {SIZE} B sent in "
            f"{sent_s:.2f}s ({n / sent_s:,.0f} msg/s), all received after {done_s:.2f}s "
            f"({n / done_s:,.0f} msg/s); pulls {sum(s.pulls for s in stats)}"
        )
    finally:
        for c in consumers:
            c.close()


def test_a_new_group_starts_at_the_end_then_resumes_from_its_commit(
    rmq: tuple[Infra, Endpoints],
) -> None:
    _, ep = rmq
    topic, group, run_id = "pull-new-group", "g-new", uuid.uuid4().hex[:8]
    _create(ep, topic)
    _send(ep, topic, run_id, range(100))
    time.sleep(0.5)  # let the broker's dispatch put them in the consume queues
    ledger = ConsumerLedger(run_id, topic, group, "test")
    errors: list[BaseException] = []
    with PullConsumer(group, namesrv=ep.namesrv, on_error=errors.append) as c:
        c.subscribe(topic, _recorder(ledger))
        assert sum(off for _b, _q, off in c.assignment(topic)) == 100  # at the end
        _send(ep, topic, run_id, range(100, 200))
        assert _wait_for(lambda: _count(ledger) >= 100, 20)
        time.sleep(0.5)
    assert _received(ledger) == set(range(100, 200)), "messages sent before it came too"
    assert not errors, errors[:5]

    # Closed: its offsets are committed; the same group resumes from them, not from the end.
    _send(ep, topic, run_id, range(200, 250))
    time.sleep(0.5)
    again = ConsumerLedger(run_id, topic, group, "test-2")
    with PullConsumer(group, namesrv=ep.namesrv, on_error=errors.append) as c:
        c.subscribe(topic, _recorder(again))
        assert _wait_for(lambda: _count(again) >= 50, 20)
        time.sleep(0.5)
    assert _received(again) == set(range(200, 250))
    assert _dups(again) == 0 and not errors, errors[:5]


def test_driver_direct_path_consumers_share_one_pull_consumer_per_group(
    rmq: tuple[Infra, Endpoints],
) -> None:
    _, ep = rmq
    topics = ["pull-drv-0", "pull-drv-1"]
    run_id = uuid.uuid4().hex[:8]
    with open_driver("rocketmq", ep, path="direct") as driver:
        assert all(r.ok for r in driver.create_topics(topics))
        client = driver.new_client()
        producers_client = driver.new_client()
        ledgers = {t: ConsumerLedger(run_id, t, "sub-drv", t) for t in topics}
        try:
            consumers = [
                driver.consumer(t, "sub-drv", _recorder(ledgers[t]), client) for t in topics
            ]
            assert isinstance(client, RocketMQClient)
            group = client.group("sub-drv")
            assert isinstance(group, _PullGroup)
            assert set(group.consumer.topics) == set(topics)
            for i, t in enumerate(topics):
                p = driver.producer(t, "async", producers_client)
                acked = threading.Semaphore(0)

                def on_ack(exc: BaseException | None, acked: threading.Semaphore = acked) -> None:
                    if exc is None:
                        acked.release()

                for s in range(200):
                    p.send_async(encode_payload(run_id, f"p{i}", s, time.time_ns(), SIZE), on_ack)
                for _ in range(200):
                    assert acked.acquire(timeout=10)
            assert _wait_for(lambda: all(_count(lg) >= 200 for lg in ledgers.values()), 20)
            time.sleep(0.5)
            for i, t in enumerate(topics):
                assert _received(ledgers[t], f"p{i}") == set(range(200))
                assert _dups(ledgers[t]) == 0
            assert all(c.restarts == 0 for c in consumers)
            consumers[0].close()
            assert group.consumer.topics == (topics[1],)
            consumers[1].close()
            assert "sub-drv" not in client._groups
        finally:
            client.close()
            producers_client.close()


def test_a_killed_broker_comes_back_and_consumption_resumes(
    rmq: tuple[Infra, Endpoints],
) -> None:
    """Runs last: kill -9 the broker, restart it; the consumer keeps retrying and resumes."""
    infra, ep = rmq
    topic, group, run_id = "pull-kill", "g-kill", uuid.uuid4().hex[:8]
    _create(ep, topic)
    ledger = ConsumerLedger(run_id, topic, group, "test")
    errors: list[BaseException] = []
    with PullConsumer(group, namesrv=ep.namesrv, on_error=errors.append, max_backoff_s=1.0) as c:
        c.subscribe(topic, _recorder(ledger))
        _send(ep, topic, run_id, range(1000))
        assert _wait_for(lambda: _count(ledger) >= 1000, 20)
        infra.kill9("rocketmq/broker")
        assert _wait_for(lambda: len(errors) > 0, 10), "pulls should fail while it is down"
        killed_errors = c.stats().errors
        infra.restart("rocketmq/broker")
        # Sends fail until it registers again: probe (another run, so the ledger only counts
        # it as foreign), then send each sequence number once.
        deadline = time.monotonic() + 60
        while True:
            try:
                _send(ep, topic, "probe", [0])
                break
            except Exception:
                assert time.monotonic() < deadline, "the restarted broker took no send in 60 s"
                time.sleep(0.5)
        _send(ep, topic, run_id, range(1000, 2000))
        assert _wait_for(lambda: _count(ledger) >= 2000, 30), f"{_count(ledger)} of 2000"
        time.sleep(0.5)
        stats = c.stats()
    assert _received(ledger) == set(range(2000))
    assert _dups(ledger) == 0
    assert stats.errors >= killed_errors > 0
    print(f"\nkill -9: {killed_errors} failed requests while down, then resumed; {stats}")
