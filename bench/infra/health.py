"""Readiness of broker processes and the "up means healthy" round trip through real clients.

A process is *ready* when its main port accepts; a broker is *healthy* when a message produced
through the Python client (``pulsar-client``; ``rocketmq-python-client`` via the gRPC proxy) is
consumed back. An open port alone proves little: a Pulsar broker accepts connections long before
it owns a namespace, a RocketMQ proxy long before it has a route.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.errors import BrokerStartError, BrokerUnavailable
from bench.infra.ports import accepts
from bench.infra.process import ProcessRecord, ProcessSpec, tail

if TYPE_CHECKING:
    from bench.protocol.remoting import RemotingClient

HEALTH_TOPIC = "bench-health"


def wait_ready(spec: ProcessSpec, record: ProcessRecord, timeout_s: float) -> float:
    """Wait until ``spec.ready_port`` accepts (and, with ``spec.registers_with``, until that
    name server lists the broker at that port); return the seconds it took.

    Raises :class:`BrokerStartError` with the last lines of the log if the process exits first
    or the deadline passes.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    port_open = False
    while True:
        if not record.alive():
            raise BrokerStartError(
                f"{spec.name} exited during start; last lines of {spec.log}:\n{tail(spec.log)}"
            )
        port_open = port_open or spec.ready_port is None or accepts(spec.ready_port)
        if port_open and (
            not spec.registers_with
            or registered(spec.registers_with, f"127.0.0.1:{spec.ready_port}")
        ):
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            waited = (
                f"register with the name server at {spec.registers_with}"
                if port_open
                else f"open port {spec.ready_port}"
            )
            raise BrokerStartError(
                f"{spec.name} did not {waited} within {timeout_s:.0f} s; "
                f"last lines of {spec.log}:\n{tail(spec.log)}"
            )
        time.sleep(0.2)


def registered(namesrv: str, broker_addr: str) -> bool:
    """Whether the RocketMQ name server at ``namesrv`` lists ``broker_addr`` as a master (False
    while it cannot be asked)."""
    from bench.protocol.remoting import RemotingClient

    try:
        with RemotingClient(namesrv, timeout=2.0) as client:
            return broker_addr in client.get_cluster_info(timeout=2.0).master_addrs()
    except Exception:  # not up yet, or busy: asked again until the deadline
        return False


