"""The Apache RocketMQ driver: the 5.x gRPC client (proxy path) or remoting (direct path).

What goes where, and why:

- Sends, ``path="proxy"``: ``rocketmq-python-client`` (5.x, gRPC to the proxy), ``Producer.send``
  and ``Producer.send_async``. One 5.x ``Producer`` per :class:`RocketMQClient` serves every
  topic of that client (a 5.x producer is not bound to one topic).
- Sends, ``path="direct"``: :mod:`bench.protocol.remoting` straight to the broker (sync,
  pipelined async, and ONEWAY). ONEWAY always goes this way, whatever the path: the proxy has no
  ONEWAY. A ONEWAY send gets no acknowledgement, so what arrived is counted by the consumers
  and by the broker (:meth:`RocketMQDriver.broker_stats`).
- Consumption, ``path="proxy"``: a 5.x ``SimpleConsumer`` per (client, subscription) through the
  proxy, with ``receive_threads`` threads long-polling batches and acknowledging each batch with
  one ``AckMessage`` request (the client's own ``ack`` sends one RPC per message, and
  ``PushConsumer`` additionally blocks a consumption thread on each). A subscription is a
  consumer group; the topics a client subscribes under one group share its SimpleConsumer.
- Consumption, ``path="direct"``: a :class:`~bench.protocol.remoting_pull.PullConsumer` per
  (client, subscription), PULL_MESSAGE over remoting straight to the brokers (long polling,
  ``pull_batch`` messages a pull, ``pull_suspend_s`` held); the topics a client subscribes under
  one group share it. Topics are sharded across workers, so each (topic, group) has one
  consumer process: every pull consumer takes all of its topics' queues (index 0 of 1).
- Admin: topic creation (one ``UPDATE_AND_CREATE_TOPIC`` per topic on every master, pipelined
  ``concurrency`` deep; or ``UPDATE_AND_CREATE_TOPIC_LIST`` batches with ``create_batch_size`` >
  1), lookups, broker counters: remoting. Lookup ``admin`` is the name server's route query
  (GET_ROUTEINFO_BY_TOPIC); lookup ``client`` is the proxy's ``QueryRoute`` RPC, sent on a
  long-lived 5.x client (what a 5.x producer or consumer does before its first send; a full
  producer start would add thread start-up and settings exchange, which are client costs).

Settings (recorded with results): ``queue_nums`` (8, mqadmin's default), ``create_batch_size``,
``request_timeout_s`` (5.x client), ``remoting_timeout_s``, ``admin_timeout_s``,
``receive_threads``, ``receive_batch``, ``await_s`` (long polling), ``invisible_s`` (those four:
proxy path), ``pull_batch``, ``pull_suspend_s`` (direct path), ``client_log_level``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Final

from bench.drivers.base import (
    Consumer,
    Driver,
    DriverClient,
    ErrorKind,
    LookupMethod,
    OnMessage,
    OperationTimeout,
    Producer,
    SendCallback,
    TopicResult,
    Unsupported,
    guarded,
    require,
)
from bench.drivers.rocketmq.acl import acl_keys, remoting_client
from bench.errors import BrokerUnavailable, ConfigError, DriverError
from bench.infra.topology import Endpoints
from bench.protocol.remoting import (
    RemotingClient,
    RemotingCommand,
    RemotingError,
    wait_result,
)
from bench.protocol.remoting_pull import PullConsumer

log = logging.getLogger(__name__)

# rocketmq-python-client 5.1.2 re-raises a failed heartbeat inside a future's done-callback, so
# concurrent.futures logs a full traceback every few seconds while a broker is down. Those are
# expected during a kill -9 and counted as send/receive errors by the worker; the tracebacks
# would bury everything else in the log.
logging.getLogger("concurrent.futures").setLevel(logging.CRITICAL)

DEFAULTS: Final[dict[str, Any]] = {
    "queue_nums": 8,
    "create_batch_size": 1,
    "request_timeout_s": 3,
    "remoting_timeout_s": 3.0,
    "admin_timeout_s": 30.0,
    "receive_threads": 2,
    "receive_batch": 32,
    "await_s": 2,
    "invisible_s": 30,
    "pull_batch": 32,
    "pull_suspend_s": 5.0,
    "client_log_level": "WARNING",
}
_GET_TOPIC_STATS_INFO: Final = 202  # RequestCode.GET_TOPIC_STATS_INFO
_OFFSETS = re.compile(rb'"maxOffset":(\d+),"minOffset":(\d+)|"minOffset":(\d+),"maxOffset":(\d+)')
_RUNTIME_KEYS: Final = (
    "msgPutTotalTodayNow",
    "msgGetTotalTodayNow",
    "msgPutTotalTodayMorning",
    "msgGetTotalTodayMorning",
    "bootTimestamp",
    "sendThreadPoolQueueSize",
)
# A topic creation in flight: its topics, start time, one future per master, completion times.
_Pending = tuple[list[str], int, list[Future[None]], list[int]]
# A receive loop that keeps failing (proxy not ready, broker down) backs off up to this.
_MAX_RECEIVE_BACKOFF_S: Final = 1.0
# A consumer whose receives have failed this long is replaced (see _GroupConsumer._recreate).
_RECREATE_AFTER_S: Final = 15.0
_STUCK_SETTINGS: Final = 'settings" is null'


def _rocketmq() -> Any:
    import rocketmq  # heavy (grpc, protobuf): only when a RocketMQ driver is used

    return rocketmq


class RocketMQSendError(DriverError):
    """A 5.x client send failed; ``cause`` is the client's exception."""


