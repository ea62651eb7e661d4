"""Readiness of broker processes and the "up means healthy" round trip through real clients.

A process is *ready* when its main port accepts; a broker is *healthy* when a message produced
through the Python client (``pulsar-client``; ``rocketmq-python-client`` via the gRPC proxy) is
consumed back. An open port alone proves little: a Pulsar broker accepts connections long before
it owns a namespace, a RocketMQ proxy long before it has a route.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

from bench.errors import BrokerStartError, BrokerUnavailable
from bench.infra.ports import accepts
from bench.infra.process import ProcessRecord, ProcessSpec, tail

HEALTH_TOPIC = "bench-health"


def wait_ready(spec: ProcessSpec, record: ProcessRecord, timeout_s: float) -> float:
    """Wait until ``spec.ready_port`` accepts; return the seconds it took.

    Raises :class:`BrokerStartError` with the last lines of the log if the process exits first
    or the deadline passes.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if not record.alive():
            raise BrokerStartError(
                f"{spec.name} exited during start; last lines of {spec.log}:\n{tail(spec.log)}"
            )
        if spec.ready_port is None or accepts(spec.ready_port):
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise BrokerStartError(
                f"{spec.name} did not open port {spec.ready_port} within {timeout_s:.0f} s; "
                f"last lines of {spec.log}:\n{tail(spec.log)}"
            )
        time.sleep(0.2)


def poll(
    what: str, check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5
) -> float:
    """Call ``check`` until it returns True; raise :class:`BrokerUnavailable` at the deadline.

    Exceptions from ``check`` count as "not yet" and the last one is reported.
    """
    started = time.monotonic()
    last: Exception | None = None
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - any failure is "not ready yet"
            last = exc
        if time.monotonic() - started >= timeout_s:
            why = f": {type(last).__name__}: {last}" if last else ""
            raise BrokerUnavailable(f"{what} not ready within {timeout_s:.0f} s{why}")
        time.sleep(interval_s)


def http_get_json(url: str, timeout_s: float = 5.0) -> object:
    """GET ``url`` and decode JSON (raises on HTTP errors)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback URLs
        return json.loads(resp.read().decode())


def pulsar_namespace_ready(admin_url: str, timeout_s: float) -> float:
    """Wait until ``admin_url`` lists ``public/default`` (the standalone creates it late)."""

    def check() -> bool:
        data = http_get_json(f"{admin_url}/admin/v2/namespaces/public")
        return isinstance(data, list) and "public/default" in data

    return poll(f"Pulsar namespace public/default at {admin_url}", check, timeout_s)


def pulsar_round_trip(service_url: str, timeout_s: float, messages: int = 1) -> float:
    """Produce ``messages`` to a fresh subscription and consume them all; return seconds."""
    import pulsar  # heavy import, only when a Pulsar broker is checked

    started = time.monotonic()
    topic = f"persistent://public/default/{HEALTH_TOPIC}"
    client = pulsar.Client(
        service_url,
        operation_timeout_seconds=max(5, int(timeout_s)),
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    try:
        sub = client.subscribe(
            topic, f"health-{uuid.uuid4().hex[:8]}", initial_position=pulsar.InitialPosition.Latest
        )
        producer = client.create_producer(topic, send_timeout_millis=int(timeout_s * 1000))
        token = uuid.uuid4().hex.encode()
        for i in range(messages):
            producer.send(token + b":%d" % i)
        seen = 0
        deadline = time.monotonic() + timeout_s
        while seen < messages:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise BrokerUnavailable(
                    f"Pulsar at {service_url}: {seen}/{messages} health messages came back "
                    f"within {timeout_s:.0f} s"
                )
            msg = sub.receive(timeout_millis=remaining_ms)
            sub.acknowledge(msg)
            if msg.data().startswith(token):
                seen += 1
        sub.unsubscribe()
    except pulsar.Timeout as exc:
        raise BrokerUnavailable(f"Pulsar at {service_url} timed out: {exc}") from exc
    finally:
        client.close()
    return time.monotonic() - started


def rocketmq_create_topic(broker_addrs: list[str], namesrv: str, topic: str, timeout_s: float) -> None:
    """Create ``topic`` on every master and wait until the name server routes it."""
    from bench.protocol.remoting import RemotingClient

    for addr in broker_addrs:
        with RemotingClient(addr, timeout_s=timeout_s) as client:
            client.create_topic(topic)

    def routed() -> bool:
        with RemotingClient(namesrv, timeout_s=timeout_s) as client:
            route = client.get_route(topic)
        return len(route.broker_addrs()) == len(broker_addrs)

    poll(f"route of {topic} at name server {namesrv}", routed, timeout_s)


def rocketmq_round_trip(
    grpc_endpoint: str, broker_addrs: list[str], namesrv: str, timeout_s: float
) -> float:
    """Create the health topic, send through the gRPC proxy, receive it back; return seconds."""
    from rocketmq import ClientConfiguration, Credentials, FilterExpression, Message, Producer
    from rocketmq import SimpleConsumer

    started = time.monotonic()
    rocketmq_create_topic(broker_addrs, namesrv, HEALTH_TOPIC, timeout_s)
    config = ClientConfiguration(grpc_endpoint, Credentials(), request_timeout=max(3, int(timeout_s / 4)))
    group = f"health-{uuid.uuid4().hex[:8]}"
    consumer = SimpleConsumer(config, group, {HEALTH_TOPIC: FilterExpression()}, await_duration=2)
    producer = Producer(config, (HEALTH_TOPIC,))
    try:
        consumer.startup()
        producer.startup()
        # A new group starts at the queue's end: one empty receive pins that before the send.
        consumer.receive(16, 15)
        token = uuid.uuid4().hex
        msg = Message()
        msg.topic = HEALTH_TOPIC
        msg.body = token.encode()
        producer.send(msg)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for got in consumer.receive(16, 15) or []:
                consumer.ack(got)
                if got.body == token.encode():
                    return time.monotonic() - started
        raise BrokerUnavailable(
            f"RocketMQ at {grpc_endpoint}: the health message did not come back within "
            f"{timeout_s:.0f} s"
        )
    except BrokerUnavailable:
        raise
    except Exception as exc:
        raise BrokerUnavailable(f"RocketMQ round trip through {grpc_endpoint} failed: {exc}") from exc
    finally:
        producer.shutdown()
        consumer.shutdown()


def probe_error(exc: BaseException) -> str:
    """A short text for an exception seen while probing (for ``bench infra status``)."""
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
