"""The remoting pull consumer without a JVM: queue allocation, the stored-message decoder, and
the consumer against a small in-process fake of a name server and broker."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from bench.protocol.remoting_codec import (
    FLAG_RESPONSE,
    MESSAGE_MAGIC_V1,
    MESSAGE_MAGIC_V2,
    SYSFLAG_BORNHOST_V6,
    SYSFLAG_STOREHOST_V6,
    FrameDecoder,
    ProtocolError,
    QueueData,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    TopicRoute,
    decode_stored_messages,
    encode_command,
    stored_message_bodies,
)
from bench.protocol.remoting_pull import (
    PULL_COMMIT_OFFSET,
    PullConsumer,
    allocate_averagely,
    readable_queues,
)

# --- allocation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "count", "expected"),
    [
        (8, 1, [[0, 1, 2, 3, 4, 5, 6, 7]]),
        (8, 4, [[0, 1], [2, 3], [4, 5], [6, 7]]),
        (8, 3, [[0, 1, 2], [3, 4, 5], [6, 7]]),
        (10, 4, [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]),
        (2, 4, [[0], [1], [], []]),
        (4, 4, [[0], [1], [2], [3]]),
        (0, 2, [[], []]),
    ],
)
def test_allocation_matches_allocate_message_queue_averagely(
    n: int, count: int, expected: list[list[int]]
) -> None:
    shares = [allocate_averagely(list(range(n)), i, count) for i in range(count)]
    assert shares == expected
    assert sorted(q for s in shares for q in s) == list(range(n))


def test_allocation_rejects_a_bad_index() -> None:
    with pytest.raises(ValueError):
        allocate_averagely([1, 2], 2, 2)
    with pytest.raises(ValueError):
        allocate_averagely([1, 2], 0, 0)


def test_readable_queues_sorted_by_broker_then_id_and_only_readable() -> None:
    route = TopicRoute(
        "t",
        queues=(
            QueueData("broker-b", 2, 2, 6),
            QueueData("broker-a", 3, 8, 6),
            QueueData("broker-c", 4, 4, 2),  # write-only: not pulled
        ),
        brokers=(),
    )
    assert readable_queues(route) == [
        ("broker-a", 0),
        ("broker-a", 1),
        ("broker-a", 2),
        ("broker-b", 0),
        ("broker-b", 1),
    ]


# --- stored messages -------------------------------------------------------------------------


def stored(
    queue_offset: int,
    body: bytes,
    *,
    topic: str = "topic-1",
    props: str = "",
    magic: int = MESSAGE_MAGIC_V1,
    sys_flag: int = 0,
    compress: bool = False,
) -> bytes:
    """One message in the broker's stored layout (MessageDecoder, 5.3.3)."""
    if compress:
        body = zlib.compress(body)
        sys_flag |= 0x1 | (3 << 8)
    born = bytes(16 if sys_flag & SYSFLAG_BORNHOST_V6 else 4) + struct.pack(">i", 5555)
    store = bytes(16 if sys_flag & SYSFLAG_STOREHOST_V6 else 4) + struct.pack(">i", 10911)
    t = topic.encode()
    topic_part = (struct.pack(">H", len(t)) if magic == MESSAGE_MAGIC_V2 else bytes([len(t)])) + t
    p = props.encode()
    rest = (
        struct.pack(">iiiqqiq", 0, 3, 0, queue_offset, 999, sys_flag, 111)
        + born
        + struct.pack(">q", 222)
        + store
        + struct.pack(">iq", 1, 0)
        + struct.pack(">i", len(body))
        + body
        + topic_part
        + struct.pack(">h", len(p))
        + p
    )
    return struct.pack(">ii", 8 + len(rest), magic) + rest


def test_stored_messages_decode_v1_v2_ipv6_and_zlib() -> None:
    data = b"".join(
        [
            stored(7, b"plain", props="KEYS\x01k1\x02TAGS\x01a\x02"),
            stored(8, b"v2" * 10, magic=MESSAGE_MAGIC_V2, topic="x" * 300),
            stored(9, b"six", sys_flag=SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6),
            stored(10, b"z" * 2000, compress=True),
            stored(11, b""),
        ]
    )
    assert stored_message_bodies(data) == [
        (7, b"plain"),
        (8, b"v2" * 10),
        (9, b"six"),
        (10, b"z" * 2000),
        (11, b""),
    ]
    full = decode_stored_messages(data)
    assert [m.queue_offset for m in full] == [7, 8, 9, 10, 11]
    assert full[0].properties == {"KEYS": "k1", "TAGS": "a"}
    assert full[0].topic == "topic-1" and full[1].topic == "x" * 300
    assert full[0].queue_id == 3 and full[0].born_timestamp_ms == 111
    assert full[2].store_timestamp_ms == 222 and full[2].reconsume_times == 1
    assert full[3].body == b"z" * 2000


