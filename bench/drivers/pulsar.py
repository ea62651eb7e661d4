"""The Apache Pulsar driver: ``pulsar-client`` for data, the admin REST API for the rest.

- Topic creation: ``PUT /admin/v2/persistent/<tenant>/<ns>/<topic>`` (non-partitioned), many
  in flight from a thread pool with one keep-alive HTTP connection per thread. At the 100k-topic
  target the broker's metadata store is what slows down, not this loop: each creation is one
  request, so the measured latency is the broker's.
- Lookups: ``admin`` is the HTTP lookup ``GET /lookup/v2/topic/persistent/<ns>/<topic>``;
  ``client`` is the binary-protocol lookup a client does, measured as the creation of a
  producer on a long-lived client (lookup + producer registration on the owning broker).
- Namespace bundles: :meth:`PulsarDriver.set_namespace_bundles` creates ``public/bench-b<N>``
  with N bundles and sends later topics there.
- Broker counters: per-topic stats (``msgInCounter``, ``msgOutCounter``, ``bytesInCounter``,
  ``bytesOutCounter``, backlog) summed over the given topics.
- ``path``: ``direct`` uses the brokers' service URL, ``proxy`` the Pulsar proxy's.

Settings (recorded with results): ``batching`` (default False: one message per entry, so
publish latency is the message's own), ``batching_max_publish_delay_ms``,
``max_pending_messages``, ``send_timeout_ms``, ``operation_timeout_s`` (the client's lookup and
admin-operation timeout), ``io_threads``, ``listener_threads``, ``receiver_queue_size``,
``subscription_type`` and ``http_timeout_s``.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import pulsar

from bench.drivers.base import (
    CLIENT_LOG_ENV,
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
    secret_from_env,
)
from bench.errors import BrokerUnavailable, ConfigError, DriverError
from bench.infra.topology import Endpoints

log = logging.getLogger(__name__)

DEFAULTS: Final[dict[str, Any]] = {
    "batching": False,
    "batching_max_publish_delay_ms": 1,
    "max_pending_messages": 10000,
    "send_timeout_ms": 30000,
    "operation_timeout_s": 30,
    "io_threads": 1,
    "listener_threads": 1,
    # Messages a consumer may hold ahead of its listener (a bound: at most 10,000 x message
    # size per consumer). The clients' default, 1,000, starves consumers of a busy broker: it
    # grants permits 500 at a time, and while a grant waits in the broker's dispatcher the
    # queue runs dry (both engines took 5,000-10,000 of 15,000 msg/s on one subscription here
    # with 1,000, all of it with 10,000).
    "receiver_queue_size": 10000,
    "subscription_type": "Shared",
    "http_timeout_s": 30.0,
}


def client_logger() -> Any:
    """The C++ client's logger: errors only, into ``$BENCH_CLIENT_LOG`` when set, else the
    console (a worker's console is its log file; a terminal must never get these lines)."""
    path = os.environ.get(CLIENT_LOG_ENV)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return pulsar.FileLogger(pulsar.LoggerLevel.Error, path)
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)


_TIMEOUT_RESULTS: Final = {pulsar.Result.Timeout}
_DISCONNECT_RESULTS: Final = {
    pulsar.Result.ConnectError,
    pulsar.Result.NotConnected,
    pulsar.Result.ReadError,
    pulsar.Result.AlreadyClosed,
}
_CLIENT_RESULTS: Final = {
    pulsar.Result.ProducerQueueIsFull,
    pulsar.Result.MemoryBufferIsFull,
    pulsar.Result.InvalidConfiguration,
    pulsar.Result.InvalidTopicName,
    pulsar.Result.InvalidUrl,
    pulsar.Result.MessageTooBig,
    pulsar.Result.Interrupted,
    pulsar.Result.ProducerNotInitialized,
    pulsar.Result.ConsumerNotInitialized,
}


class PulsarSendError(DriverError):
    """An asynchronous send completed with a failure ``result``."""

    def __init__(self, result: pulsar.Result) -> None:
        self.result = result
        super().__init__(f"send failed: {result}")


