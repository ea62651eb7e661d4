"""The remoting client against a real RocketMQ 5.3.3 name server and broker.

The fixture here starts its own name server (29876) and broker (30911, also 30909/30912) as
plain JVMs from the resolved jars, in a temporary directory, and kills exactly those PIDs
afterwards. It stands in until the shared infra fixture exists.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench.errors import BrokerUnavailable, DriverError
from bench.infra.manager import Infra
from bench.protocol.remoting import (
    RemotingClient,
    RemotingConnection,
    RemotingError,
    TopicNotFound,
    pipelined,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Cluster:
    namesrv_addr: str
    broker_addr: str


@pytest.fixture(scope="module")
def cluster(shared_rocketmq: Infra) -> Cluster:
    """RocketMQ standalone (name server + broker-a), the session's shared one."""
    ep = shared_rocketmq.endpoints("rocketmq")
    return Cluster(ep.namesrv, ep.broker_addrs["broker-a"])


@pytest.fixture
def client(cluster: Cluster) -> Iterator[RemotingClient]:
    with RemotingClient(cluster.namesrv_addr, timeout=5) as c:
        yield c


def _topics(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def _put_total(client: RemotingClient, broker: str) -> int:
    return int(client.get_broker_runtime_info(broker)["msgPutTotalTodayNow"])


def _settled_put_total(client: RemotingClient, broker: str, timeout: float = 20.0) -> int:
    """The put counter once it has stopped moving for a second (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = _put_total(client, broker)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _put_total(client, broker)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            return now
    raise AssertionError(f"msgPutTotalTodayNow still moving after {timeout}s")


# --- name server and admin -------------------------------------------------------------------


def test_cluster_info_lists_the_broker(client: RemotingClient, cluster: Cluster) -> None:
    info = client.get_cluster_info()
    assert "broker-a" in info.brokers
    assert info.brokers["broker-a"].master_addr == cluster.broker_addr
    assert info.brokers["broker-a"].cluster == "DefaultCluster"
    assert info.clusters["DefaultCluster"] == ("broker-a",)


@pytest.mark.parametrize("batch_size", [100, 1], ids=["batch", "one-by-one"])
def test_create_1000_topics_and_look_each_up(
    client: RemotingClient, cluster: Cluster, batch_size: int
) -> None:
    topics = _topics(f"create-b{batch_size}", 1000)
    client.create_topics(cluster.broker_addr, topics, queue_nums=4, batch_size=batch_size)
    routes = client.get_routes(topics)
    missing = [t for t, r in routes.items() if r is None]
    assert missing == []
    for topic, route in routes.items():
        assert route is not None and route.topic == topic
        assert route.broker_addrs() == [cluster.broker_addr]
        assert [(q.write_queue_nums, q.read_queue_nums) for q in route.queues] == [(4, 4)]
    # And a sync lookup of a few, on the non-pipelined path.
    for topic in topics[::250]:
        assert client.topic_broker_addrs(topic) == [cluster.broker_addr]


def test_batch_create_is_skipped_whole_if_one_topic_exists_unchanged(
    client: RemotingClient, cluster: Cluster
) -> None:
    # Pins AdminBrokerProcessor#updateAndCreateTopicList at 5.3.3: an identical existing topic
    # short-circuits the whole list with SUCCESS. If this starts failing, the broker changed
    # and create_topics' caution can go.
    client.create_topic(cluster.broker_addr, "quirk-existing")
    client.create_topics(
        cluster.broker_addr, ["quirk-existing", "quirk-new-1", "quirk-new-2"], batch_size=3
    )
    routes = client.get_routes(["quirk-new-1", "quirk-new-2"])
    assert routes == {"quirk-new-1": None, "quirk-new-2": None}


def test_delete_topic_removes_its_route(client: RemotingClient, cluster: Cluster) -> None:
    client.create_topic(cluster.broker_addr, "to-delete")
    client.send("to-delete", b"x")
    assert client.delete_topic("to-delete") is True
    with pytest.raises(TopicNotFound) as err:
        client.get_route("to-delete")
    assert err.value.code == 17
    with pytest.raises(TopicNotFound):
        client.send("to-delete", b"x")
    assert client.delete_topic("to-delete") is False


# --- sends -----------------------------------------------------------------------------------


def test_sync_sends_return_offsets_round_robin(client: RemotingClient, cluster: Cluster) -> None:
    client.create_topic(cluster.broker_addr, "sync-send", queue_nums=2)
    results = [client.send("sync-send", f"m{i}".encode()) for i in range(10)]
    assert {r.status for r in results} == {"SEND_OK"}
    # Round-robin over the two queues, each queue's offsets counting up from 0.
    assert [r.queue.queue_id for r in results] == [0, 1] * 5
    assert [r.queue_offset for r in results] == [i // 2 for i in range(10)]
    assert len({r.msg_id for r in results}) == 10
    assert all(r.queue.broker_addr == cluster.broker_addr for r in results)


def test_async_sends_pipelined_are_all_acknowledged(
    client: RemotingClient, cluster: Cluster
) -> None:
    client.create_topic(cluster.broker_addr, "async-send", queue_nums=4)
    # A window keeps the broker's send queue short: a request waiting there over 200 ms is
    # answered SYSTEM_BUSY ([TIMEOUT_CLEAN_QUEUE]), which is flow control, not a client bug.
    results = pipelined(
        range(2000),
        lambda _: client.send_async("async-send", b"x" * 100),
        window=64,
        timeout=10,
    )
    by_queue: dict[int, list[int]] = {}
    for r in results:
        by_queue.setdefault(r.queue.queue_id, []).append(r.queue_offset)
    assert {q: sorted(o) for q, o in by_queue.items()} == {q: list(range(500)) for q in range(4)}


def test_oneway_sends_raise_put_total_by_exactly_the_number_sent(
    client: RemotingClient, cluster: Cluster
) -> None:
    client.create_topic(cluster.broker_addr, "oneway-send", queue_nums=4)
    before = _settled_put_total(client, cluster.broker_addr)
    # Paced in rounds the broker can absorb: an overloaded broker drops ONEWAY sends silently
    # (that loss is what the send-frequency scenario measures, not what this test checks).
    sent = 0
    for round_no in range(20):
        if round_no % 2:
            sent += client.send_oneway_many("oneway-send", [b"p" * 1024] * 250)
        else:
            for _ in range(250):
                client.send_oneway("oneway-send", b"o" * 1024)
            sent += 250
        deadline = time.monotonic() + 10
        while _put_total(client, cluster.broker_addr) - before < sent:
            assert time.monotonic() < deadline, f"broker stored fewer than {sent} sends"
            time.sleep(0.05)
    after = _settled_put_total(client, cluster.broker_addr)
    assert sent == 5000
    assert after - before == sent


# --- failures --------------------------------------------------------------------------------


def test_unreachable_broker_raises_broker_unavailable_within_timeout(
    client: RemotingClient,
) -> None:
    with socket.socket() as s:  # a port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        RemotingConnection(f"127.0.0.1:{port}", connect_timeout=1.0)
    with RemotingClient(f"127.0.0.1:{port}", timeout=1.0) as dead:
        with pytest.raises(BrokerUnavailable):
            dead.get_cluster_info()
        with pytest.raises(BrokerUnavailable):
            dead.get_broker_runtime_info(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 3.0


def test_broker_error_response_raises_driver_error_with_code_and_remark(
    client: RemotingClient, cluster: Cluster
) -> None:
    with pytest.raises(RemotingError) as err:
        client.create_topic(cluster.broker_addr, "bad topic!")
    assert isinstance(err.value, DriverError)
    assert err.value.code == 29  # INVALID_PARAMETER
    assert err.value.remark is not None and "illegal characters" in err.value.remark
    assert "code 29" in str(err.value) and "illegal characters" in str(err.value)


def test_send_to_a_topic_the_broker_lacks_is_refused(
    client: RemotingClient, cluster: Cluster
) -> None:
    client.create_topic(cluster.broker_addr, "half-deleted")
    client.send("half-deleted", b"x")  # caches the route
    client.delete_topic_in_broker(cluster.broker_addr, "half-deleted")
    with pytest.raises(RemotingError) as err:
        client.send("half-deleted", b"x")
    assert err.value.code == 17  # TOPIC_NOT_EXIST
    # The broker refuses it; only if its 30 s re-registration ran in between has the name
    # server already dropped the route and refused first.
    assert err.value.addr in (cluster.broker_addr, cluster.namesrv_addr)


def test_an_oversized_message_is_refused_by_the_broker(
    client: RemotingClient, cluster: Cluster
) -> None:
    client.create_topic(cluster.broker_addr, "oversized")
    with pytest.raises(RemotingError) as err:
        client.send("oversized", b"z" * (4 * 1024 * 1024 + 1))  # maxMessageSize is 4 MiB
    assert err.value.code == 13  # MESSAGE_ILLEGAL
    assert err.value.addr == cluster.broker_addr
    assert client.send("oversized", b"fine").status == "SEND_OK"


def test_client_reconnects_after_its_connection_drops(
    client: RemotingClient, cluster: Cluster
) -> None:
    # The broker closes connections idle for 120 s; the next call must open a new one.
    client.create_topic(cluster.broker_addr, "reconnect")
    client.send("reconnect", b"1")
    old = client.connection(cluster.broker_addr)
    old.close()
    assert client.send("reconnect", b"2").queue_offset >= 0
    assert client.connection(cluster.broker_addr) is not old
