"""A narrow client for the Apache RocketMQ 5.x remoting protocol (name server and broker).

The official Python client speaks gRPC to the proxy and has neither topic admin nor ONEWAY sends
(DESIGN.md section 5), so this module covers exactly what the suite needs from the remoting
side: create and delete topics (one by one or in 5.3 batches), route and cluster lookups at the
name server, broker runtime counters, and SEND_MESSAGE_V2 sends (sync, future-based and ONEWAY).

Concurrency model: a :class:`RemotingConnection` is one TCP connection with a reader thread;
requests are pipelined, each matched to its response by ``opaque``, so thousands can be in
flight on one connection. Calls are thread-safe. Futures complete on the reader thread, so
callbacks added to them must be short and must not block. Objects here are not fork-safe:
create them in the process that uses them.

Errors: a peer that cannot be reached, or does not answer in time, raises
:class:`~bench.errors.BrokerUnavailable`; an answer with a failure code raises
:class:`RemotingError` (a :class:`~bench.errors.DriverError`) carrying that code and remark.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from bench.errors import BrokerUnavailable, DriverError
from bench.protocol.remoting_codec import (
    DEFAULT_MAX_FRAME_BYTES,
    FLAG_ONEWAY,
    LANGUAGE,
    PERM_READ,
    PERM_WRITE,
    REMOTING_VERSION,
    BrokerData,
    ClusterInfo,
    FrameDecoder,
    MessageQueue,
    ProtocolError,
    QueueData,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRoute,
    encode_command,
    encode_properties,
    parse_cluster_info,
    parse_kv_table,
    parse_topic_route,
    response_code_name,
    topic_config_json,
)

__all__ = [
    "BrokerData",
    "ClusterInfo",
    "MessageQueue",
    "ProtocolError",
    "QueueData",
    "RemotingClient",
    "RemotingCommand",
    "RemotingConnection",
    "RemotingError",
    "RequestCode",
    "ResponseCode",
    "SendResult",
    "TopicNotFound",
    "TopicRoute",
    "pipelined",
    "wait_result",
]

T = TypeVar("T")
R = TypeVar("R")

# How often the reader thread wakes on an idle connection to expire overdue requests: the
# resolution of every request timeout.
_SWEEP_INTERVAL: Final = 0.1
_RECV_BYTES: Final = 1 << 18
# Extra wait beyond a request's own deadline before a caller stops trusting the reader thread
# to expire it (it only matters if that thread died).
_GRACE: Final = 1.0
# SendMessageRequestHeaderV2.c/d: the template topic the broker would auto-create from, and its
# queue count; carried because the fields are mandatory, unused with autoCreateTopicEnable=false.
_DEFAULT_TOPIC: Final = "TBW102"
_DEFAULT_TOPIC_QUEUE_NUMS: Final = 4

_REQUEST_NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in vars(RequestCode).items()
    if not name.startswith("_") and isinstance(value, int)
}
# A send "succeeds" with these codes; the Java client maps them to SendStatus the same way.
_SEND_STATUS: Final[dict[int, str]] = {
    ResponseCode.SUCCESS: "SEND_OK",
    ResponseCode.FLUSH_DISK_TIMEOUT: "FLUSH_DISK_TIMEOUT",
    ResponseCode.FLUSH_SLAVE_TIMEOUT: "FLUSH_SLAVE_TIMEOUT",
    ResponseCode.SLAVE_NOT_AVAILABLE: "SLAVE_NOT_AVAILABLE",
}


class RemotingError(DriverError):
    """A name server or broker answered a request with a failure code.

    Attributes: ``addr`` (who answered), ``request_code``, ``code`` (the response code) and
    ``remark`` (the peer's explanation, possibly None).
    """

    def __init__(self, addr: str, request_code: int, code: int, remark: str | None) -> None:
        self.addr = addr
        self.request_code = request_code
        self.code = code
        self.remark = remark
        what = _REQUEST_NAMES.get(request_code, f"request {request_code}")
        super().__init__(
            f"{addr} refused {what}: code {code} ({response_code_name(code)}): "
            # Remarks often end in a multi-line FAQ hint; errors are one line.
            f"{' '.join((remark or 'no remark').split())}"
        )


class TopicNotFound(RemotingError):
    """The name server has no route for the topic (TOPIC_NOT_EXIST): create it first."""


def _check(addr: str, request_code: int, resp: RemotingCommand) -> RemotingCommand:
    if resp.code == ResponseCode.SUCCESS:
        return resp
    if resp.code == ResponseCode.TOPIC_NOT_EXIST:
        raise TopicNotFound(addr, request_code, resp.code, resp.remark)
    raise RemotingError(addr, request_code, resp.code, resp.remark)


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"remoting address {addr!r} is not host:port")
    return host.strip("[]"), int(port)


def _identity(resp: RemotingCommand) -> RemotingCommand:
    return resp


@dataclass(slots=True)
class _Pending:
    future: Future[Any]
    deadline: float
    timeout: float
    what: str
    convert: Callable[[RemotingCommand], Any]


def _complete(fut: Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    # A caller may have cancelled the future, or a sweep may have failed it a moment earlier.
    if fut.done():
        return
    try:
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
    except InvalidStateError:
        pass


class RemotingConnection:
    """One TCP connection to a name server or broker, with pipelined requests.

    Connects in the constructor. Every request gets a deadline; the reader thread fails it with
    ``BrokerUnavailable`` when the deadline passes or the connection drops. A closed connection
    stays closed: open a new one (``RemotingClient`` does that on next use).
    """

    def __init__(
        self,
        addr: str,
        *,
        connect_timeout: float = 3.0,
        io_timeout: float = 10.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        """Connect to ``addr`` ("host:port"); raise ``BrokerUnavailable`` if that fails.

        ``io_timeout`` bounds one write: a peer that stops reading for that long is treated as
        dead (the connection closes, since a half-written frame corrupts the stream).
        """
        self.addr = addr
        host, port = _split_addr(addr)
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise BrokerUnavailable(
                f"cannot connect to {addr} within {connect_timeout}s ({exc}): is it running?"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(io_timeout)
        # The reader gets its own descriptor so that its short poll timeout (the sweep tick)
        # does not become the writer's timeout; both stay in timeout mode, so they agree on
        # the shared non-blocking flag.
        self._rsock = sock.dup()
        self._rsock.settimeout(_SWEEP_INTERVAL)
        self._sock = sock
        self._max_frame = max_frame_bytes
        self._opaque = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._wlock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False
        self._close_reason = ""
        self._reader = threading.Thread(
            target=self._read_loop, name=f"remoting-reader-{addr}", daemon=True
        )
        self._reader.start()

    def __repr__(self) -> str:
        state = f"closed: {self._close_reason}" if self._closed else "open"
        return f"<RemotingConnection {self.addr} {state}, {len(self._pending)} in flight>"

    @property
    def closed(self) -> bool:
        """True once the connection is closed (by us, by the peer, or after an error)."""
        return self._closed

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered, failed or expired."""
        return len(self._pending)

    def next_opaque(self) -> int:
        """A fresh request id (31 bits, as Java reads it into an int)."""
        return next(self._opaque) & 0x7FFFFFFF

    # --- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write pre-encoded frames as they are (one or many, concatenated)."""
        if self._closed:
            raise BrokerUnavailable(f"connection to {self.addr} is closed: {self._close_reason}")
        try:
            with self._wlock:
                self._sock.sendall(data)
        except OSError as exc:
            self._shutdown(f"write failed: {exc}")
            raise BrokerUnavailable(f"cannot write to {self.addr}: {exc}") from exc

    def submit(
        self,
        opaque: int,
        frame: bytes,
        *,
        timeout: float,
        what: str = "request",
        convert: Callable[[RemotingCommand], R] | None = None,
    ) -> Future[R]:
        """Send a pre-encoded request frame whose opaque is ``opaque``; return its future.

        The future resolves to ``convert(response)`` (the response itself if no converter is
        given; an exception raised by ``convert`` becomes the future's exception), or fails
        with ``BrokerUnavailable`` after ``timeout`` seconds or when the connection drops.
        """
        fut: Future[Any] = Future()
        conv: Callable[[RemotingCommand], Any] = convert if convert is not None else _identity
        self._pending[opaque] = _Pending(fut, time.monotonic() + timeout, timeout, what, conv)
        # Registered first, then checked: _shutdown sets the flag before draining, so a request
        # racing with a close is either drained by it or removed here, never orphaned.
        if self._closed:
            self._pending.pop(opaque, None)
            raise BrokerUnavailable(f"connection to {self.addr} is closed: {self._close_reason}")
        try:
            self.write(frame)
        except BrokerUnavailable:
            self._pending.pop(opaque, None)
            raise
        return fut

    def request_async(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout: float,
    ) -> Future[RemotingCommand]:
        """Send a request and return a future of its response (any response code)."""
        opaque = self.next_opaque()
        frame = encode_command(RemotingCommand(code, opaque, 0, None, dict(ext_fields or {}), body))
        return self.submit(opaque, frame, timeout=timeout, what=_REQUEST_NAMES.get(code, str(code)))

    def request(
        self,
        code: int,
        ext_fields: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        timeout: float,
    ) -> RemotingCommand:
        """Send a request and wait for its response (any response code)."""
        return wait_result(self.request_async(code, ext_fields, body, timeout=timeout), timeout)

    def oneway(
        self, code: int, ext_fields: Mapping[str, str] | None = None, body: bytes = b""
    ) -> None:
        """Send a request flagged ONEWAY: the peer runs it and sends nothing back."""
        opaque = self.next_opaque()
        ext = dict(ext_fields or {})
        self.write(encode_command(RemotingCommand(code, opaque, FLAG_ONEWAY, None, ext, body)))

    # --- reading -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        decoder = FrameDecoder(self._max_frame)
        rsock = self._rsock
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        reason = "closed"
        try:
            # Runs for the connection's lifetime: ends on close, EOF or error.
            while not self._closed:
                try:
                    data = rsock.recv(_RECV_BYTES)
                except TimeoutError:
                    data = None
                if data is not None:
                    if not data:
                        reason = "closed by peer"
                        break
                    for cmd in decoder.feed(data):
                        self._dispatch(cmd)
                now = time.monotonic()
                if now >= next_sweep:
                    self._expire(now)
                    next_sweep = now + _SWEEP_INTERVAL
        except (OSError, ProtocolError) as exc:
            reason = f"read failed: {exc}"
        finally:
            self._shutdown(reason)
            rsock.close()

    def _dispatch(self, cmd: RemotingCommand) -> None:
        if not cmd.is_response:
            # Brokers only call clients that registered with a heartbeat; we never do.
            return
        entry = self._pending.pop(cmd.opaque, None)
        if entry is None:
            return  # the answer to a request that already expired
        try:
            result = entry.convert(cmd)
        except Exception as exc:
            _complete(entry.future, exc=exc)
        else:
            _complete(entry.future, result)

    def _expire(self, now: float) -> None:
        overdue = [op for op, p in list(self._pending.items()) if p.deadline <= now]
        for op in overdue:
            entry = self._pending.pop(op, None)
            if entry is not None:
                _complete(
                    entry.future,
                    exc=BrokerUnavailable(
                        f"{self.addr} did not answer {entry.what} within {entry.timeout:g}s"
                    ),
                )

    def _shutdown(self, reason: str) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._close_reason = reason
        with contextlib.suppress(OSError):  # the peer may have reset it already
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        # Pops until empty: a request registered concurrently is drained here or by submit.
        for _ in range(len(self._pending) + 1):
            if not self._pending:
                break
            drained = list(self._pending)
            for op in drained:
                entry = self._pending.pop(op, None)
                if entry is not None:
                    _complete(
                        entry.future,
                        exc=BrokerUnavailable(
                            f"connection to {self.addr} lost before {entry.what} was answered: "
                            f"{reason}"
                        ),
                    )

    def close(self, timeout: float = 2.0) -> None:
        """Close the connection, fail what is in flight, and wait for the reader thread."""
        self._shutdown("closed by client")
        if self._reader is not threading.current_thread():
            self._reader.join(timeout)

    def __enter__(self) -> RemotingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_result(fut: Future[T], timeout: float) -> T:
    """Wait for a future from this module; its own deadline normally fails it first."""
    try:
        return fut.result(timeout + _GRACE)
    except TimeoutError as exc:
        fut.cancel()
        raise BrokerUnavailable(f"no answer within {timeout:g}s") from exc


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the broker said about one acknowledged send."""

    status: str
    """``SEND_OK``, or ``FLUSH_DISK_TIMEOUT`` / ``FLUSH_SLAVE_TIMEOUT`` / ``SLAVE_NOT_AVAILABLE``
    (stored, but not as durably as configured)."""
    msg_id: str
    """The message's unique key (UNIQ_KEY, what the Java client calls msgId)."""
    offset_msg_id: str
    """The broker's id from store host and commit log offset."""
    queue: MessageQueue
    queue_offset: int


class _TopicSender:
    """Cached write queues of one topic, a round-robin cursor, and per-queue header templates."""

    __slots__ = ("cursor", "expires", "queues", "templates")

    def __init__(self, queues: list[MessageQueue], producer_group: str, expires: float) -> None:
        self.queues = queues
        self.expires = expires
        self.cursor = itertools.count()
        # The JSON header differs per send only in opaque, flag, bornTimestamp and properties,
        # so it is formatted from a template instead of json.dumps: this is the ONEWAY hot path.
        self.templates: list[str] = []
        for mq in queues:
            static = (
                f'"a":{_js(producer_group)},"b":{_js(mq.topic)},"c":{_js(_DEFAULT_TOPIC)},'
                f'"d":"{_DEFAULT_TOPIC_QUEUE_NUMS}","e":"{mq.queue_id}","f":"0","h":"0",'
                f'"j":"0","k":"false","m":"false","n":{_js(mq.broker_name)}'
            ).replace("%", "%%")
            self.templates.append(
                f'{{"code":{RequestCode.SEND_MESSAGE_V2},"language":"{LANGUAGE}",'
                f'"version":{REMOTING_VERSION},"opaque":%d,"flag":%d,'
                f'"extFields":{{{static},"g":"%d"%s}}}}'
            )

    def next_index(self) -> int:
        return next(self.cursor) % len(self.queues)


def _js(s: str) -> str:
    return json.dumps(s)


def _frame(template: str, opaque: int, flag: int, props: str, body: bytes) -> bytes:
    header = (template % (opaque, flag, time.time_ns() // 1_000_000, props)).encode()
    hlen = len(header)
    return (4 + hlen + len(body)).to_bytes(4, "big") + hlen.to_bytes(4, "big") + header + body


class RemotingClient:
    """Admin, lookup and send operations against one RocketMQ cluster over remoting.

    Holds one connection per address (name servers and brokers), opened on first use and
    reopened on the next use after it drops, so a restarted broker is picked up without a new
    client. Route lookups for sends are cached for ``route_ttl`` seconds, and dropped when a
    broker cannot be reached, so the next send asks the name server again.
    """

    def __init__(
        self,
        namesrv_addrs: str | Sequence[str],
        *,
        timeout: float = 3.0,
        admin_timeout: float = 30.0,
        connect_timeout: float | None = None,
        producer_group: str = "bench_producer",
        route_ttl: float = 30.0,
    ) -> None:
        """Name servers as ``"h:p;h:p"`` or a sequence; nothing is contacted until first use.

        ``timeout`` bounds lookups and sends (3 s, the Java client's send timeout);
        ``admin_timeout`` bounds topic creation and deletion, which slow down as the broker's
        topic count grows (each change rewrites the broker's topic config file).
        """
        addrs = namesrv_addrs.split(";") if isinstance(namesrv_addrs, str) else namesrv_addrs
        self.namesrv_addrs: tuple[str, ...] = tuple(a.strip() for a in addrs if a.strip())
        if not self.namesrv_addrs:
            raise ValueError("RemotingClient needs at least one name server address")
        for a in self.namesrv_addrs:
            _split_addr(a)
        self.timeout = timeout
        self.admin_timeout = admin_timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.producer_group = producer_group
        self.route_ttl = route_ttl
        self._conns: dict[str, RemotingConnection] = {}
        self._conn_lock = threading.Lock()
        self._senders: dict[str, _TopicSender] = {}
        self._closed = False

    # --- connections ---------------------------------------------------------------------

    def connection(self, addr: str) -> RemotingConnection:
        """The open connection to ``addr``, connecting (again) if there is none."""
        conn = self._conns.get(addr)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise DriverError("RemotingClient is closed")
        with self._conn_lock:
            conn = self._conns.get(addr)
            if conn is None or conn.closed:
                conn = RemotingConnection(
                    addr,
                    connect_timeout=self.connect_timeout,
                    io_timeout=max(self.timeout, self.admin_timeout),
                )
                self._conns[addr] = conn
            return conn

    def close(self) -> None:
        """Close every connection; in-flight requests fail with ``BrokerUnavailable``."""
        self._closed = True
        with self._conn_lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            conn.close()

    def __enter__(self) -> RemotingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _namesrv_request(
        self, code: int, ext: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> tuple[str, RemotingCommand]:
        # Name servers hold the same routes, so any reachable one will do; try them in order.
        last: BrokerUnavailable | None = None
        for addr in self.namesrv_addrs:
            try:
                conn = self.connection(addr)
                return addr, conn.request(code, ext, timeout=timeout or self.timeout)
            except BrokerUnavailable as exc:
                last = exc
        assert last is not None
        raise last

    def _namesrv_connection(self) -> RemotingConnection:
        last: BrokerUnavailable | None = None
        for addr in self.namesrv_addrs:
            try:
                return self.connection(addr)
            except BrokerUnavailable as exc:
                last = exc
        assert last is not None
        raise last

    # --- name server ---------------------------------------------------------------------

    def get_route(self, topic: str, *, timeout: float | None = None) -> TopicRoute:
        """The topic's route from the name server; ``TopicNotFound`` if it has none."""
        addr, resp = self._namesrv_request(
            RequestCode.GET_ROUTEINFO_BY_TOPIC, _route_ext(topic), timeout=timeout
        )
        _check(addr, RequestCode.GET_ROUTEINFO_BY_TOPIC, resp)
        return parse_topic_route(topic, resp.body)

    def get_routes(
        self, topics: Sequence[str], *, window: int = 512, timeout: float | None = None
    ) -> dict[str, TopicRoute | None]:
        """Routes of many topics, pipelined on one name server connection.

        A topic the name server does not know maps to None; other failures raise. At most
        ``window`` lookups are in flight at once.
        """
        conn = self._namesrv_connection()
        code = RequestCode.GET_ROUTEINFO_BY_TOPIC

        def convert(topic: str) -> Callable[[RemotingCommand], TopicRoute | None]:
            def parse(resp: RemotingCommand) -> TopicRoute | None:
                if resp.code == ResponseCode.TOPIC_NOT_EXIST:
                    return None
                return parse_topic_route(topic, _check(conn.addr, code, resp).body)

            return parse

        def submit(topic: str) -> Future[TopicRoute | None]:
            opaque = conn.next_opaque()
            cmd = RemotingCommand(code, opaque, 0, None, _route_ext(topic))
            return conn.submit(
                opaque,
                encode_command(cmd),
                timeout=timeout or self.timeout,
                what="GET_ROUTEINFO_BY_TOPIC",
                convert=convert(topic),
            )

        results = pipelined(topics, submit, window=window, timeout=timeout or self.timeout)
        return dict(zip(topics, results, strict=True))

    def topic_broker_addrs(self, topic: str) -> list[str]:
        """Master addresses of the brokers that hold ``topic`` (from a fresh route lookup)."""
        return self.get_route(topic).broker_addrs()

    def get_cluster_info(self, *, timeout: float | None = None) -> ClusterInfo:
        """Every broker group and cluster the name server knows."""
        addr, resp = self._namesrv_request(RequestCode.GET_BROKER_CLUSTER_INFO, timeout=timeout)
        return parse_cluster_info(_check(addr, RequestCode.GET_BROKER_CLUSTER_INFO, resp).body)

    def delete_topic_in_namesrv(self, topic: str, *, cluster: str | None = None) -> None:
        """Remove the topic's route from every name server (only from ``cluster`` if given).

        Name servers do not share state, so each one is told; all must be reachable.
        """
        ext = {"topic": topic}
        if cluster:
            ext["clusterName"] = cluster
        for addr in self.namesrv_addrs:
            resp = self.connection(addr).request(
                RequestCode.DELETE_TOPIC_IN_NAMESRV, ext, timeout=self.admin_timeout
            )
            _check(addr, RequestCode.DELETE_TOPIC_IN_NAMESRV, resp)
        self._senders.pop(topic, None)

    # --- broker admin --------------------------------------------------------------------

    def create_topic(
        self,
        broker_addr: str,
        topic: str,
        *,
        queue_nums: int = 8,
        perm: int = PERM_READ | PERM_WRITE,
        timeout: float | None = None,
    ) -> None:
        """Create (or update) one topic on one broker with UPDATE_AND_CREATE_TOPIC.

        The broker registers it with the name servers before answering, so a route lookup
        right after this returns finds it. ``queue_nums`` sets read and write queues alike
        (8 is mqadmin's default).
        """
        t = timeout or self.admin_timeout
        conn = self.connection(broker_addr)
        wait_result(
            self.create_topic_async(conn, topic, queue_nums=queue_nums, perm=perm, timeout=t), t
        )

    def create_topic_async(
        self,
        conn: RemotingConnection,
        topic: str,
        *,
        queue_nums: int = 8,
        perm: int = PERM_READ | PERM_WRITE,
        timeout: float | None = None,
    ) -> Future[None]:
        """Send one UPDATE_AND_CREATE_TOPIC on ``conn`` and return a future of its outcome.

        For callers that time each creation themselves (add a done-callback) while keeping
        many in flight.
        """
        code = RequestCode.UPDATE_AND_CREATE_TOPIC
        opaque = conn.next_opaque()
        ext = {
            "topic": topic,
            "defaultTopic": _DEFAULT_TOPIC,
            "readQueueNums": str(queue_nums),
            "writeQueueNums": str(queue_nums),
            "perm": str(perm),
            "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": "0",
            "order": "false",
        }
        return conn.submit(
            opaque,
            encode_command(RemotingCommand(code, opaque, 0, None, ext)),
            timeout=timeout or self.admin_timeout,
            what="UPDATE_AND_CREATE_TOPIC",
            convert=_expect_success(conn.addr, code),
        )

    def create_topic_list_async(
        self,
        conn: RemotingConnection,
        topics: Sequence[str],
        *,
        queue_nums: int = 8,
        perm: int = PERM_READ | PERM_WRITE,
        timeout: float | None = None,
    ) -> Future[None]:
        """Send one UPDATE_AND_CREATE_TOPIC_LIST (RocketMQ 5.3+) for ``topics``.

        Caution, from AdminBrokerProcessor at 5.3.3: if any topic in the list already exists
        with an identical config, the broker answers SUCCESS at once and creates none of the
        others. Batch only topics that are new (or all already present).
        """
        code = RequestCode.UPDATE_AND_CREATE_TOPIC_LIST
        opaque = conn.next_opaque()
        body = json.dumps(
            {"topicConfigList": [topic_config_json(t, queue_nums, perm) for t in topics]},
            separators=(",", ":"),
        ).encode()
        return conn.submit(
            opaque,
            encode_command(RemotingCommand(code, opaque, 0, None, {}, body)),
            timeout=timeout or self.admin_timeout,
            what=f"UPDATE_AND_CREATE_TOPIC_LIST of {len(topics)} topics",
            convert=_expect_success(conn.addr, code),
        )

    def create_topics(
        self,
        broker_addr: str,
        topics: Sequence[str],
        *,
        queue_nums: int = 8,
        perm: int = PERM_READ | PERM_WRITE,
        batch_size: int = 1,
        window: int = 64,
        timeout: float | None = None,
    ) -> None:
        """Create many topics on one broker, pipelined (``window`` requests in flight).

        ``batch_size`` 1 sends one UPDATE_AND_CREATE_TOPIC per topic; above 1, up to that many
        topics go in each UPDATE_AND_CREATE_TOPIC_LIST (see the caution on
        :meth:`create_topic_list_async`). A broker that does not know the list request (before
        5.3) gets single creates instead. Raises on the first failure; topics of requests
        answered before it exist.
        """
        if batch_size < 1 or window < 1:
            raise ValueError("batch_size and window must be at least 1")
        t = timeout or self.admin_timeout
        conn = self.connection(broker_addr)
        if batch_size == 1 or len(topics) <= 1:
            pipelined(
                topics,
                lambda topic: self.create_topic_async(
                    conn, topic, queue_nums=queue_nums, perm=perm, timeout=t
                ),
                window=window,
                timeout=t,
            )
            return
        batches = [topics[i : i + batch_size] for i in range(0, len(topics), batch_size)]
        # The first batch goes alone: it tells whether the broker knows the request code.
        try:
            wait_result(
                self.create_topic_list_async(
                    conn, batches[0], queue_nums=queue_nums, perm=perm, timeout=t
                ),
                t,
            )
        except RemotingError as exc:
            if exc.code != ResponseCode.REQUEST_CODE_NOT_SUPPORTED:
                raise
            self.create_topics(
                broker_addr, topics, queue_nums=queue_nums, perm=perm, window=window, timeout=t
            )
            return
        pipelined(
            batches[1:],
            lambda batch: self.create_topic_list_async(
                conn, batch, queue_nums=queue_nums, perm=perm, timeout=t
            ),
            window=window,
            timeout=t,
        )

    def delete_topic_in_broker(self, broker_addr: str, topic: str) -> None:
        """Delete the topic's config and queues on one broker (DELETE_TOPIC_IN_BROKER)."""
        resp = self.connection(broker_addr).request(
            RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": topic}, timeout=self.admin_timeout
        )
        _check(broker_addr, RequestCode.DELETE_TOPIC_IN_BROKER, resp)
        self._senders.pop(topic, None)

    def delete_topic(self, topic: str) -> bool:
        """Delete a topic on every broker of its route, then at the name servers.

        The order is mqadmin's: a broker that still had the topic would register it again.
        Returns False if the name server had no route (nothing was deleted).
        """
        try:
            route = self.get_route(topic)
        except TopicNotFound:
            return False
        for addr in route.broker_addrs():
            self.delete_topic_in_broker(addr, topic)
        self.delete_topic_in_namesrv(topic)
        return True

    def get_broker_runtime_info(
        self, broker_addr: str, *, timeout: float | None = None
    ) -> dict[str, str]:
        """The broker's runtime table (GET_BROKER_RUNTIME_INFO), all values strings.

        Includes ``msgPutTotalTodayNow`` / ``msgGetTotalTodayNow`` (messages stored / fetched
        since midnight, reset by a broker restart), ``putTps``, ``getTransferredTps``,
        ``brokerVersion``, ``bootTimestamp`` and the send thread pool queue size.
        """
        resp = self.connection(broker_addr).request(
            RequestCode.GET_BROKER_RUNTIME_INFO, timeout=timeout or self.timeout
        )
        return parse_kv_table(_check(broker_addr, RequestCode.GET_BROKER_RUNTIME_INFO, resp).body)

    # --- sends ---------------------------------------------------------------------------

    def _sender(self, topic: str) -> _TopicSender:
        sender = self._senders.get(topic)
        now = time.monotonic()
        if sender is None or sender.expires <= now:
            queues = self.get_route(topic).write_queues()
            if not queues:
                raise DriverError(
                    f"topic {topic} has no writable queue on a live master broker: check its "
                    "perm and that its brokers are registered with the name server"
                )
            sender = _TopicSender(queues, self.producer_group, now + self.route_ttl)
            self._senders[topic] = sender
        return sender

    def _pick(self, topic: str) -> tuple[_TopicSender, int, RemotingConnection]:
        sender = self._sender(topic)
        index = sender.next_index()
        try:
            conn = self.connection(sender.queues[index].broker_addr)
        except BrokerUnavailable:
            # The broker is gone: ask the name server afresh next time (failover, restart).
            self._senders.pop(topic, None)
            raise
        return sender, index, conn

    def invalidate_route(self, topic: str) -> None:
        """Forget the cached route of ``topic``; the next send looks it up again."""
        self._senders.pop(topic, None)

    def send_async(
        self,
        topic: str,
        body: bytes,
        *,
        properties: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Future[SendResult]:
        """Send one message (SEND_MESSAGE_V2) to the next queue round-robin; return a future.

        The future fails with ``RemotingError`` on a refusal (e.g. SYSTEM_BUSY under flow
        control) or ``BrokerUnavailable`` on timeout or disconnection.
        """
        sender, index, conn = self._pick(topic)
        mq = sender.queues[index]
        opaque = conn.next_opaque()
        props = "" if not properties else ',"i":' + _js(encode_properties(properties))
        frame = _frame(sender.templates[index], opaque, 0, props, body)
        return conn.submit(
            opaque,
            frame,
            timeout=timeout or self.timeout,
            what="SEND_MESSAGE_V2",
            convert=_send_result(conn.addr, mq),
        )

    def send(
        self,
        topic: str,
        body: bytes,
        *,
        properties: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> SendResult:
        """Send one message and wait for the broker's acknowledgement."""
        t = timeout or self.timeout
        return wait_result(self.send_async(topic, body, properties=properties, timeout=t), t)

    def send_oneway(
        self, topic: str, body: bytes, *, properties: Mapping[str, str] | None = None
    ) -> None:
        """Send one message flagged ONEWAY: no acknowledgement, so no delivery guarantee.

        A broker under load drops ONEWAY sends silently (a full send queue, or flow control):
        count what it stored with :meth:`get_broker_runtime_info`.
        """
        sender, index, conn = self._pick(topic)
        props = "" if not properties else ',"i":' + _js(encode_properties(properties))
        conn.write(_frame(sender.templates[index], conn.next_opaque(), FLAG_ONEWAY, props, body))

    def send_oneway_many(
        self,
        topic: str,
        bodies: Iterable[bytes],
        *,
        properties: Mapping[str, str] | None = None,
    ) -> int:
        """Send each body as its own ONEWAY message, coalesced into one write per broker.

        Queues advance round-robin per message, as with :meth:`send_oneway`; this only saves
        system calls. Returns the number of messages written.
        """
        sender = self._sender(topic)
        props = "" if not properties else ',"i":' + _js(encode_properties(properties))
        by_index: dict[int, list[bytes]] = {}
        count = 0
        for body in bodies:
            index = sender.next_index()
            by_index.setdefault(index, []).append(body)
            count += 1
        by_addr: dict[str, list[bytes]] = {}
        for index, group in by_index.items():
            addr = sender.queues[index].broker_addr
            template = sender.templates[index]
            frames = by_addr.setdefault(addr, [])
            for body in group:
                # The opaque of a oneway request is never answered, so it need not be unique.
                frames.append(_frame(template, 0, FLAG_ONEWAY, props, body))
        for addr, frames in by_addr.items():
            try:
                conn = self.connection(addr)
            except BrokerUnavailable:
                self._senders.pop(topic, None)
                raise
            conn.write(b"".join(frames))
        return count


def _route_ext(topic: str) -> dict[str, str]:
    # Standard JSON is what the name server sends a 5.x client anyway; asking for it makes
    # that explicit. The lenient parser still copes if a server ignores the flag.
    return {"topic": topic, "acceptStandardJsonOnly": "true"}


def _expect_success(addr: str, request_code: int) -> Callable[[RemotingCommand], None]:
    def check(resp: RemotingCommand) -> None:
        _check(addr, request_code, resp)

    return check


def _send_result(addr: str, mq: MessageQueue) -> Callable[[RemotingCommand], SendResult]:
    def convert(resp: RemotingCommand) -> SendResult:
        status = _SEND_STATUS.get(resp.code)
        if status is None:
            raise RemotingError(addr, RequestCode.SEND_MESSAGE_V2, resp.code, resp.remark)
        ext = resp.ext_fields
        try:
            queue_id = int(ext["queueId"])
            offset = int(ext["queueOffset"])
        except (KeyError, ValueError) as exc:
            raise ProtocolError(f"{addr} sent a send response without queue data: {ext}") from exc
        offset_id = ext.get("msgId", "")
        queue = (
            mq
            if queue_id == mq.queue_id
            else MessageQueue(mq.topic, mq.broker_name, mq.broker_addr, queue_id)
        )
        return SendResult(
            status=status,
            msg_id=ext.get("transactionId") or offset_id,
            offset_msg_id=offset_id,
            queue=queue,
            queue_offset=offset,
        )

    return convert


def pipelined(
    items: Sequence[T],
    submit: Callable[[T], Future[R]],
    *,
    window: int,
    timeout: float,
) -> list[R]:
    """Submit one request per item, at most ``window`` in flight; results in item order.

    Raises the first failure (in item order); requests still in flight then finish unseen.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    inflight: deque[Future[R]] = deque()
    out: list[R] = []
    for item in items:
        if len(inflight) >= window:
            out.append(wait_result(inflight.popleft(), timeout))
        inflight.append(submit(item))
    while inflight:  # at most `window` passes
        out.append(wait_result(inflight.popleft(), timeout))
    return out