class RocketMQClient(DriverClient):
    """One client scope: a 5.x producer, 5.x consumers (one per group) and a remoting client,
    each opened on first use."""

    def __init__(self, driver: RocketMQDriver) -> None:
        self._driver = driver
        self._lock = threading.Lock()
        self._producer: Any = None
        self._remoting: RemotingClient | None = None
        self._groups: dict[str, _GroupConsumer | _PullGroup] = {}
        self._closed = False

    def producer_5x(self, topic: str) -> Any:
        """The client's 5.x producer, started on first use; the topic's route fetched."""
        with self._lock:
            if self._closed:
                raise DriverError("RocketMQ client is closed")
            if self._producer is None:
                rmq = _rocketmq()
                producer = rmq.Producer(self._driver.client_config(), (topic,))
                producer.startup()
                self._producer = producer
            producer = self._producer
        # Fetches (and caches) the route via the proxy's QueryRoute, as the first send would.
        producer._retrieve_topic_route_data(topic)
        return producer

    def remoting(self) -> RemotingClient:
        """The client's remoting client (one connection per name server and broker)."""
        with self._lock:
            if self._closed:
                raise DriverError("RocketMQ client is closed")
            if self._remoting is None:
                s = self._driver.settings
                self._remoting = remoting_client(
                    self._driver.endpoints,
                    timeout=float(s["remoting_timeout_s"]),
                    admin_timeout=float(s["admin_timeout_s"]),
                    producer_group=f"bench_{id(self):x}",
                )
            return self._remoting

    def group(self, name: str) -> _GroupConsumer | _PullGroup:
        """The client's consumer of group ``name`` (created on first use): a 5.x
        SimpleConsumer on the proxy path, a remoting pull consumer on the direct path."""
        with self._lock:
            if self._closed:
                raise DriverError("RocketMQ client is closed")
            g = self._groups.get(name)
            if g is None:
                g = self._groups[name] = (
                    _PullGroup(self._driver, name)
                    if self._driver.path == "direct"
                    else _GroupConsumer(self._driver, name)
                )
            return g

    def drop_group(self, name: str, group: _GroupConsumer | _PullGroup) -> None:
        with self._lock:
            if self._groups.get(name) is group:
                del self._groups[name]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
            remoting, self._remoting = self._remoting, None
            groups = list(self._groups.values())
            self._groups.clear()
        for g in groups:
            g.shutdown()
        if producer is not None:
            try:
                producer.shutdown()
            except Exception as exc:
                log.debug("rocketmq producer shutdown: %s", exc)
        if remoting is not None:
            remoting.close()


