"""The "up means healthy" round trip on a RocketMQ whose ACL is on, through this driver.

:func:`bench.infra.health.rocketmq_round_trip` speaks to the brokers anonymously; with
authentication on, every request must be signed by a known account. This round trip does the
same through the suite's own clients instead (the signing remoting client for the topic, the
driver's 5.x producer and consumer through the proxy), all signed with the keys from the
variables ``endpoints`` names, and counts the same :class:`~bench.infra.health.RoundTrip`.
"""

from __future__ import annotations

import threading
import time
import uuid

from bench.drivers.base import Producer
from bench.drivers.rocketmq.acl import remoting_client
from bench.drivers.rocketmq.driver import RocketMQDriver
from bench.errors import BrokerUnavailable
from bench.infra.health import HEALTH_TOPIC, RoundTrip, poll, rocketmq_create_topic
from bench.infra.topology import Endpoints


def _create_topic(endpoints: Endpoints, topic: str, timeout_s: float) -> None:
    client = remoting_client(endpoints, timeout=min(timeout_s, 10.0), admin_timeout=timeout_s)
    try:
        masters = list(endpoints.broker_addrs.values())
        rocketmq_create_topic(masters, endpoints.namesrv, topic, timeout_s, client=client)
    finally:
        client.close()


def signed_round_trip(
    endpoints: Endpoints, timeout_s: float, messages: int = 1, topic: str = HEALTH_TOPIC
) -> RoundTrip:
    """Send ``messages`` sequenced messages through the proxy (async), receive them on a new
    consumer group, and count what came back. Raises :class:`BrokerUnavailable` when they do
    not all come back within ``timeout_s``."""
    started = time.monotonic()
    _create_topic(endpoints, topic, timeout_s)
    driver = RocketMQDriver(
        endpoints,
        path="proxy",
        settings={
            "request_timeout_s": max(3, int(timeout_s / 4)),
            "admin_timeout_s": timeout_s,
            "receive_threads": 1,
        },
    )
    client = driver.new_client()
    token = uuid.uuid4().hex.encode()
    lock = threading.Lock()
    seen: set[int] = set()
    acked = duplicates = answered = 0

    def on_message(body: bytes, _at: int) -> None:
        nonlocal duplicates
        if not body.startswith(token + b":"):
            return  # a message from another round trip: not ours to count
        seq = int(body[len(token) + 1 :])
        with lock:
            if seq in seen:
                duplicates += 1
            seen.add(seq)

    def on_ack(exc: BaseException | None) -> None:
        nonlocal acked, answered
        with lock:
            answered += 1
            acked += exc is None

    try:
        driver.consumer(topic, f"health-{uuid.uuid4().hex[:8]}", on_message, client)
        made: list[Producer] = []

        def make_producer() -> bool:
            made.append(driver.producer(topic, "async", client))
            return True

        poll(f"RocketMQ producer at {endpoints.grpc_endpoint}", make_producer, timeout_s)
        producer = made[0]
        for i in range(messages):
            producer.send_async(token + b":%d" % i, on_ack)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with lock:
                if answered == messages and len(seen) >= acked:
                    break
            time.sleep(0.05)
        with lock:
            got, sent_ok = len(seen), acked
        if got < sent_ok:
            raise BrokerUnavailable(
                f"RocketMQ at {endpoints.grpc_endpoint}: {got}/{sent_ok} acknowledged messages "
                f"came back within {timeout_s:.0f} s"
            )
    except BrokerUnavailable:
        raise
    except Exception as exc:
        raise BrokerUnavailable(
            f"RocketMQ round trip through {endpoints.grpc_endpoint} failed: {exc}"
        ) from exc
    finally:
        client.close()
        driver.close()
    return RoundTrip(messages, acked, len(seen), duplicates, time.monotonic() - started)