@pytest.mark.parametrize(
    "data",
    [
        stored(1, b"abc")[:-3],  # truncated
        b"\x00" * 120,  # no magic
        stored(1, b"abc") + b"\x01\x02",  # trailing bytes
        stored(1, b"abc", sys_flag=0x1 | (1 << 8)),  # LZ4: not supported
    ],
)
def test_stored_messages_reject_malformed_bodies(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        stored_message_bodies(data)
    with pytest.raises(ProtocolError):
        decode_stored_messages(data)


# --- the consumer against a fake broker ------------------------------------------------------


class FakeBroker:
    """A name server and one broker ("b") in one socket server, for one topic.

    Answers routes, offsets and pulls like RocketMQ 5.3.3 does; holds an empty pull (long
    polling) until a message arrives or its suspend time passes.
    """

    def __init__(self, topic: str, queues: int, port: int = 0) -> None:
        self.topic = topic
        self.queues = queues
        self.messages: dict[int, list[bytes]] = {q: [] for q in range(queues)}
        self.committed: dict[int, int] = {}
        self.requests: list[RemotingCommand] = []
        self._held: list[tuple[socket.socket, RemotingCommand, float]] = []
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.05)
        self.addr = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._release_held, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def publish(self, queue_id: int, body: bytes) -> None:
        with self._lock:
            self.messages[queue_id].append(body)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self._server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            # shutdown() first: a bare close() does not wake the thread blocked in recv(), so
            # the peer would not see the connection drop.
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = FrameDecoder()
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                for cmd in decoder.feed(data):
                    self.requests.append(cmd)
                    resp = self._answer(conn, cmd)
                    if resp is not None and not cmd.is_oneway:
                        conn.sendall(encode_command(resp))
        except OSError:
            return

    def _reply(
        self, cmd: RemotingCommand, code: int, ext: dict[str, str] | None = None, body: bytes = b""
    ) -> RemotingCommand:
        return RemotingCommand(code, cmd.opaque, FLAG_RESPONSE, None, ext or {}, body)

    def _answer(self, conn: socket.socket, cmd: RemotingCommand) -> RemotingCommand | None:
        ext = cmd.ext_fields
        if cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC:
            route = {
                "queueDatas": [
                    {
                        "brokerName": "b",
                        "readQueueNums": self.queues,
                        "writeQueueNums": self.queues,
                        "perm": 6,
                    }
                ],
                "brokerDatas": [
                    {"brokerName": "b", "cluster": "c", "brokerAddrs": {"0": self.addr}}
                ],
            }
            return self._reply(cmd, 0, body=json.dumps(route).encode())
        qid = int(ext.get("queueId", "0"))
        with self._lock:
            if cmd.code == RequestCode.QUERY_CONSUMER_OFFSET:
                if qid in self.committed:
                    return self._reply(cmd, 0, {"offset": str(self.committed[qid])})
                return self._reply(cmd, ResponseCode.QUERY_NOT_FOUND)
            if cmd.code == RequestCode.GET_MAX_OFFSET:
                return self._reply(cmd, 0, {"offset": str(len(self.messages[qid]))})
            if cmd.code == RequestCode.UPDATE_CONSUMER_OFFSET:
                self.committed[qid] = int(ext["commitOffset"])
                return self._reply(cmd, 0)
            if cmd.code == RequestCode.PULL_MESSAGE:
                if int(ext["sysFlag"]) & PULL_COMMIT_OFFSET:
                    self.committed[qid] = int(ext["commitOffset"])
                resp = self._pull(cmd)
                if resp is None:
                    deadline = time.monotonic() + int(ext["suspendTimeoutMillis"]) / 1000
                    self._held.append((conn, cmd, deadline))
                return resp
        return self._reply(cmd, ResponseCode.REQUEST_CODE_NOT_SUPPORTED)

    def _pull(self, cmd: RemotingCommand, final: bool = False) -> RemotingCommand | None:
        ext = cmd.ext_fields
        qid, offset = int(ext["queueId"]), int(ext["queueOffset"])
        msgs = self.messages[qid][offset : offset + int(ext["maxMsgNums"])]
        if not msgs:
            if not final:
                return None
            return self._reply(cmd, ResponseCode.PULL_NOT_FOUND, {"nextBeginOffset": str(offset)})
        body = b"".join(stored(offset + i, m) for i, m in enumerate(msgs))
        return self._reply(cmd, 0, {"nextBeginOffset": str(offset + len(msgs))}, body)

    def _release_held(self) -> None:
        while not self._stop.wait(0.01):
            now = time.monotonic()
            with self._lock:
                keep = []
                for conn, cmd, deadline in self._held:
                    resp = self._pull(cmd, final=now >= deadline)
                    if resp is None:
                        keep.append((conn, cmd, deadline))
                        continue
                    with contextlib.suppress(OSError):
                        conn.sendall(encode_command(resp))
                self._held = keep


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    b = FakeBroker("t", 4)
    yield b
    b.stop()