class HttpError(DriverError):
    """The admin API answered with an HTTP error status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {url}: HTTP {status}: {' '.join(body.split())[:300]}")


class _Http:
    """One keep-alive HTTP connection per thread to one admin URL.

    Every connection is also kept in a list, so :meth:`close` can close those of threads that
    have ended (a thread pool's) instead of leaving them to the garbage collector.
    """

    def __init__(
        self,
        base_url: str,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"Pulsar admin URL {base_url!r} is not http(s)://host:port")
        self.base = base_url.rstrip("/")
        self.host = parsed.hostname
        self.https = parsed.scheme == "https"
        self.port = parsed.port or (443 if self.https else 80)
        self.timeout_s = timeout_s
        # The Authorization header holds the token: it is sent, never logged or put in errors.
        self._headers = dict(headers or {})
        if tls is None and self.https:
            tls = ssl.create_default_context()
        self._tls = tls
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._all_lock = threading.Lock()

    def _conn(self, timeout_s: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(self.host, self.port, self.https, timeout_s)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        conn.timeout = timeout_s
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        return conn

    def _connect(
        self, host: str, port: int, https: bool, timeout_s: float
    ) -> http.client.HTTPConnection:
        if https:
            return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=self._tls)
        return http.client.HTTPConnection(host, port, timeout=timeout_s)

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body). Raises OperationTimeout /
        BrokerUnavailable on transport failures (after one reconnect attempt)."""
        t = self.timeout_s if timeout_s is None else timeout_s
        data = None if body is None else json.dumps(body).encode()
        headers = {**self._headers}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._conn(t)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
                location = resp.getheader("Location")
                if status in (307, 308) and location:
                    # In a cluster a broker redirects admin calls for a bundle it does not own
                    # to the owner; http.client does not follow redirects (urllib would not for
                    # a PUT either).
                    return self._follow(method, location, data, headers, t)
                return status, payload
            except TimeoutError as exc:
                self.reset()
                raise OperationTimeout(f"{method} {self.base}{path}: no answer in {t:g}s") from exc
            except (http.client.HTTPException, OSError) as exc:
                self.reset()
                # A keep-alive connection the server closed fails on first use: retry once.
                if attempt == 2:
                    raise BrokerUnavailable(f"{method} {self.base}{path}: {exc}") from exc
        raise AssertionError("unreachable")

    def _follow(
        self, method: str, location: str, data: bytes | None, headers: dict[str, str], t: float
    ) -> tuple[int, bytes]:
        """Re-send a redirected request to ``location`` (at most three hops)."""
        for _ in range(3):
            target = urllib.parse.urlsplit(location)
            if target.scheme not in ("http", "https") or not target.hostname:
                raise BrokerUnavailable(f"{method} redirected to an unusable URL {location!r}")
            path = target.path + (f"?{target.query}" if target.query else "")
            https = target.scheme == "https"
            conn = self._connect(target.hostname, target.port or (443 if https else 80), https, t)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
                nxt = resp.getheader("Location")
            except TimeoutError as exc:
                raise OperationTimeout(f"{method} {location}: no answer in {t:g}s") from exc
            except (http.client.HTTPException, OSError) as exc:
                raise BrokerUnavailable(f"{method} {location}: {exc}") from exc
            finally:
                conn.close()
            if status not in (307, 308) or not nxt:
                return status, payload
            location = nxt
        raise BrokerUnavailable(f"{method} {location}: too many redirects")

    def reset(self) -> None:
        """Close this thread's connection (the next request opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        """Close every connection opened so far, from any thread."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


def _token(endpoints: Endpoints) -> str | None:
    if not endpoints.auth_token_env:
        return None
    return secret_from_env(endpoints.auth_token_env, endpoints.label)


def client_security(endpoints: Endpoints) -> dict[str, Any]:
    """``pulsar.Client`` keyword arguments for ``endpoints``' token and TLS settings: the token
    is read from the environment variable the endpoints name, here, in this process."""
    kwargs: dict[str, Any] = {}
    token = _token(endpoints)
    if token is not None:
        kwargs["authentication"] = pulsar.AuthenticationToken(token)
    if endpoints.tls_ca_file:
        kwargs["tls_trust_certs_file_path"] = endpoints.tls_ca_file
    if endpoints.service_url.startswith("pulsar+ssl://"):
        kwargs["tls_validate_hostname"] = not endpoints.tls_skip_hostname_check
    return kwargs


def admin_headers(endpoints: Endpoints) -> dict[str, str]:
    """The admin API's headers: ``Authorization: Bearer <token>`` under token authentication."""
    token = _token(endpoints)
    if token is None:
        return {}
    # Naming the method makes a broker refuse a wrong token (HTTP 401) instead of falling back
    # to its anonymous role, when it has one.
    return {"Authorization": f"Bearer {token}", "X-Pulsar-Auth-Method-Name": "token"}


def admin_tls(endpoints: Endpoints) -> ssl.SSLContext | None:
    """The TLS context for https:// admin URLs (the target's CA bundle, if it names one)."""
    if not any(u.startswith("https://") for u in endpoints.admin_urls):
        return None
    ctx = ssl.create_default_context(cafile=endpoints.tls_ca_file or None)
    ctx.check_hostname = not endpoints.tls_skip_hostname_check
    return ctx


class PulsarClient(DriverClient):
    """One ``pulsar.Client`` (one TCP connection per broker)."""

    def __init__(
        self,
        service_url: str,
        settings: Mapping[str, Any],
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.service_url = service_url
        self.client = pulsar.Client(
            service_url,
            operation_timeout_seconds=int(settings["operation_timeout_s"]),
            io_threads=int(settings["io_threads"]),
            message_listener_threads=int(settings["listener_threads"]),
            logger=client_logger(),
            **(security or {}),
        )

    def close(self) -> None:
        try:
            self.client.close()
        except Exception as exc:  # closing after a broker died may time out: nothing to do
            log.debug("pulsar client close: %s", exc)


_NATIVE: Any = getattr(pulsar, "_pulsar", None)
"""pulsar-client's C++ extension. Its ``MessageBuilder`` and the wrapped producer's own
``send_async`` carry a plain payload without the Python wrapper's per-call argument checks and
schema step (~10 us a message of ~90 us in a profile of our worker at full rate); the wrapper
is used whenever that layout is not there."""


class PulsarProducer(Producer):
    """A ``pulsar.Producer`` behind the driver interface."""

    def __init__(self, topic: str, producer: pulsar.Producer) -> None:
        self.topic = topic
        self._producer = producer
        # The fast path only for what it is equivalent to: raw bytes (no schema encoding).
        raw = getattr(producer, "_producer", None)
        schema = getattr(producer, "_schema", None)
        fast = (
            _NATIVE is not None
            and hasattr(_NATIVE, "MessageBuilder")
            and hasattr(raw, "send_async")
            and type(schema).__name__ == "BytesSchema"
        )
        self._raw: Any = raw if fast else None

    def send(self, payload: bytes) -> None:
        self._producer.send(payload)

    def send_async(self, payload: bytes, callback: SendCallback) -> None:
        ok = pulsar.Result.Ok

        def done(res: pulsar.Result, _msg_id: object) -> None:
            # A raising callback would kill the process (pulsar-client calls it from C++).
            try:
                callback(None if res == ok else PulsarSendError(res))
            except BaseException as exc:
                _log_callback_error(exc)

        if self._raw is not None:
            self._raw.send_async(_NATIVE.MessageBuilder().content(payload).build(), done)
        else:
            self._producer.send_async(payload, done)

    def close(self) -> None:
        try:
            self._producer.close()
        except Exception as exc:
            log.debug("pulsar producer close: %s", exc)


class PulsarConsumer(Consumer):
    """A ``pulsar.Consumer`` with a message listener that acknowledges each message."""

    def __init__(self, topic: str, subscription: str) -> None:
        self.topic = topic
        self.subscription = subscription
        self.consumer: pulsar.Consumer | None = None

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except Exception as exc:
                log.debug("pulsar consumer close: %s", exc)

    def unsubscribe(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.unsubscribe()
            except Exception as exc:
                log.debug("pulsar unsubscribe: %s", exc)
                self.close()


def _log_callback_error(exc: BaseException) -> None:
    log.error("callback raised %s: %s", type(exc).__name__, exc)


class PulsarDriver(Driver):
    """Apache Pulsar through ``pulsar-client`` and the admin REST API."""

    name = "pulsar"
    send_modes = frozenset({"sync", "async"})
    paths = ("direct", "proxy")

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        path: str = "direct",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(endpoints, path=path, settings=settings)
        self.settings = require(self.settings, DEFAULTS, self.name)
        if not endpoints.admin_urls:
            raise ConfigError("Pulsar endpoints have no admin URL")
        if path == "proxy" and not endpoints.proxy_url:
            raise ConfigError(
                "path 'proxy' needs the Pulsar proxy: bring the infra up with --proxy"
            )
        self.service_url = endpoints.proxy_url if path == "proxy" else endpoints.service_url
        self.security = client_security(endpoints)
        self.tenant = "public"
        self.namespace = "public/default"
        self._http = self._new_http()
        self._lookup_clients: dict[int, pulsar.Client] = {}
        self._lock = threading.Lock()
        self._sub_type = getattr(pulsar.ConsumerType, str(self.settings["subscription_type"]))

    # -- names -------------------------------------------------------------------------------
    def full_name(self, topic: str) -> str:
        """``persistent://<namespace>/<topic>`` unless ``topic`` is already a full name."""
        return topic if "://" in topic else f"persistent://{self.namespace}/{topic}"

    def _rest_path(self, topic: str) -> str:
        full = self.full_name(topic)
        return urllib.parse.quote(full.split("://", 1)[1])

    def _admin_path(self, topic: str) -> str:
        """The admin REST path of a topic (create, delete; ``/stats`` below it)."""
        return f"/admin/v2/persistent/{self._rest_path(topic)}"

    # -- admin -------------------------------------------------------------------------------
    def _create_one(self, http_: _Http, topic: str) -> TopicResult:
        path = self._admin_path(topic)
        started = time.monotonic_ns()
        try:
            status, body = http_.request("PUT", path)
        except DriverError as exc:
            return TopicResult(
                topic, (time.monotonic_ns() - started) // 1000, str(exc), self.classify(exc)
            )
        latency = (time.monotonic_ns() - started) // 1000
        if status in (200, 204, 409):  # 409: it already exists
            return TopicResult(topic, latency)
        err = HttpError("PUT", path, status, body.decode(errors="replace"))
        return TopicResult(topic, latency, str(err), self.classify(err))

    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        http_ = self._new_http()
        try:
            with ThreadPoolExecutor(concurrency, thread_name_prefix="pulsar-admin") as pool:
                window: deque[Future[TopicResult]] = deque()
                try:
                    for name in names:
                        # Twice the pool size in flight keeps every thread busy, bounded memory.
                        if len(window) >= 2 * concurrency:
                            yield window.popleft().result()
                        window.append(pool.submit(self._create_one, http_, name))
                    while window:
                        yield window.popleft().result()
                finally:
                    for fut in window:
                        fut.cancel()
        finally:
            http_.close()

    def delete_topics(self, names: Sequence[str]) -> list[str]:
        """Delete ``names`` with their subscriptions and data (``force``); return the errors
        (a topic that does not exist is no error)."""
        http_ = self._new_http()
        errors: list[str] = []
        try:
            for name in names:
                path = self._admin_path(name)
                try:
                    status, body = http_.request("DELETE", f"{path}?force=true")
                except DriverError as exc:
                    errors.append(f"{name}: {exc}")
                    continue
                if status not in (200, 204, 404):
                    errors.append(
                        str(HttpError("DELETE", path, status, body.decode(errors="replace")))
                    )
        finally:
            http_.close()
        return errors

    def _new_http(self) -> _Http:
        return _Http(
            self.endpoints.admin_urls[0],
            float(self.settings["http_timeout_s"]),
            admin_headers(self.endpoints),
            admin_tls(self.endpoints),
        )

    def admin_request(self, base_url: str, method: str, path: str) -> tuple[int, bytes]:
        """One admin API call to ``base_url`` (any broker's web URL) with the endpoints' token
        and TLS; (status, body)."""
        http_ = _Http(
            base_url,
            float(self.settings["http_timeout_s"]),
            admin_headers(self.endpoints),
            admin_tls(self.endpoints),
        )
        try:
            return http_.request(method, path)
        finally:
            http_.close()

    def _lookup_client(self, timeout_s: float) -> pulsar.Client:
        secs = max(1, math.ceil(timeout_s))
        with self._lock:
            client = self._lookup_clients.get(secs)
            if client is None:
                client = pulsar.Client(
                    self.service_url,
                    operation_timeout_seconds=secs,
                    logger=client_logger(),
                    **self.security,
                )
                self._lookup_clients[secs] = client
            return client

    def lookup(self, topic: str, timeout_s: float, method: LookupMethod = "admin") -> int:
        started = time.monotonic_ns()
        if method == "admin":
            path = f"/lookup/v2/topic/persistent/{self._rest_path(topic)}"
            status, body = self._http.request("GET", path, timeout_s=timeout_s)
            if status != 200:
                raise HttpError("GET", path, status, body.decode(errors="replace"))
            return (time.monotonic_ns() - started) // 1000
        if method == "client":
            client = self._lookup_client(timeout_s)
            started = time.monotonic_ns()
            try:
                producer = client.create_producer(self.full_name(topic))
            except pulsar.Timeout as exc:
                raise OperationTimeout(f"binary lookup of {topic}: {exc}") from exc
            except pulsar.PulsarException as exc:
                raise DriverError(f"binary lookup of {topic}: {exc}") from exc
            latency = (time.monotonic_ns() - started) // 1000
            try:
                producer.close()
            except pulsar.PulsarException as exc:
                log.debug("lookup producer close: %s", exc)
            return latency
        raise ConfigError(f"unknown lookup method {method!r}")

    def broker_stats(self, topics: Sequence[str]) -> dict[str, int]:
        keys = ("msgInCounter", "msgOutCounter", "bytesInCounter", "bytesOutCounter")
        totals = dict.fromkeys((*keys, "msgBacklog", "topics", "missing"), 0)

        http_ = self._new_http()

        def one(topic: str) -> dict[str, Any] | None:
            path = f"{self._admin_path(topic)}/stats"
            status, body = http_.request("GET", path)
            if status == 404:
                return None
            if status != 200:
                raise HttpError("GET", path, status, body.decode(errors="replace"))
            data = json.loads(body)
            return data if isinstance(data, dict) else None

        try:
            with ThreadPoolExecutor(min(16, max(1, len(topics))), "pulsar-stats") as pool:
                for stats in pool.map(one, topics):
                    if stats is None:
                        totals["missing"] += 1
                        continue
                    totals["topics"] += 1
                    for k in keys:
                        totals[k] += int(stats.get(k, 0))
                    for sub in (stats.get("subscriptions") or {}).values():
                        totals["msgBacklog"] += int(sub.get("msgBacklog", 0))
        finally:
            http_.close()
        totals["messages_in"] = totals["msgInCounter"]
        totals["messages_out"] = totals["msgOutCounter"]
        return totals

    def set_namespace_bundles(self, bundles: int) -> str | None:
        if bundles < 1:
            raise ConfigError(f"bundles must be at least 1, not {bundles}")
        ns = f"{self.tenant}/bench-b{bundles}"
        status, body = self._http.request(
            "PUT", f"/admin/v2/namespaces/{ns}", {"bundles": {"numBundles": bundles}}
        )
        if status not in (200, 204, 409):
            raise HttpError("PUT", f"/admin/v2/namespaces/{ns}", status, body.decode())
        status, body = self._http.request("GET", f"/admin/v2/namespaces/{ns}/bundles")
        if status != 200:
            raise HttpError("GET", f"/admin/v2/namespaces/{ns}/bundles", status, body.decode())
        have = json.loads(body).get("numBundles")
        if have != bundles:
            raise DriverError(f"namespace {ns} exists with {have} bundles, not {bundles}")
        self.namespace = ns
        return ns

    def settings_record(self) -> dict[str, Any]:
        return {
            **super().settings_record(),
            "service_url": self.service_url,
            "namespace": self.namespace,
            "client_version": pulsar.__version__,
        }

    # -- clients, producers, consumers -------------------------------------------------------
    def new_client(self) -> PulsarClient:
        return PulsarClient(self.service_url, self.settings, self.security)

    def producer(self, topic: str, send_mode: str, client: DriverClient) -> PulsarProducer:
        self.check_send_mode(send_mode)
        if not isinstance(client, PulsarClient):
            raise TypeError("a Pulsar producer needs a PulsarClient")
        s = self.settings
        try:
            producer = client.client.create_producer(
                self.full_name(topic),
                send_timeout_millis=int(s["send_timeout_ms"]),
                max_pending_messages=int(s["max_pending_messages"]),
                block_if_queue_full=True,
                batching_enabled=bool(s["batching"]),
                batching_max_publish_delay_ms=int(s["batching_max_publish_delay_ms"]),
            )
        except pulsar.Timeout as exc:
            raise OperationTimeout(f"creating a producer on {topic}: {exc}") from exc
        except pulsar.PulsarException as exc:
            raise DriverError(f"creating a producer on {topic}: {exc}") from exc
        return PulsarProducer(topic, producer)

    def consumer(
        self, topic: str, subscription: str, on_message: OnMessage, client: DriverClient
    ) -> PulsarConsumer:
        if not isinstance(client, PulsarClient):
            raise TypeError("a Pulsar consumer needs a PulsarClient")
        handle = PulsarConsumer(topic, subscription)

        def listener(consumer: pulsar.Consumer, msg: pulsar.Message) -> None:
            now = time.time_ns()
            try:
                on_message(msg.data(), now)
            finally:
                consumer.acknowledge(msg)

        try:
            handle.consumer = client.client.subscribe(
                self.full_name(topic),
                subscription,
                consumer_type=self._sub_type,
                message_listener=guarded(listener, _log_callback_error),
                receiver_queue_size=int(self.settings["receiver_queue_size"]),
                initial_position=pulsar.InitialPosition.Latest,
            )
        except pulsar.Timeout as exc:
            raise OperationTimeout(f"subscribing {subscription} to {topic}: {exc}") from exc
        except pulsar.PulsarException as exc:
            raise DriverError(f"subscribing {subscription} to {topic}: {exc}") from exc
        return handle

    def classify(self, exc: BaseException) -> ErrorKind:
        if isinstance(exc, PulsarSendError):
            res = exc.result
            if res in _TIMEOUT_RESULTS:
                return "timeout"
            if res in _DISCONNECT_RESULTS:
                return "disconnected"
            if res in _CLIENT_RESULTS:
                return "client_error"
            return "broker_error"
        if isinstance(exc, OperationTimeout | pulsar.Timeout | TimeoutError):
            return "timeout"
        if isinstance(exc, BrokerUnavailable | pulsar.ConnectError | ConnectionError):
            return "disconnected"
        if isinstance(exc, Unsupported | ConfigError):
            return "client_error"
        if isinstance(exc, HttpError):
            return "timeout" if exc.status in (408, 504) else "broker_error"
        if isinstance(exc, pulsar.PulsarException | DriverError):
            return "broker_error"
        return "other"

    def close(self) -> None:
        with self._lock:
            clients = list(self._lookup_clients.values())
            self._lookup_clients.clear()
        for client in clients:
            try:
                client.close()
            except Exception as exc:
                log.debug("lookup client close: %s", exc)
        self._http.close()
