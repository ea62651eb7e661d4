"""Issue 2 against the real brokers: health, 10,000 sequenced messages, kill -9 in both
topologies, restart on the same data, supervised restart, and error paths."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import pytest

from bench.errors import PortInUse
from bench.infra import health
from bench.infra.manager import Infra
from bench.infra.topology import Broker, InfraSettings

from .conftest import PORT_OFFSET

TIMEOUT_S = 120.0


class DurableQueue:
    """Messages produced to a topic with a durable subscription that exists beforehand, so
    everything acknowledged is retained for it across a broker kill."""

    def __init__(self, infra: Infra, broker: Broker, topic: str, subscribe: bool = True) -> None:
        self.infra, self.broker, self.topic = infra, broker, topic
        self.group = f"durable-{uuid.uuid4().hex[:6]}"
        self.acked: set[int] = set()
        self.token = uuid.uuid4().hex.encode()
        if broker == "rocketmq":
            ep = infra.endpoints(broker)
            health.rocketmq_create_topic(
                list(ep.broker_addrs.values()), ep.namesrv, topic, TIMEOUT_S
            )
        if subscribe:
            self._consume(expect=0)  # creates the subscription / pins the group's start offset

    def produce(self, n: int, start: int = 0) -> None:
        ep = self.infra.endpoints(self.broker)
        if self.broker == "pulsar":
            import pulsar

            client = pulsar.Client(
                ep.service_url,
                operation_timeout_seconds=30,
                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
            )
            try:
                producer = client.create_producer(f"persistent://public/default/{self.topic}")
                for i in range(start, start + n):
                    producer.send(self.token + b":%d" % i)
                    self.acked.add(i)
            finally:
                client.close()
        else:
            from rocketmq import ClientConfiguration, Credentials, Message, Producer

            producer = Producer(
                ClientConfiguration(ep.grpc_endpoint, Credentials(), request_timeout=10),
                (self.topic,),
            )
            producer.startup()
            try:
                for i in range(start, start + n):
                    msg = Message()
                    msg.topic = self.topic
                    msg.body = self.token + b":%d" % i
                    producer.send(msg)
                    self.acked.add(i)
            finally:
                producer.shutdown()

    def _consume(self, expect: int) -> set[int]:
        ep = self.infra.endpoints(self.broker)
        seen: set[int] = set()
        deadline = time.monotonic() + TIMEOUT_S
        if self.broker == "pulsar":
            import pulsar

            client = pulsar.Client(
                ep.service_url,
                operation_timeout_seconds=30,
                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
            )
            try:
                sub = client.subscribe(
                    f"persistent://public/default/{self.topic}",
                    self.group,
                    initial_position=pulsar.InitialPosition.Earliest,
                )
                while len(seen) < expect and time.monotonic() < deadline:
                    try:
                        msg = sub.receive(timeout_millis=2000)
                    except pulsar.Timeout:
                        continue
                    sub.acknowledge(msg)
                    seq = health._seq_of(self.token, msg.data())
                    if seq is not None:
                        seen.add(seq)
            finally:
                client.close()
        else:
            from rocketmq import ClientConfiguration, Credentials, FilterExpression, SimpleConsumer

            consumer = SimpleConsumer(
                ClientConfiguration(ep.grpc_endpoint, Credentials(), request_timeout=10),
                self.group,
                {self.topic: FilterExpression()},
                await_duration=2,
            )
            consumer.startup()
            try:
                health.poll(
                    "consumer settings",
                    lambda: consumer.receive(32, 15) is not None or True,
                    TIMEOUT_S,
                )
                while len(seen) < expect and time.monotonic() < deadline:
                    for got in consumer.receive(32, 15) or []:
                        consumer.ack(got)
                        seq = health._seq_of(self.token, got.body)
                        if seq is not None:
                            seen.add(seq)
            finally:
                consumer.shutdown()
        return seen

    def consume_all(self) -> set[int]:
        return self._consume(expect=len(self.acked))


class LightLoad:
    """A background producer at ~20 msg/s (a new client every 5 messages); errors are expected
    while the broker is down and only counted."""

    def __init__(self, infra: Infra, broker: Broker) -> None:
        self.queue = DurableQueue(infra, broker, f"load-{uuid.uuid4().hex[:6]}", subscribe=False)
        self.sent = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LightLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)

    def _run(self) -> None:
        for batch in range(10_000):  # bounded; stopped by __exit__ long before
            if self._stop.is_set():
                return
            try:
                self.queue.produce(5, start=batch * 5)
                self.sent += 5
            except Exception:
                self.errors += 1
            self._stop.wait(0.25)


# CI proves kill -9, restart and failover on both brokers with the tiny kill-9 scenarios
# (tests/integration/scenarios); the nightly job runs this longer check too.
@pytest.mark.nightly
@pytest.mark.parametrize("broker", ["pulsar", "rocketmq"])
def test_standalone_health_10k_kill9_restart_supervised(
    make_infra: Callable[[str], Infra], broker: Broker
) -> None:
    infra = make_infra(f"{broker}-standalone")
    infra.up(InfraSettings(brokers=(broker,), port_offset=PORT_OFFSET))

    # 10,000 sequenced messages through the Python client: every one acked and consumed once.
    (trip,) = infra.check_health(broker, messages=10_000)
    assert (trip.sent, trip.acked, trip.received, trip.duplicates) == (10_000, 10_000, 10_000, 0)

    queue = DurableQueue(infra, broker, f"durable-{uuid.uuid4().hex[:6]}")
    queue.produce(500)
    (target,) = infra.killable(broker)
    with LightLoad(infra, broker) as load:
        time.sleep(2)
        killed_at = infra.kill9(target)
        assert not any(r.alive() for n, r in infra.records().items() if n == target)
        time.sleep(2)
        infra.restart(target)
        infra.check_health(broker)
    assert load.sent > 0
    assert killed_at > 0
    received = queue.consume_all()
    assert queue.acked - received == set(), "messages acknowledged before kill -9 were lost"

    # Supervised mode: the broker comes back by itself.
    sup = infra.supervise(target, poll_s=0.1)
    try:
        infra.kill9(target)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(e.kind == "restarted" for e in sup.events):
            time.sleep(0.5)
        assert [e.kind for e in sup.events][:2] == ["died", "restarted"], sup.events
    finally:
        sup.stop()
    infra._set_record(sup.record, target)
    infra.check_health(broker)


# CI proves kill -9, restart and failover on both brokers with the tiny kill-9 scenarios
# (tests/integration/scenarios); the nightly job runs this longer check too.
@pytest.mark.nightly
@pytest.mark.parametrize("broker", ["pulsar", "rocketmq"])
def test_cluster_kill9_one_broker_other_keeps_serving(
    make_infra: Callable[[str], Infra], broker: Broker
) -> None:
    infra = make_infra(f"{broker}-cluster")
    # A short metadata session so the dead Pulsar broker's bundles move within the test.
    infra.up(
        InfraSettings(
            brokers=(broker,),
            topology="cluster",
            proxy=broker == "pulsar",
            port_offset=PORT_OFFSET,
            pulsar_session_timeout_ms=10_000,
        )
    )
    queue = DurableQueue(infra, broker, f"durable-{uuid.uuid4().hex[:6]}")
    queue.produce(300)
    victims = infra.killable(broker)
    assert len(victims) == 2, victims
    victim = victims[0]
    infra.kill9(victim)

    # Before the restart: a new producer on a new topic succeeds on the surviving broker.
    ep = infra.endpoints(broker)
    if broker == "pulsar":
        health.poll(
            "a new topic on the surviving Pulsar broker",
            lambda: (
                health.pulsar_round_trip(
                    ep.service_url, 20, 5, topic=f"after-kill-{uuid.uuid4().hex[:6]}"
                ).complete
            ),
            timeout_s=150,
            interval_s=1,
        )
    else:
        survivors = [a for name, a in ep.broker_addrs.items() if not victim.endswith(name)]
        assert len(survivors) == 1
        trip = health.rocketmq_round_trip(
            ep.grpc_endpoint,
            survivors,
            ep.namesrv,
            TIMEOUT_S,
            5,
            topic=f"after-kill-{uuid.uuid4().hex[:6]}",
        )
        assert trip.complete

    infra.restart(victim)
    infra.check_health(broker)
    received = queue.consume_all()
    assert queue.acked - received == set(), "acknowledged messages were lost in the failover"


def test_port_held_by_another_listener_is_named(make_infra: Callable[[str], Infra]) -> None:
    infra = make_infra("port-clash")
    web_port = 8080 + PORT_OFFSET
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", web_port))
        sock.listen()
        with pytest.raises(PortInUse, match=rf"port {web_port} \(pulsar web\).*in use by pid"):
            infra.up(InfraSettings(brokers=("pulsar",), port_offset=PORT_OFFSET))
        # The same through the CLI: one line, non-zero exit, no traceback.
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "infra",
                "--dir",
                str(infra.root),
                "up",
                "pulsar",
                "--port-offset",
                str(PORT_OFFSET),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"bench: error: port {web_port} (pulsar web)")
    assert "Traceback" not in out.stderr
    assert not infra.pids()


def test_unusable_java_home_via_cli(tmp_path: object) -> None:
    import os

    env = {**os.environ, "BENCH_JAVA_HOME": "/nonexistent/jdk", "BENCH_INFRA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "infra", "up", "pulsar"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "bench: error: BENCH_JAVA_HOME=/nonexistent/jdk has no executable bin/java; point it at "
        "a JDK 17+ or unset it to use the java on PATH"
    )