class RocketMQProducer(Producer):
    """Sends to one topic through the proxy (5.x client) or straight to the broker."""

    def __init__(self, topic: str, client: RocketMQClient, via_proxy: bool, oneway: bool) -> None:
        self.topic = topic
        self._client = client
        self._via_proxy = via_proxy
        if oneway:
            self._remoting = client.remoting()
            self._remoting.get_route(topic)  # fail now, not on the first send
        elif via_proxy:
            self._p5 = client.producer_5x(topic)
            self._message_cls = _rocketmq().Message
        else:
            self._remoting = client.remoting()
            self._remoting.get_route(topic)

    def _message(self, payload: bytes) -> Any:
        msg = self._message_cls()
        msg.topic = self.topic
        msg.body = payload
        return msg

    def send(self, payload: bytes) -> None:
        if self._via_proxy:
            self._p5.send(self._message(payload))
        else:
            self._remoting.send(self.topic, payload)

    def send_async(self, payload: bytes, callback: SendCallback) -> None:
        fut: Future[Any]
        fut = (
            self._p5.send_async(self._message(payload))
            if self._via_proxy
            else self._remoting.send_async(self.topic, payload)
        )

        def done(f: Future[Any]) -> None:
            callback(f.exception())

        fut.add_done_callback(guarded(done, _log_callback_error))

    def send_oneway(self, payload: bytes) -> None:
        self._remoting.send_oneway(self.topic, payload)

    def close(self) -> None:
        # The 5.x producer and the remoting connections belong to the client (shared by its
        # producers); they close with it.
        pass