def poll(what: str, check: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> float:
    """Call ``check`` until it returns True; raise :class:`BrokerUnavailable` at the deadline.

    Exceptions from ``check`` count as "not yet" and the last one is reported.
    """
    started = time.monotonic()
    last: Exception | None = None
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as exc:
            last = exc
        if time.monotonic() - started >= timeout_s:
            why = f": {type(last).__name__}: {last}" if last else ""
            raise BrokerUnavailable(f"{what} not ready within {timeout_s:.0f} s{why}")
        time.sleep(interval_s)


def http_get_json(url: str, timeout_s: float = 5.0) -> object:
    """GET ``url`` and decode JSON (raises on HTTP errors)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        # The error holds the response's socket; close it now rather than leave it to the GC.
        exc.close()
        raise BrokerUnavailable(f"HTTP {exc.code} {exc.reason} from {url}") from None


def pulsar_namespace_ready(admin_url: str, timeout_s: float) -> float:
    """Wait until ``admin_url`` lists ``public/default`` (the standalone creates it late)."""

    def check() -> bool:
        data = http_get_json(f"{admin_url}/admin/v2/namespaces/public")
        return isinstance(data, list) and "public/default" in data

    return poll(f"Pulsar namespace public/default at {admin_url}", check, timeout_s)


@dataclass(frozen=True)
class RoundTrip:
    """What a sequenced produce/consume round trip saw."""

    sent: int
    acked: int
    received: int  # distinct sequence numbers that came back
    duplicates: int
    seconds: float

    @property
    def complete(self) -> bool:
        return self.acked == self.sent and self.received == self.sent


def _seq_of(token: bytes, body: bytes) -> int | None:
    if not body.startswith(token + b":"):
        return None  # a message from another round trip: not ours to count
    return int(body[len(token) + 1 :].split(b":", 1)[0])


def pulsar_round_trip(
    service_url: str, timeout_s: float, messages: int = 1, topic: str = HEALTH_TOPIC
) -> RoundTrip:
    """Send ``messages`` sequenced messages asynchronously, consume them on a fresh
    subscription, and count what came back. Raises :class:`BrokerUnavailable` on a timeout."""
    import pulsar  # heavy import, only when a Pulsar broker is checked

    from bench.drivers.pulsar import client_logger

    started = time.monotonic()
    full_topic = topic if "://" in topic else f"persistent://public/default/{topic}"
    client = pulsar.Client(
        service_url,
        operation_timeout_seconds=max(5, int(timeout_s)),
        logger=client_logger(),
    )
    acked = 0
    lock = threading.Lock()

    def on_ack(res: object, _msg_id: object) -> None:
        # Runs on the client's thread: it must never raise (that would kill the process).
        nonlocal acked
        if res == pulsar.Result.Ok:
            with lock:
                acked += 1

    try:
        sub = client.subscribe(
            full_topic,
            f"health-{uuid.uuid4().hex[:8]}",
            initial_position=pulsar.InitialPosition.Latest,
            receiver_queue_size=1000,
        )
        producer = client.create_producer(
            full_topic, send_timeout_millis=int(timeout_s * 1000), block_if_queue_full=True
        )
        token = uuid.uuid4().hex.encode()
        for i in range(messages):
            producer.send_async(token + b":%d" % i, on_ack)
        producer.flush()
        seen: set[int] = set()
        duplicates = 0
        deadline = time.monotonic() + timeout_s
        while len(seen) < messages:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise BrokerUnavailable(
                    f"Pulsar at {service_url}: {len(seen)}/{messages} messages came back "
                    f"within {timeout_s:.0f} s"
                )
            msg = sub.receive(timeout_millis=remaining_ms)
            sub.acknowledge(msg)
            seq = _seq_of(token, msg.data())
            if seq is None:
                continue
            if seq in seen:
                duplicates += 1
            seen.add(seq)
        sub.unsubscribe()
    except pulsar.Timeout as exc:
        raise BrokerUnavailable(f"Pulsar at {service_url} timed out: {exc}") from exc
    finally:
        client.close()
    return RoundTrip(messages, acked, len(seen), duplicates, time.monotonic() - started)


def rocketmq_create_topic(
    broker_addrs: list[str],
    namesrv: str,
    topic: str,
    timeout_s: float,
    client: RemotingClient | None = None,
) -> None:
    """Create ``topic`` on every master and wait until the name server routes it (a proxy asked
    before that caches "no such topic" for its route refresh period). ``client``: a remoting
    client of the caller's (one that signs its requests, for a broker with ACL on), left open;
    else an anonymous one of this function's."""
    from bench.protocol.remoting import RemotingClient

    own = client is None
    if client is None:
        client = RemotingClient(namesrv, timeout=min(timeout_s, 10.0), admin_timeout=timeout_s)
    try:
        for addr in broker_addrs:

            def create(a: str = addr) -> bool:
                client.create_topic(a, topic)
                return True

            poll(f"topic creation on RocketMQ broker {addr}", create, timeout_s)

        def routed() -> bool:
            client.invalidate_route(topic)
            return len(client.get_route(topic).broker_addrs()) == len(broker_addrs)

        poll(f"route of {topic} at name server {namesrv}", routed, timeout_s)
    finally:
        if own:
            client.close()


def rocketmq_round_trip(
    grpc_endpoint: str,
    broker_addrs: list[str],
    namesrv: str,
    timeout_s: float,
    messages: int = 1,
    topic: str = HEALTH_TOPIC,
) -> RoundTrip:
    """Create ``topic``, send ``messages`` sequenced messages through the gRPC proxy (async),
    receive them with a SimpleConsumer of a new group, and count what came back."""
    from rocketmq import (
        ClientConfiguration,
        Credentials,
        FilterExpression,
        Message,
        Producer,
        SimpleConsumer,
    )

    started = time.monotonic()
    rocketmq_create_topic(broker_addrs, namesrv, topic, timeout_s)
    config = ClientConfiguration(
        grpc_endpoint, Credentials(), request_timeout=max(3, int(timeout_s / 4))
    )
    group = f"health-{uuid.uuid4().hex[:8]}"
    pending_acks: list[Any] = []
    consumer = SimpleConsumer(config, group, {topic: FilterExpression()}, await_duration=2)
    producer = Producer(config, (topic,))
    try:
        consumer.startup()
        producer.startup()
        # A new group starts at the queue's end: one empty receive pins that before the send.
        # In cluster mode the proxy answers a receive that beats the client's settings (sent
        # over the telemetry stream) with a NullPointerException, so retry until it is known.
        poll(
            f"RocketMQ consumer settings at {grpc_endpoint}",
            lambda: consumer.receive(32, 15) is not None or True,
            timeout_s,
        )
        token = uuid.uuid4().hex.encode()
        futures = []
        for i in range(messages):
            msg = Message()
            msg.topic = topic
            msg.body = token + b":%d" % i
            futures.append(producer.send_async(msg))
        acked = 0
        for fut in futures:
            try:
                fut.result(timeout=timeout_s)
                acked += 1
            except Exception:
                pass  # an unacknowledged send is counted (acked < sent), not raised
        seen: set[int] = set()
        duplicates = 0
        deadline = time.monotonic() + timeout_s
        while len(seen) < acked and time.monotonic() < deadline:
            batch = consumer.receive(32, 15) or []
            # One gRPC call per ack, sent without waiting so the round trip measures delivery,
            # not ack latency. rocketmq-python-client 5.1.2: SimpleConsumer.ack_async returns
            # None (its _ack_async has the future), and the sync ack hangs when called from
            # several threads at once.
            pending_acks.extend(consumer._ack_async(got) for got in batch)
            for got in batch:
                seq = _seq_of(token, got.body)
                if seq is None:
                    continue
                if seq in seen:
                    duplicates += 1
                seen.add(seq)
        if len(seen) < acked:
            raise BrokerUnavailable(
                f"RocketMQ at {grpc_endpoint}: {len(seen)}/{acked} acknowledged messages came "
                f"back within {timeout_s:.0f} s"
            )
        # The acks' futures are asyncio futures completed on the client's loop thread: poll
        # their state (bounded) rather than block on them from here.
        ack_deadline = time.monotonic() + timeout_s
        while not all(f.done() for f in pending_acks) and time.monotonic() < ack_deadline:
            time.sleep(0.05)
    except BrokerUnavailable:
        raise
    except Exception as exc:
        raise BrokerUnavailable(
            f"RocketMQ round trip through {grpc_endpoint} failed: {exc}"
        ) from exc
    finally:
        producer.shutdown()
        consumer.shutdown()
    return RoundTrip(messages, acked, len(seen), duplicates, time.monotonic() - started)


def probe_error(exc: BaseException) -> str:
    """A short text for an exception seen while probing (for ``bench infra status``)."""
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
