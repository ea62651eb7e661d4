"""The driver interface: what the framework asks of a broker, and nothing more.

A driver talks to one broker: admin (create topics, look one up, namespace bundles, broker-side
counters), producers and consumers (DESIGN.md section 2). It knows nothing of rates, timing,
sequence numbers or statistics; the worker (:mod:`bench.engines.pool`) owns those, so both
brokers are measured by the same code. The shape follows the OpenMessaging Benchmark's driver
API, cut down to what the scenarios use.

Threading contract, for every driver:

- ``send_async`` callbacks and ``on_message`` callbacks run on the client library's threads.
  The driver wraps them so that an exception they raise is swallowed (and counted by the
  caller's own wrapper), never raised into the library: pulsar-client kills the process when a
  callback raises, and the RocketMQ client would log and drop it.
- A driver object, its clients, producers and consumers are created in the process that uses
  them (they hold sockets and threads; nothing here is fork-safe or picklable).

Errors: operations raise :class:`~bench.errors.DriverError` subclasses; :meth:`Driver.classify`
maps any exception (also those handed to callbacks) to one of :data:`ERROR_KINDS`, which is
what the worker counts.

Adding a broker is one module with a :class:`Driver` subclass and one line in
:data:`_BUILTIN`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from bench.errors import ConfigError, DriverError
from bench.infra.topology import Endpoints

SendMode = Literal["sync", "async", "oneway"]
SEND_MODES: Final[tuple[SendMode, ...]] = ("sync", "async", "oneway")

ConnectionMode = Literal["shared", "per_producer", "per_batch"]
CONNECTION_MODES: Final[tuple[ConnectionMode, ...]] = ("shared", "per_producer", "per_batch")
"""How clients (connections) are shared: one per worker; one per producer; a new one after
every batch of N sends of a producer (the seed's "reused vs new connections")."""

PathName = Literal["direct", "proxy"]
PATHS: Final[tuple[PathName, ...]] = ("direct", "proxy")

LookupMethod = Literal["admin", "client"]
LOOKUP_METHODS: Final[tuple[LookupMethod, ...]] = ("admin", "client")
"""``admin``: Pulsar HTTP lookup, RocketMQ name-server route query. ``client``: what a client
does before its first send (Pulsar binary lookup, measured as producer creation; RocketMQ proxy
QueryRoute)."""

ErrorKind = Literal["timeout", "disconnected", "broker_error", "client_error", "other"]
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = (
    "timeout",
    "disconnected",
    "broker_error",
    "client_error",
    "other",
)
"""``timeout``: no answer in time. ``disconnected``: no connection (broker down, reset).
``broker_error``: the broker answered with a refusal (busy, topic not found, not ready).
``client_error``: the client refused locally (queue full, closed, bad argument). ``other``:
anything unrecognised (look at the logs)."""

CLIENT_LOG_ENV: Final = "BENCH_CLIENT_LOG"
"""Where client libraries' own log lines go (a file), when the runner names one: never the
terminal. A worker process leaves it unset: its console is its log file."""

SendCallback = Callable[[BaseException | None], None]
"""Completion of an asynchronous send: None on acknowledgement, else the failure."""

OnMessage = Callable[[bytes, int], None]
"""A received message: its payload and the receive time (``time.time_ns()``)."""


class OperationTimeout(DriverError):
    """A driver operation (lookup, subscribe, send) got no answer within its timeout."""


class Unsupported(DriverError):
    """The broker or the chosen path cannot do this (e.g. ONEWAY on Pulsar)."""


@dataclass(frozen=True, slots=True)
class TopicResult:
    """The outcome of creating one topic."""

    name: str
    latency_us: int
    """From the request leaving to its answer (for a batched creation: the batch's)."""
    error: str | None = None
    """None on success (or when the topic already existed); else a one-line reason."""
    error_kind: ErrorKind | None = None

    @property
    def ok(self) -> bool:
        """True when the topic exists after the call."""
        return self.error is None


class DriverClient(ABC):
    """One client connection scope (a TCP connection pool, a gRPC channel...).

    What "one client" means is the broker's: for Pulsar one ``pulsar.Client`` (one connection
    per broker); for RocketMQ one 5.x client instance per role and one remoting connection per
    broker. Producers and consumers created with the same client share it.
    """

    @abstractmethod
    def close(self) -> None:
        """Close the client and whatever it opened; never raises."""


class Producer(ABC):
    """Sends payloads to one topic."""

    topic: str

    @abstractmethod
    def send(self, payload: bytes) -> None:
        """Send and wait for the broker's acknowledgement; raise on failure."""

    @abstractmethod
    def send_async(self, payload: bytes, callback: SendCallback) -> None:
        """Send without waiting; ``callback`` is called exactly once with the outcome.

        The callback runs on a client thread. If the send cannot even be started, the failure
        is raised here instead and the callback is not called.
        """

    def send_oneway(self, payload: bytes) -> None:
        """Send with no acknowledgement at all (RocketMQ ONEWAY); raise if unsupported."""
        raise Unsupported(f"{type(self).__name__} has no ONEWAY send")

    @abstractmethod
    def close(self) -> None:
        """Flush what is pending (bounded by the send timeout) and close; never raises."""


class Consumer(ABC):
    """Receives the messages of one (topic, subscription) and hands them to ``on_message``.

    The driver acknowledges each message after ``on_message`` returns.
    """

    topic: str
    subscription: str

    @property
    def restarts(self) -> int:
        """Times the driver had to re-create the client library's consumer because it did not
        recover by itself (the runner reports that as "clients did not recover")."""
        return 0

    @abstractmethod
    def close(self) -> None:
        """Stop receiving; the subscription stays on the broker. Never raises."""

    @abstractmethod
    def unsubscribe(self) -> None:
        """Stop receiving and delete the subscription on the broker (best effort)."""


class Driver(ABC):
    """One broker's driver. Create it in the process that uses it; :meth:`close` it."""

    name: ClassVar[str]
    send_modes: ClassVar[frozenset[str]] = frozenset({"sync", "async"})
    paths: ClassVar[tuple[str, ...]] = ("direct",)

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        path: str = "direct",
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``path`` picks the data path (see :data:`PATHS`); ``settings`` are driver options
        (each driver documents its keys and rejects unknown ones)."""
        if path not in self.paths:
            raise ConfigError(
                f"{self.name} driver: path {path!r} is not one of {', '.join(self.paths)}"
            )
        self.endpoints = endpoints
        self.path = path
        self.settings: dict[str, Any] = dict(settings or {})

    def check_send_mode(self, send_mode: str) -> None:
        """Raise :class:`Unsupported` when this driver cannot send in ``send_mode``."""
        if send_mode not in self.send_modes:
            raise Unsupported(
                f"{self.name} driver cannot send {send_mode!r} "
                f"(it supports {', '.join(sorted(self.send_modes))})"
            )

    # -- admin -------------------------------------------------------------------------------
    @abstractmethod
    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        """Create ``names`` with up to ``concurrency`` requests in flight; yield one result per
        topic as it completes (failures are results, not exceptions). A topic that already
        exists counts as created."""

    @abstractmethod
    def lookup(self, topic: str, timeout_s: float, method: LookupMethod = "admin") -> int:
        """Look ``topic`` up once; return the latency in microseconds.

        Raises :class:`OperationTimeout` after ``timeout_s``, another ``DriverError`` on a
        refusal.
        """

    @abstractmethod
    def broker_stats(self, topics: Sequence[str]) -> dict[str, int]:
        """Broker-side cumulative counters (they reset when a broker restarts).

        Every driver returns ``messages_in`` (messages the broker stored); the other keys are
        the broker's own names.
        """

    def set_namespace_bundles(self, bundles: int) -> str | None:
        """Send later topics to a namespace with ``bundles`` bundles; return its name.

        Brokers without namespaces (RocketMQ) return None and change nothing.
        """
        return None

    def settings_record(self) -> dict[str, Any]:
        """What makes results comparable: the path and every client setting in effect."""
        return {"driver": self.name, "path": self.path, **self.settings}

    # -- clients, producers, consumers -------------------------------------------------------
    @abstractmethod
    def new_client(self) -> DriverClient:
        """Open a new client (see :class:`DriverClient`)."""

    @abstractmethod
    def producer(self, topic: str, send_mode: str, client: DriverClient) -> Producer:
        """Create a producer on ``client``; returns once it can send."""

    @abstractmethod
    def consumer(
        self, topic: str, subscription: str, on_message: OnMessage, client: DriverClient
    ) -> Consumer:
        """Subscribe (creating the subscription if needed) and start delivering to
        ``on_message``; returns once the subscription exists on the broker."""

    @abstractmethod
    def classify(self, exc: BaseException) -> ErrorKind:
        """Which of :data:`ERROR_KINDS` ``exc`` is."""

    @abstractmethod
    def close(self) -> None:
        """Release the driver's own resources (admin connections, lookup clients)."""

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def guarded(callback: Callable[..., None], on_error: Callable[[BaseException], None]) -> Any:
    """Wrap ``callback`` so it never raises into a client library's thread."""

    def call(*args: Any) -> None:
        try:
            callback(*args)
        except BaseException as exc:  # a library thread must never see it
            with contextlib.suppress(BaseException):
                on_error(exc)

    return call


# -- registry ---------------------------------------------------------------------------------
_BUILTIN: Final[dict[str, str]] = {
    "pulsar": "bench.drivers.pulsar:PulsarDriver",
    "rocketmq": "bench.drivers.rocketmq.driver:RocketMQDriver",
}
_EXTRA: dict[str, str] = {}


def driver_names() -> list[str]:
    """The drivers a user can pick."""
    return sorted(_BUILTIN)


def register_driver(name: str, target: str) -> None:
    """Register ``"module:Class"`` under ``name`` for this process (tests register fakes).

    Registrations are not persisted; :func:`registrations` lists them so that a parent can pass
    them on to the worker processes it starts.
    """
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in driver")
    if ":" not in target:
        raise ValueError(f"driver target {target!r} is not 'module:Class'")
    _EXTRA[name] = target


def unregister_driver(name: str) -> None:
    """Remove a registration made by :func:`register_driver` (no error if absent)."""
    _EXTRA.pop(name, None)


def registrations() -> dict[str, str]:
    """Drivers registered in this process beyond the built-in ones."""
    return dict(_EXTRA)


def get_driver(name: str) -> type[Driver]:
    """The driver class registered as ``name`` (imported on first use)."""
    target = _EXTRA.get(name) or _BUILTIN.get(name)
    if target is None:
        raise ConfigError(f"unknown broker driver {name!r}; known: {', '.join(driver_names())}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ConfigError(f"driver {name!r} ({target}) is not a Driver subclass")
    return cls


def open_driver(
    name: str,
    endpoints: Endpoints,
    *,
    path: str = "direct",
    settings: Mapping[str, Any] | None = None,
) -> Driver:
    """Instantiate the driver ``name`` for ``endpoints``."""
    return get_driver(name)(endpoints, path=path, settings=settings)


def endpoints_from_json(data: Mapping[str, Any]) -> Endpoints:
    """Rebuild :class:`Endpoints` from :meth:`Endpoints.to_json` output."""
    raw = dict(data)
    raw["admin_urls"] = tuple(raw.get("admin_urls", ()))
    raw["broker_addrs"] = dict(raw.get("broker_addrs", {}))
    try:
        return Endpoints(**raw)
    except TypeError as exc:
        raise ConfigError(f"endpoints do not match this bench's schema: {exc}") from exc


def secret_from_env(name: str, label: str) -> str:
    """The secret held by environment variable ``name``; :class:`ConfigError` naming ``label``
    (the target) and the variable, never a value, when it is unset or empty.

    Secrets reach a client only this way: files, specs and logs carry the variable's name."""
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"{label}: environment variable {name} is not set (it holds the credentials)"
        )
    return value


def require(settings: Mapping[str, Any], known: Mapping[str, Any], driver: str) -> dict[str, Any]:
    """Defaults of ``known`` overlaid with ``settings``; unknown keys are a ConfigError."""
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(
            f"{driver} driver: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    return {**known, **settings}