class _GroupConsumer:
    """One 5.x SimpleConsumer (a consumer group) and the receive threads that feed handlers."""

    def __init__(self, driver: RocketMQDriver, group: str) -> None:
        self._driver = driver
        self.group = group
        self._handlers: dict[str, OnMessage] = {}
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.receive_errors = 0
        self.recreated = 0
        self._failing_since: float | None = None

    def add(self, topic: str, on_message: OnMessage) -> None:
        rmq = _rocketmq()
        s = self._driver.settings
        with self._lock:
            if self._consumer is None:
                consumer = rmq.SimpleConsumer(
                    self._driver.client_config(),
                    self.group,
                    {topic: rmq.FilterExpression()},
                    await_duration=int(s["await_s"]),
                )
                consumer.startup()
                self._consumer = consumer
                self._handlers[topic] = on_message
                for i in range(int(s["receive_threads"])):
                    t = threading.Thread(
                        target=self._receive_loop, name=f"rmq-recv-{self.group}-{i}", daemon=True
                    )
                    t.start()
                    self._threads.append(t)
                return
            self._handlers[topic] = on_message
            consumer = self._consumer
        consumer.subscribe(topic)

    def remove(self, topic: str) -> bool:
        """Stop delivering ``topic``; return True when the group has no topic left."""
        with self._lock:
            self._handlers.pop(topic, None)
            consumer = self._consumer
            empty = not self._handlers
        if consumer is not None and not empty:
            try:
                consumer.unsubscribe(topic)
            except Exception as exc:
                log.debug("rocketmq unsubscribe %s: %s", topic, exc)
        return empty

    def _receive_loop(self) -> None:
        s = self._driver.settings
        batch, invisible = int(s["receive_batch"]), int(s["invisible_s"])
        backoff = 0.05
        while not self._stop.is_set():
            consumer = self._consumer
            if consumer is None:
                return
            try:
                messages = consumer.receive(batch, invisible)
                backoff = 0.05
                self._failing_since = None
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.receive_errors += 1
                log.debug("rocketmq receive (%s): %s", self.group, exc)
                # The proxy refuses receives until it has the client's settings, and fails
                # them while a broker restarts: retry, bounded.
                # Only the stuck symptom counts (the proxy is up but has no settings for this
                # client); a broker that is down fails receives too, and may come back.
                if _STUCK_SETTINGS in str(exc):
                    now_s = time.monotonic()
                    if self._failing_since is None:
                        self._failing_since = now_s
                    elif now_s - self._failing_since >= _RECREATE_AFTER_S:
                        self._recreate(consumer)
                else:
                    self._failing_since = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_RECEIVE_BACKOFF_S)
                continue
            if not messages:
                continue
            now = time.time_ns()
            for msg in messages:
                handler = self._handlers.get(msg.topic)
                if handler is not None:
                    try:
                        handler(msg.body, now)
                    except Exception as exc:  # the handler's owner counts its own errors
                        log.debug("rocketmq message handler: %s", exc)
            self._ack(consumer, messages)

    def _ack(self, consumer: Any, messages: list[Any]) -> None:
        """Acknowledge a received batch with one AckMessage request per (topic, endpoints)."""
        from rocketmq.grpc_protocol import AckMessageEntry, AckMessageRequest

        groups: dict[tuple[str, int], list[Any]] = {}
        for msg in messages:
            groups.setdefault((msg.topic, id(msg.endpoints)), []).append(msg)
        timeout = self._driver.settings["request_timeout_s"]
        for (topic, _), msgs in groups.items():
            req = AckMessageRequest()
            req.group.name = self.group
            req.topic.name = topic
            for m in msgs:
                entry = AckMessageEntry()
                entry.message_id = m.message_id
                entry.receipt_handle = m.receipt_handle
                req.entries.append(entry)
            try:
                fut = consumer.rpc_client.ack_message_async(
                    msgs[0].endpoints, req, metadata=consumer.sign(), timeout=timeout
                )
            except Exception as exc:
                # Unacknowledged messages come back after invisible_s: a duplicate, counted.
                log.debug("rocketmq ack: %s", exc)
                continue
            fut.add_done_callback(guarded(_check_ack, _log_callback_error))

    def _recreate(self, stuck: Any) -> None:
        """Replace a SimpleConsumer that does not recover by itself.

        rocketmq-python-client 5.1.2 does not send its settings again when the proxy it talks
        to restarts, so every receive then fails ("settings is null") forever. A new
        SimpleConsumer of the same group resumes from the group's offsets on the broker. It
        is counted in ``recreated``: the runner reports such a consumer as not recovered.
        """
        rmq = _rocketmq()
        with self._lock:
            if self._consumer is not stuck or self._stop.is_set():
                return  # another receive thread already replaced it
            topics = list(self._handlers)
            try:
                fresh = rmq.SimpleConsumer(
                    self._driver.client_config(),
                    self.group,
                    {t: rmq.FilterExpression() for t in topics},
                    await_duration=int(self._driver.settings["await_s"]),
                )
                fresh.startup()
            except Exception as exc:  # the broker may still be down: try again later
                log.debug("rocketmq consumer re-create (%s): %s", self.group, exc)
                self._failing_since = time.monotonic()
                return
            self._consumer = fresh
            self.recreated += 1
            self._failing_since = None
        log.warning(
            "rocketmq consumer group %s re-created after %.0f s of failed receives",
            self.group,
            _RECREATE_AFTER_S,
        )
        try:
            stuck.shutdown()
        except Exception as exc:  # shutting down a client whose proxy restarted may fail
            log.debug("rocketmq stuck consumer shutdown: %s", exc)

    def shutdown(self) -> None:
        self._stop.set()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # Shutting the client down first fails a long poll in flight at once, rather than
            # waiting up to await_s for it (an unsubscribe would otherwise take that long).
            try:
                consumer.shutdown()
            except Exception as exc:
                log.debug("rocketmq consumer shutdown: %s", exc)
        for t in self._threads:
            t.join(float(self._driver.settings["await_s"]) + 5.0)


class _PullGroup:
    """One remoting pull consumer (a consumer group) for the direct path.

    Same surface as :class:`_GroupConsumer`. The pull consumer recovers from broker restarts by
    itself (it retries and looks routes up again), so it is never re-created.
    """

    recreated = 0

    def __init__(self, driver: RocketMQDriver, group: str) -> None:
        s = driver.settings
        self.group = group
        self.errors = 0
        # Under ACL the consumer pulls through a signing client (its own, closed with it).
        self._client = (
            remoting_client(
                driver.endpoints,
                timeout=float(s["remoting_timeout_s"]),
                connect_timeout=float(s["remoting_timeout_s"]),
            )
            if acl_keys(driver.endpoints)
            else None
        )
        self.consumer = PullConsumer(
            group,
            namesrv=None if self._client else driver.endpoints.namesrv,
            client=self._client,
            on_error=self._on_error,
            batch=int(s["pull_batch"]),
            suspend_s=float(s["pull_suspend_s"]),
            timeout_s=float(s["remoting_timeout_s"]),
        )

    def _on_error(self, exc: BaseException) -> None:
        # Failed pulls while a broker is down are expected (the worker sees the gap in what it
        # receives); a line each would flood the log.
        self.errors += 1
        log.debug("rocketmq pull consumer %s: %s", self.group, exc)

    def add(self, topic: str, on_message: OnMessage) -> None:
        self.consumer.subscribe(topic, on_message)

    def remove(self, topic: str) -> bool:
        """Stop delivering ``topic``; return True when the group has no topic left."""
        self.consumer.unsubscribe(topic)
        return not self.consumer.topics

    def shutdown(self) -> None:
        self.consumer.close()
        if self._client is not None:
            self._client.close()