def _wait(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_consumer_delivers_in_queue_order_and_commits(broker: FakeBroker) -> None:
    got: list[bytes] = []
    errors: list[BaseException] = []
    broker.publish(0, b"old")  # before the group exists: not delivered
    c = PullConsumer("g", namesrv=broker.addr, on_error=errors.append, suspend_s=0.5)
    try:
        c.subscribe("t", lambda body, _ns: got.append(body))
        assert [off for _b, _q, off in c.assignment("t")] == [1, 0, 0, 0]
        for i in range(200):
            broker.publish(i % 4, b"m%d" % i)
        assert _wait(lambda: len(got) == 200)
    finally:
        c.close()
    for q in range(4):
        mine = [int(b[1:]) for b in got if int(b[1:]) % 4 == q]
        assert mine == sorted(mine) == list(range(q, 200, 4))
    assert broker.committed == {0: 51, 1: 50, 2: 50, 3: 50}
    assert not errors and c.stats().messages == 200


def test_consumer_resumes_from_a_committed_offset(broker: FakeBroker) -> None:
    broker.committed = {0: 1, 1: 0, 2: 0, 3: 0}
    broker.publish(0, b"consumed-already")
    broker.publish(0, b"next")
    got: list[bytes] = []
    with PullConsumer("g", namesrv=broker.addr, suspend_s=0.5) as c:
        c.subscribe("t", lambda body, _ns: got.append(body))
        assert _wait(lambda: got == [b"next"])


def test_close_is_bounded_with_long_polls_held(broker: FakeBroker) -> None:
    c = PullConsumer("g", namesrv=broker.addr, suspend_s=30.0)
    c.subscribe("t", lambda body, _ns: None)
    assert _wait(lambda: sum(r.code == RequestCode.PULL_MESSAGE for r in broker.requests) >= 4)
    started = time.monotonic()
    c.close()
    assert time.monotonic() - started < 2.0


def test_handler_errors_are_counted_not_raised(broker: FakeBroker) -> None:
    seen: list[bytes] = []

    def handler(body: bytes, _ns: int) -> None:
        seen.append(body)
        raise RuntimeError("bad handler")

    errors: list[BaseException] = []
    with PullConsumer("g", namesrv=broker.addr, on_error=errors.append, suspend_s=0.5) as c:
        c.subscribe("t", handler)
        for i in range(10):
            broker.publish(0, b"%d" % i)
        assert _wait(lambda: len(seen) == 10)
        assert c.stats().handler_errors == 10
    assert all(isinstance(e, RuntimeError) for e in errors)


def test_a_broker_that_goes_away_and_returns(broker: FakeBroker) -> None:
    got: list[bytes] = []
    errors: list[BaseException] = []
    c = PullConsumer(
        "g", namesrv=broker.addr, on_error=errors.append, suspend_s=0.5, max_backoff_s=0.2
    )
    try:
        c.subscribe("t", lambda body, _ns: got.append(body))
        broker.publish(1, b"before")
        assert _wait(lambda: got == [b"before"])
        port = int(broker.addr.rsplit(":", 1)[1])
        messages, committed = broker.messages, broker.committed
        broker.stop()
        assert _wait(lambda: c.stats().errors >= 3), "pulls must fail while it is away"
        back = FakeBroker("t", 4, port=port)
        try:
            back.messages, back.committed = messages, committed
            back.publish(1, b"after")
            assert _wait(lambda: got == [b"before", b"after"])
        finally:
            c.close()
            back.stop()
    finally:
        c.close()
    assert errors