def _check_ack(fut: Future[Any]) -> None:
    if fut.cancelled():  # the consumer shut down with the ack in flight
        return
    exc = fut.exception()
    if exc is not None:
        log.debug("rocketmq ack failed: %s", exc)


class RocketMQConsumer(Consumer):
    """One topic of a group's SimpleConsumer (proxy path) or pull consumer (direct path)."""

    def __init__(
        self,
        topic: str,
        subscription: str,
        client: RocketMQClient,
        group: _GroupConsumer | _PullGroup,
    ) -> None:
        self.topic = topic
        self.subscription = subscription
        self._client = client
        self._group = group
        self._closed = False

    @property
    def restarts(self) -> int:
        """How often the driver had to re-create the group's SimpleConsumer (never, for a
        pull consumer)."""
        return self._group.recreated

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._group.remove(self.topic):
            self._client.drop_group(self.subscription, self._group)
            self._group.shutdown()

    def unsubscribe(self) -> None:
        # The 5.x client cannot delete a consumer group, and the pull consumer's group may
        # serve other topics; the group's offsets stay on the broker (a later subscriber of
        # the same name resumes from them).
        self.close()


def _log_callback_error(exc: BaseException) -> None:
    log.error("callback raised %s: %s", type(exc).__name__, exc)


class RocketMQDriver(Driver):
    """Apache RocketMQ 5.x: data through the gRPC proxy (path "proxy") or remoting straight to
    the brokers (path "direct"); remoting for admin, lookups, stats and ONEWAY either way."""

    name = "rocketmq"
    send_modes = frozenset({"sync", "async", "oneway"})
    paths = ("proxy", "direct")

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        path: str = "proxy",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(endpoints, path=path, settings=settings)
        self.settings = require(self.settings, DEFAULTS, self.name)
        if not endpoints.namesrv or not endpoints.broker_addrs or not endpoints.grpc_endpoint:
            raise ConfigError("RocketMQ endpoints need the name server, brokers and gRPC proxy")
        logging.getLogger("rocketmq-python-client").setLevel(
            str(self.settings["client_log_level"]).upper()
        )
        self._admin = remoting_client(
            endpoints,
            timeout=float(self.settings["remoting_timeout_s"]),
            admin_timeout=float(self.settings["admin_timeout_s"]),
        )
        self._config: Any = None
        self._lookup_producer: Any = None
        self._lock = threading.Lock()

    def client_config(self) -> Any:
        """The 5.x client configuration (the gRPC proxy endpoint)."""
        with self._lock:
            if self._config is None:
                rmq = _rocketmq()
                keys = acl_keys(self.endpoints)
                self._config = rmq.ClientConfiguration(
                    self.endpoints.grpc_endpoint,
                    rmq.Credentials(*keys) if keys else rmq.Credentials(),
                    request_timeout=int(self.settings["request_timeout_s"]),
                )
            return self._config

    # -- admin -------------------------------------------------------------------------------
    def _masters(self) -> list[str]:
        return list(self.endpoints.broker_addrs.values())

    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        batch = int(self.settings["create_batch_size"])
        queue_nums = int(self.settings["queue_nums"])
        timeout = float(self.settings["admin_timeout_s"])
        groups = [list(names[i : i + batch]) for i in range(0, len(names), batch)]
        window: deque[_Pending] = deque()

        def submit(topics: list[str]) -> _Pending:
            started = time.monotonic_ns()
            stamps: list[int] = []
            futs: list[Future[None]] = []
            for addr in self._masters():
                try:
                    conn = self._admin.connection(addr)
                    fut = (
                        self._admin.create_topic_async(
                            conn, topics[0], queue_nums=queue_nums, timeout=timeout
                        )
                        if len(topics) == 1
                        else self._admin.create_topic_list_async(
                            conn, topics, queue_nums=queue_nums, timeout=timeout
                        )
                    )
                except DriverError as exc:
                    fut = Future()
                    fut.set_exception(exc)
                fut.add_done_callback(lambda _f: stamps.append(time.monotonic_ns()))
                futs.append(fut)
            return topics, started, futs, stamps

        def collect(item: _Pending) -> list[TopicResult]:
            topics, started, futs, stamps = item
            error: DriverError | None = None
            for fut in futs:
                try:
                    wait_result(fut, timeout)
                except DriverError as exc:
                    error = exc
            latency = (max(stamps, default=time.monotonic_ns()) - started) // 1000
            if error is None:
                return [TopicResult(t, latency) for t in topics]
            kind = self.classify(error)
            return [TopicResult(t, latency, str(error), kind) for t in topics]

        for topics in groups:
            if len(window) >= concurrency:
                yield from collect(window.popleft())
            window.append(submit(topics))
        while window:
            yield from collect(window.popleft())

    def _lookup_client(self) -> Any:
        with self._lock:
            producer = self._lookup_producer
        if producer is None:
            rmq = _rocketmq()
            producer = rmq.Producer(self.client_config())
            producer.startup()
            with self._lock:
                if self._lookup_producer is None:
                    self._lookup_producer = producer
                    return producer
            producer.shutdown()
            return self._lookup_producer
        return producer

    def lookup(self, topic: str, timeout_s: float, method: LookupMethod = "admin") -> int:
        if method == "admin":
            started = time.monotonic_ns()
            self._admin.get_route(topic, timeout=timeout_s)
            return (time.monotonic_ns() - started) // 1000
        if method != "client":
            raise ConfigError(f"unknown lookup method {method!r}")
        from rocketmq.grpc_protocol import Code, QueryRouteRequest

        producer = self._lookup_client()
        config = self.client_config()
        req = QueryRouteRequest()
        req.topic.name = topic
        req.endpoints.CopyFrom(config.rpc_endpoints.endpoints)
        started = time.monotonic_ns()
        fut = producer.rpc_client.query_topic_route_async(
            config.rpc_endpoints, req, metadata=producer.sign(), timeout=max(1, timeout_s)
        )
        try:
            res = fut.result(timeout_s + 1.0)
        except TimeoutError as exc:
            raise OperationTimeout(f"QueryRoute of {topic}: no answer in {timeout_s:g}s") from exc
        except Exception as exc:
            if "DEADLINE_EXCEEDED" in str(exc):
                raise OperationTimeout(f"QueryRoute of {topic}: {exc}") from exc
            raise BrokerUnavailable(f"QueryRoute of {topic}: {exc}") from exc
        latency = (time.monotonic_ns() - started) // 1000
        if res.status.code != Code.OK:
            raise DriverError(
                f"QueryRoute of {topic}: {Code.Name(res.status.code)} {res.status.message}"
            )
        return latency

    def broker_stats(self, topics: Sequence[str]) -> dict[str, int]:
        totals: dict[str, int] = dict.fromkeys(_RUNTIME_KEYS, 0)
        for addr in self._masters():
            info = self._admin.get_broker_runtime_info(addr)
            for key in _RUNTIME_KEYS:
                try:
                    value = int(info.get(key, "0"))
                except ValueError:
                    continue
                # Boot times: the latest tells whether any broker restarted since last time.
                totals[key] = (
                    max(totals[key], value) if key == "bootTimestamp" else (totals[key] + value)
                )
        stored = missing = 0
        for addr in self._masters():
            conn = self._admin.connection(addr)
            timeout = float(self.settings["remoting_timeout_s"])
            futs = [
                conn.request_async(_GET_TOPIC_STATS_INFO, {"topic": t}, timeout=timeout)
                for t in topics
            ]
            for fut in futs:
                resp: RemotingCommand = wait_result(fut, timeout)
                if resp.code != 0:
                    missing += 1
                    continue
                stored += _stored_messages(resp.body)
        totals["topicMessages"] = stored
        totals["missing"] = missing
        # Broker-wide puts include system topics (pop checkpoints, acks): per-topic queue
        # offsets are what counts messages of these topics.
        totals["messages_in"] = stored if topics else totals["msgPutTotalTodayNow"]
        totals["messages_out"] = totals["msgGetTotalTodayNow"]
        return totals

    def settings_record(self) -> dict[str, Any]:
        from rocketmq.v5.util import SDK_VERSION

        return {
            **super().settings_record(),
            "grpc_endpoint": self.endpoints.grpc_endpoint,
            "namesrv": self.endpoints.namesrv,
            "client_version": SDK_VERSION,
            "oneway": "remoting, straight to the broker",
        }

    # -- clients, producers, consumers -------------------------------------------------------
    def new_client(self) -> RocketMQClient:
        return RocketMQClient(self)

    def producer(self, topic: str, send_mode: str, client: DriverClient) -> RocketMQProducer:
        self.check_send_mode(send_mode)
        if not isinstance(client, RocketMQClient):
            raise TypeError("a RocketMQ producer needs a RocketMQClient")
        try:
            return RocketMQProducer(
                topic, client, via_proxy=self.path == "proxy", oneway=send_mode == "oneway"
            )
        except DriverError:
            raise
        except Exception as exc:
            raise DriverError(f"creating a producer on {topic}: {exc}") from exc

    def consumer(
        self, topic: str, subscription: str, on_message: OnMessage, client: DriverClient
    ) -> RocketMQConsumer:
        if not isinstance(client, RocketMQClient):
            raise TypeError("a RocketMQ consumer needs a RocketMQClient")
        group = client.group(subscription)
        try:
            group.add(topic, on_message)
        except Exception as exc:
            if group.remove(topic):
                client.drop_group(subscription, group)
                group.shutdown()
            if "DEADLINE_EXCEEDED" in str(exc) or "within" in str(exc):
                raise OperationTimeout(f"subscribing {subscription} to {topic}: {exc}") from exc
            raise DriverError(f"subscribing {subscription} to {topic}: {exc}") from exc
        return RocketMQConsumer(topic, subscription, client, group)

    def classify(self, exc: BaseException) -> ErrorKind:
        if isinstance(exc, OperationTimeout | TimeoutError):
            return "timeout"
        if isinstance(exc, BrokerUnavailable):
            text = str(exc)
            return "timeout" if "did not answer" in text or "no answer" in text else "disconnected"
        if isinstance(exc, RemotingError):
            return "broker_error"
        if isinstance(exc, Unsupported | ConfigError):
            return "client_error"
        name = type(exc).__name__
        text = str(exc)
        if name == "ProxyTimeoutException" or "DEADLINE_EXCEEDED" in text:
            return "timeout"
        if "UNAVAILABLE" in text or isinstance(exc, ConnectionError):
            return "disconnected"
        if name in ("IllegalStateException", "IllegalArgumentException"):
            return "client_error"
        if name.endswith("Exception") and type(exc).__module__.startswith("rocketmq"):
            return "broker_error"
        if isinstance(exc, DriverError):
            return "broker_error"
        return "other"

    def close(self) -> None:
        with self._lock:
            producer, self._lookup_producer = self._lookup_producer, None
        if producer is not None:
            try:
                producer.shutdown()
            except Exception as exc:
                log.debug("lookup producer shutdown: %s", exc)
        self._admin.close()


def _stored_messages(body: bytes) -> int:
    """Sum of (maxOffset - minOffset) over the queues of a GET_TOPIC_STATS_INFO answer.

    The body is fastjson with MessageQueue objects as map keys (not standard JSON), so the
    offsets are read by pattern.
    """
    total = 0
    for m in _OFFSETS.finditer(body):
        if m.group(1) is not None:
            total += int(m.group(1)) - int(m.group(2))
        else:
            total += int(m.group(4)) - int(m.group(3))
    return total
