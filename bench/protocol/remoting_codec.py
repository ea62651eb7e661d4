"""Pure codec for the Apache RocketMQ *remoting* protocol (no sockets here).

A remoting frame, as ``RemotingCommand.encode``/``decode`` build and read it in RocketMQ 5.3.3::

    int32 BE  length       = 4 + header length + body length (the length word itself excluded)
    int32 BE  header word  = serialize type << 24 | header length (0 = JSON, 1 = ROCKETMQ binary)
    bytes     header       JSON {code, language, version, opaque, flag, remark, extFields}
    bytes     body         the rest of the frame

``flag`` bit 0 marks a response and bit 1 a oneway request; responses carry the request's
``opaque``, which is how pipelined requests on one connection are matched to their answers.

Besides frames this module parses the bodies the suite needs (topic route, cluster info, broker
runtime info). RocketMQ serialises those with fastjson, which writes integer map keys unquoted
(``{"brokerAddrs":{0:"127.0.0.1:10911"}}``); :func:`loads_lenient` reads both that and standard
JSON.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bench.errors import DriverError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FLAG_ONEWAY",
    "FLAG_RESPONSE",
    "LANGUAGE",
    "PERM_READ",
    "PERM_WRITE",
    "REMOTING_VERSION",
    "SERIALIZE_JSON",
    "SERIALIZE_ROCKETMQ",
    "BrokerData",
    "ClusterInfo",
    "FrameDecoder",
    "MessageQueue",
    "ProtocolError",
    "QueueData",
    "RemotingCommand",
    "RequestCode",
    "ResponseCode",
    "StoredMessage",
    "TopicRoute",
    "decode_payload",
    "decode_properties",
    "decode_stored_messages",
    "encode_command",
    "encode_properties",
    "loads_lenient",
    "parse_cluster_info",
    "parse_kv_table",
    "parse_topic_route",
    "response_code_name",
    "stored_message_bodies",
    "topic_config_json",
]

SERIALIZE_JSON: Final = 0
SERIALIZE_ROCKETMQ: Final = 1
FLAG_RESPONSE: Final = 1
FLAG_ONEWAY: Final = 2
LANGUAGE: Final = "PYTHON"
# MQVersion.Version.V5_3_3.ordinal() in 5.3.3. The name server answers route queries from
# clients at V4_9_4 (401) or later with standard JSON, so announcing 5.3.3 is also what keeps
# route bodies parseable by plain json (cluster info stays non-standard either way).
REMOTING_VERSION: Final = 479
# PermName.PERM_READ / PERM_WRITE; a topic's default perm is read|write = 6.
PERM_READ: Final = 4
PERM_WRITE: Final = 2
# The broker's NettyDecoder rejects frames above this (com.rocketmq.remoting.frameMaxLength).
DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024

_LEN = struct.Struct(">I")
_PREFIX = struct.Struct(">II")


class RequestCode:
    """Request codes used by the suite (RequestCode.java at rocketmq-all-5.3.3)."""

    PULL_MESSAGE: Final = 11
    QUERY_CONSUMER_OFFSET: Final = 14
    UPDATE_CONSUMER_OFFSET: Final = 15
    UPDATE_AND_CREATE_TOPIC: Final = 17
    UPDATE_AND_CREATE_TOPIC_LIST: Final = 18
    GET_BROKER_RUNTIME_INFO: Final = 28
    GET_MAX_OFFSET: Final = 30
    GET_ROUTEINFO_BY_TOPIC: Final = 105
    GET_BROKER_CLUSTER_INFO: Final = 106
    DELETE_TOPIC_IN_BROKER: Final = 215
    DELETE_TOPIC_IN_NAMESRV: Final = 216
    SEND_MESSAGE_V2: Final = 310


class ResponseCode:
    """Response codes the suite reacts to (ResponseCode.java, RemotingSysResponseCode.java)."""

    SUCCESS: Final = 0
    SYSTEM_ERROR: Final = 1
    SYSTEM_BUSY: Final = 2
    REQUEST_CODE_NOT_SUPPORTED: Final = 3
    FLUSH_DISK_TIMEOUT: Final = 10
    SLAVE_NOT_AVAILABLE: Final = 11
    FLUSH_SLAVE_TIMEOUT: Final = 12
    MESSAGE_ILLEGAL: Final = 13
    SERVICE_NOT_AVAILABLE: Final = 14
    NO_PERMISSION: Final = 16
    TOPIC_NOT_EXIST: Final = 17
    PULL_NOT_FOUND: Final = 19
    PULL_RETRY_IMMEDIATELY: Final = 20
    PULL_OFFSET_MOVED: Final = 21
    QUERY_NOT_FOUND: Final = 22
    SUBSCRIPTION_PARSE_FAILED: Final = 23
    SUBSCRIPTION_NOT_EXIST: Final = 24
    SUBSCRIPTION_GROUP_NOT_EXIST: Final = 26
    INVALID_PARAMETER: Final = 29
    FLOW_CONTROL: Final = 215


_RESPONSE_NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in vars(ResponseCode).items()
    if not name.startswith("_") and isinstance(value, int)
}


def response_code_name(code: int) -> str:
    """Return the RocketMQ name of a response code, or ``"CODE_<n>"`` for one not listed."""
    return _RESPONSE_NAMES.get(code, f"CODE_{code}")


class ProtocolError(DriverError):
    """A peer sent bytes that are not a valid remoting frame or body."""


@dataclass(slots=True)
class RemotingCommand:
    """One decoded (or to-be-encoded) remoting command: a request or a response."""

    code: int
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    version: int = REMOTING_VERSION
    language: str = LANGUAGE

    @property
    def is_response(self) -> bool:
        """True if the response bit of ``flag`` is set."""
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        """True if the oneway bit of ``flag`` is set (the peer must not answer)."""
        return bool(self.flag & FLAG_ONEWAY)


def encode_command(cmd: RemotingCommand) -> bytes:
    """Encode ``cmd`` as one complete frame (length prefix included), JSON header."""
    header: dict[str, Any] = {
        "code": cmd.code,
        "language": cmd.language,
        "version": cmd.version,
        "opaque": cmd.opaque,
        "flag": cmd.flag,
    }
    if cmd.remark is not None:
        header["remark"] = cmd.remark
    if cmd.ext_fields:
        header["extFields"] = cmd.ext_fields
    raw = json.dumps(header, separators=(",", ":")).encode()
    if len(raw) > 0xFFFFFF:
        raise ProtocolError(f"remoting header of {len(raw)} bytes exceeds the 24-bit length field")
    return _PREFIX.pack(4 + len(raw) + len(cmd.body), len(raw)) + raw + cmd.body


def decode_payload(payload: bytes | memoryview) -> RemotingCommand:
    """Decode one frame without its 4-byte length prefix (header word, header, body)."""
    if len(payload) < 4:
        raise ProtocolError(f"remoting frame of {len(payload)} bytes is shorter than its header")
    (word,) = _LEN.unpack_from(payload, 0)
    serialize_type = word >> 24
    header_len = word & 0xFFFFFF
    if header_len > len(payload) - 4:
        raise ProtocolError(
            f"remoting header length {header_len} exceeds the frame ({len(payload)} bytes)"
        )
    header = bytes(payload[4 : 4 + header_len])
    body = bytes(payload[4 + header_len :])
    if serialize_type == SERIALIZE_JSON:
        cmd = _decode_json_header(header)
    elif serialize_type == SERIALIZE_ROCKETMQ:
        cmd = _decode_binary_header(header)
    else:
        raise ProtocolError(f"unknown remoting serialize type {serialize_type}")
    cmd.body = body
    return cmd


# One decoder for every header: json.loads would re-check its arguments and sniff the byte
# encoding on each call, a noticeable share of the per-response cost on the send path.
_JSON_DECODER: Final = json.JSONDecoder()


def _decode_json_header(raw: bytes) -> RemotingCommand:
    try:
        obj = _JSON_DECODER.decode(raw.decode())
        code = obj["code"]
        opaque = int(obj.get("opaque", 0))
        flag = int(obj.get("flag", 0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"malformed remoting header ({exc!r}): {raw[:200]!r}") from exc
    if type(code) is not int:
        raise ProtocolError(f"remoting header lacks an integer code: {raw[:200]!r}")
    ext = obj.get("extFields") or {}
    if not isinstance(ext, dict):
        raise ProtocolError(f"remoting extFields is not an object: {raw[:200]!r}")
    # Java writes HashMap<String, String>; a value of another JSON type must still reach the
    # caller as a str.
    if not all(type(v) is str for v in ext.values()):
        ext = {k: v if isinstance(v, str) else json.dumps(v) for k, v in ext.items()}
    return RemotingCommand(
        code,
        opaque,
        flag,
        obj.get("remark"),
        ext,
        b"",
        obj.get("version", 0),
        obj.get("language", ""),
    )


_BIN_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag
# LanguageCode by ordinal.
_LANGUAGES: Final = (
    "JAVA",
    "CPP",
    "DOTNET",
    "PYTHON",
    "DELPHI",
    "ERLANG",
    "RUBY",
    "OTHER",
    "HTTP",
    "GO",
    "PHP",
    "OMS",
    "RUST",
    "NODE_JS",
)


def _decode_binary_header(raw: bytes) -> RemotingCommand:
    # RocketMQSerializable layout. Our requests are JSON, and a broker answers in its own
    # serialize type (JSON unless started with rocketmq.serialize.type=ROCKETMQ), so this only
    # keeps the client working against such a broker.
    try:
        code, lang, version, opaque, flag = _BIN_FIXED.unpack_from(raw, 0)
        pos = _BIN_FIXED.size
        (remark_len,) = _LEN.unpack_from(raw, pos)
        pos += 4
        remark = raw[pos : pos + remark_len].decode() if remark_len else None
        pos += remark_len
        (ext_len,) = _LEN.unpack_from(raw, pos)
        pos += 4
        end = pos + ext_len
        if end > len(raw):
            raise ProtocolError("binary remoting extFields overrun the header")
        ext: dict[str, str] = {}
        for _ in range(ext_len):  # each pair takes >= 6 bytes, so this bound is never reached
            if pos >= end:
                break
            (klen,) = struct.unpack_from(">H", raw, pos)
            key = raw[pos + 2 : pos + 2 + klen].decode()
            pos += 2 + klen
            (vlen,) = _LEN.unpack_from(raw, pos)
            ext[key] = raw[pos + 4 : pos + 4 + vlen].decode()
            pos += 4 + vlen
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed binary remoting header: {exc}") from exc
    language = _LANGUAGES[lang] if 0 <= lang < len(_LANGUAGES) else str(lang)
    return RemotingCommand(code, opaque, flag, remark, ext, b"", version, language)


class FrameDecoder:
    """Incremental frame splitter: feed it received bytes, get back whole commands.

    Keeps at most one partial frame buffered; a length above ``max_frame_bytes`` is treated as
    a corrupt stream (``ProtocolError``) rather than waited for.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[RemotingCommand]:
        """Append ``data`` and return every command now complete, in arrival order."""
        buf = self._buf
        buf += data
        out: list[RemotingCommand] = []
        pos = 0
        size = len(buf)
        view = memoryview(buf)
        try:
            # Each pass consumes one frame of at least 8 bytes, so the loop is bounded by size.
            while size - pos >= 4:
                (length,) = _LEN.unpack_from(buf, pos)
                if length < 4 or length > self._max:
                    raise ProtocolError(
                        f"remoting frame length {length} outside 4..{self._max}: corrupt stream"
                    )
                if size - pos - 4 < length:
                    break
                out.append(decode_payload(view[pos + 4 : pos + 4 + length]))
                pos += 4 + length
        finally:
            view.release()
        if pos:
            del buf[:pos]
        return out


# --- lenient JSON ----------------------------------------------------------------------------

# A JSON string literal, or an unquoted token in key position ("{0:" or ", 12:"). Strings are
# matched first and kept as they are, so text inside them is never rewritten.
_KEY_FIX = re.compile(r'("(?:[^"\\]|\\.)*")|([{,]\s*)([^\s"{}\[\],:]+)(\s*:)', re.DOTALL)


def _quote_key(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return m.group(1)
    return f'{m.group(2)}"{m.group(3)}"{m.group(4)}'


def loads_lenient(data: bytes | str) -> Any:
    """Parse JSON as fastjson writes it: also accepts unquoted object keys such as ``{0:"a"}``.

    Standard JSON takes the fast path; only text that fails it is rewritten (bare keys quoted,
    so they come back as strings like ``"0"``) and parsed again.
    """
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(_KEY_FIX.sub(_quote_key, text))
    except ValueError as exc:
        raise ProtocolError(f"body is not JSON even with lenient keys: {exc}") from exc


# --- bodies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerData:
    """One broker group (``BrokerData``): its name, cluster and addresses by broker id."""

    broker_name: str
    cluster: str
    addrs: Mapping[int, str]

    @property
    def master_addr(self) -> str | None:
        """Address of broker id 0 (the master), or None if the master is not registered."""
        return self.addrs.get(0)


@dataclass(frozen=True, slots=True)
class QueueData:
    """Queues a topic has on one broker group (``QueueData``)."""

    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    @property
    def writable(self) -> bool:
        """True if the broker accepts sends to this topic (PERM_WRITE set)."""
        return bool(self.perm & PERM_WRITE)

    @property
    def readable(self) -> bool:
        """True if consumers may pull this topic's queues there (PERM_READ set)."""
        return bool(self.perm & PERM_READ)


@dataclass(frozen=True, slots=True)
class MessageQueue:
    """A writable queue: where one send goes."""

    topic: str
    broker_name: str
    broker_addr: str
    queue_id: int


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """A topic's route from the name server: queue data per broker group and the brokers."""

    topic: str
    queues: tuple[QueueData, ...]
    brokers: tuple[BrokerData, ...]

    def broker_addrs(self) -> list[str]:
        """Master addresses of the broker groups that hold this topic, sorted."""
        return sorted({b.master_addr for b in self.brokers if b.master_addr})

    def write_queues(self) -> list[MessageQueue]:
        """Every queue a producer may send to, in the Java client's order (broker, queue id).

        Only writable queue data on broker groups whose master is registered count; a broker
        group without a master (its master died) takes no sends.
        """
        masters = {b.broker_name: b.master_addr for b in self.brokers if b.master_addr}
        out: list[MessageQueue] = []
        for qd in sorted(self.queues, key=lambda q: q.broker_name):
            addr = masters.get(qd.broker_name)
            if addr is None or not qd.writable:
                continue
            out.extend(
                MessageQueue(self.topic, qd.broker_name, addr, i)
                for i in range(qd.write_queue_nums)
            )
        return out


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """Brokers the name server knows (``ClusterInfo``): groups by name, group names by cluster."""

    brokers: Mapping[str, BrokerData]
    clusters: Mapping[str, tuple[str, ...]]

    def master_addrs(self, cluster: str | None = None) -> list[str]:
        """Master addresses of one cluster (or of all clusters), sorted."""
        names = (
            self.brokers.keys()
            if cluster is None
            else [n for n in self.clusters.get(cluster, ()) if n in self.brokers]
        )
        return sorted({a for n in names if (a := self.brokers[n].master_addr)})


def _int_keys(raw: Any, what: str) -> dict[int, str]:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{what} is not an object")
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except ValueError as exc:
        raise ProtocolError(f"{what} has a non-integer broker id: {exc}") from exc


def _broker_data(raw: Any) -> BrokerData:
    if not isinstance(raw, dict) or "brokerName" not in raw:
        raise ProtocolError(f"broker data without brokerName: {str(raw)[:200]}")
    return BrokerData(
        broker_name=str(raw["brokerName"]),
        cluster=str(raw.get("cluster", "")),
        addrs=_int_keys(raw.get("brokerAddrs") or {}, "brokerAddrs"),
    )


def parse_topic_route(topic: str, body: bytes) -> TopicRoute:
    """Parse a GET_ROUTEINFO_BY_TOPIC response body (``TopicRouteData``)."""
    obj = loads_lenient(body)
    if not isinstance(obj, dict):
        raise ProtocolError(f"route body for {topic} is not an object")
    try:
        queues = tuple(
            QueueData(
                broker_name=str(q["brokerName"]),
                read_queue_nums=int(q.get("readQueueNums", 0)),
                write_queue_nums=int(q.get("writeQueueNums", 0)),
                perm=int(q.get("perm", 0)),
                topic_sys_flag=int(q.get("topicSysFlag", 0)),
            )
            for q in obj.get("queueDatas") or ()
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed queueDatas in route for {topic}: {exc}") from exc
    brokers = tuple(_broker_data(b) for b in obj.get("brokerDatas") or ())
    return TopicRoute(topic=topic, queues=queues, brokers=brokers)


def parse_cluster_info(body: bytes) -> ClusterInfo:
    """Parse a GET_BROKER_CLUSTER_INFO response body (``ClusterInfo``)."""
    obj = loads_lenient(body)
    if not isinstance(obj, dict):
        raise ProtocolError("cluster info body is not an object")
    table = obj.get("brokerAddrTable") or {}
    clusters = obj.get("clusterAddrTable") or {}
    if not isinstance(table, dict) or not isinstance(clusters, dict):
        raise ProtocolError("cluster info tables are not objects")
    return ClusterInfo(
        brokers={str(name): _broker_data(raw) for name, raw in table.items()},
        clusters={str(c): tuple(sorted(str(n) for n in names)) for c, names in clusters.items()},
    )


def parse_kv_table(body: bytes) -> dict[str, str]:
    """Parse a ``KVTable`` body (``{"table": {...}}``, e.g. broker runtime info)."""
    obj = loads_lenient(body)
    table = obj.get("table") if isinstance(obj, dict) else None
    if not isinstance(table, dict):
        raise ProtocolError("KVTable body has no table object")
    return {str(k): str(v) for k, v in table.items()}


def topic_config_json(topic: str, queue_nums: int, perm: int) -> dict[str, Any]:
    """A ``TopicConfig`` as UPDATE_AND_CREATE_TOPIC_LIST expects it in its body list.

    The fields mirror what UPDATE_AND_CREATE_TOPIC's header makes on the broker, so a topic
    made either way compares equal in the broker's idempotency check.
    """
    return {
        "topicName": topic,
        "readQueueNums": queue_nums,
        "writeQueueNums": queue_nums,
        "perm": perm,
        "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": 0,
        "order": False,
        "attributes": {},
    }


# MessageDecoder.NAME_VALUE_SEPARATOR / PROPERTY_SEPARATOR.
_NAME_VALUE_SEP: Final = "\x01"
_PROPERTY_SEP: Final = "\x02"


def encode_properties(props: Mapping[str, str]) -> str:
    """Encode message properties as ``MessageDecoder.messageProperties2String`` does."""
    parts = []
    for k, v in props.items():
        if any(sep in s for s in (k, v) for sep in (_NAME_VALUE_SEP, _PROPERTY_SEP)):
            raise ValueError(f"message property {k!r} contains a RocketMQ separator byte")
        parts.append(f"{k}{_NAME_VALUE_SEP}{v}{_PROPERTY_SEP}")
    return "".join(parts)


# --- stored messages (a PULL_MESSAGE body) ---------------------------------------------------
#
# A pull answer's body is the broker's stored messages end to end, each as MessageDecoder reads
# it in 5.3.3 (all integers big-endian):
#
#     int32 totalSize   int32 magicCode   int32 bodyCRC   int32 queueId   int32 flag
#     int64 queueOffset int64 physicalOffset              int32 sysFlag   int64 bornTimestamp
#     bornHost: 4-byte IPv4 (16-byte IPv6 if sysFlag BORNHOST_V6) + int32 port
#     int64 storeTimestamp
#     storeHost: 4-byte IPv4 (16-byte IPv6 if sysFlag STOREHOST_V6) + int32 port
#     int32 reconsumeTimes  int64 preparedTransactionOffset
#     int32 bodyLength + body
#     topic: 1-byte length (2-byte with the V2 magic) + UTF-8
#     int16 propertiesLength + properties (name \x01 value \x02 ...)

MESSAGE_MAGIC_V1: Final = -626843481
MESSAGE_MAGIC_V2: Final = -626843477
# MessageSysFlag bits.
SYSFLAG_COMPRESSED: Final = 0x1
SYSFLAG_BORNHOST_V6: Final = 0x1 << 4
SYSFLAG_STOREHOST_V6: Final = 0x1 << 5
_COMPRESSION_TYPE_MASK: Final = 0x7 << 8
# CompressionType by (sysFlag & mask) >> 8: 0 (before compression types existed) and 3 are zlib.
_ZLIB_TYPES: Final = (0, 3)
_COMPRESSION_NAMES: Final = {1: "LZ4", 2: "ZSTD"}

# totalSize, magic, queueOffset, sysFlag (skipping bodyCRC, queueId, flag, physicalOffset).
_STORED_HEAD = struct.Struct(">ii12xq8xi")
_STORED_FULL = struct.Struct(">iiiiiqqiq")  # ... through bornTimestamp
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_Q64 = struct.Struct(">q")
# Offset of the body length word with IPv4 hosts: 48 (through bornTimestamp) + 8 (born host)
# + 8 (store timestamp) + 8 (store host) + 4 (reconsume times) + 8 (prepared offset).
_BODY_LEN_V4: Final = 84
_STORED_MIN: Final = _BODY_LEN_V4 + 4 + 1 + 2


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as the broker stored it (the fields a pull consumer may want)."""

    queue_id: int
    queue_offset: int
    sys_flag: int
    born_timestamp_ms: int
    store_timestamp_ms: int
    reconsume_times: int
    topic: str
    body: bytes
    """Decompressed if the broker stored it compressed."""
    properties: dict[str, str]


def _inflate(body: bytes, sys_flag: int) -> bytes:
    kind = (sys_flag & _COMPRESSION_TYPE_MASK) >> 8
    if kind not in _ZLIB_TYPES:
        name = _COMPRESSION_NAMES.get(kind, f"type {kind}")
        raise ProtocolError(f"stored message is {name}-compressed; only zlib is supported")
    try:
        return zlib.decompress(body)
    except zlib.error as exc:
        raise ProtocolError(f"stored message body does not inflate: {exc}") from exc


def _body_len_pos(sys_flag: int) -> int:
    pos = _BODY_LEN_V4
    if sys_flag & SYSFLAG_BORNHOST_V6:
        pos += 12
    if sys_flag & SYSFLAG_STOREHOST_V6:
        pos += 12
    return pos


def _check_stored(data: bytes | memoryview, pos: int, size: int, magic: int, end: int) -> None:
    if magic != MESSAGE_MAGIC_V1 and magic != MESSAGE_MAGIC_V2:
        raise ProtocolError(f"stored message at byte {pos} has magic {magic:#x}, not a message")
    if size < _STORED_MIN or pos + size > end:
        raise ProtocolError(
            f"stored message at byte {pos} claims {size} bytes; {end - pos} remain in the body"
        )


def stored_message_bodies(data: bytes) -> list[tuple[int, bytes]]:
    """The (queue offset, body) of each stored message in a pull answer's body, in order.

    The fast path of a pull consumer: only the fields it needs are read, with one
    ``unpack_from`` for the fixed head. Compressed bodies (zlib) are inflated. Raises
    :class:`ProtocolError` on bytes that are not stored messages.
    """
    out: list[tuple[int, bytes]] = []
    end = len(data)
    pos = 0
    head = _STORED_HEAD.unpack_from
    i32 = _I32.unpack_from
    # Each pass consumes one message of at least _STORED_MIN bytes: bounded by the body size.
    while pos < end:
        if end - pos < _STORED_MIN:
            raise ProtocolError(f"{end - pos} trailing bytes after the last stored message")
        size, magic, queue_offset, sys_flag = head(data, pos)
        if (
            size < _STORED_MIN
            or pos + size > end
            or (magic != MESSAGE_MAGIC_V1 and magic != MESSAGE_MAGIC_V2)
        ):
            _check_stored(data, pos, size, magic, end)
        blen_at = pos + (
            _BODY_LEN_V4
            if not sys_flag & (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)
            else _body_len_pos(sys_flag)
        )
        (blen,) = i32(data, blen_at)
        start = blen_at + 4
        if blen < 0 or start + blen > pos + size:
            raise ProtocolError(f"stored message at byte {pos} has a body of {blen} bytes")
        body = data[start : start + blen]
        if sys_flag & SYSFLAG_COMPRESSED:
            body = _inflate(body, sys_flag)
        out.append((queue_offset, body))
        pos += size
    return out


def decode_stored_messages(data: bytes) -> list[StoredMessage]:
    """Every field a consumer may want of each stored message in a pull answer's body.

    Slower than :func:`stored_message_bodies` (topic and properties are decoded too); for
    tests and diagnostics.
    """
    out: list[StoredMessage] = []
    end = len(data)
    pos = 0
    try:
        while pos < end:  # each pass consumes one message of at least _STORED_MIN bytes
            if end - pos < _STORED_MIN:
                raise ProtocolError(f"{end - pos} trailing bytes after the last stored message")
            (size, magic, _crc, queue_id, _flag, queue_offset, _phys, sys_flag, born) = (
                _STORED_FULL.unpack_from(data, pos)
            )
            _check_stored(data, pos, size, magic, end)
            p = pos + _STORED_FULL.size
            p += (16 if sys_flag & SYSFLAG_BORNHOST_V6 else 4) + 4
            (stored_at,) = _Q64.unpack_from(data, p)
            p += 8 + (16 if sys_flag & SYSFLAG_STOREHOST_V6 else 4) + 4
            (reconsume,) = _I32.unpack_from(data, p)
            p += 4 + 8
            (blen,) = _I32.unpack_from(data, p)
            p += 4
            if blen < 0 or p + blen > pos + size:
                raise ProtocolError(f"stored message at byte {pos} has a body of {blen} bytes")
            body = bytes(data[p : p + blen])
            p += blen
            if sys_flag & SYSFLAG_COMPRESSED:
                body = _inflate(body, sys_flag)
            if magic == MESSAGE_MAGIC_V2:
                (tlen,) = _U16.unpack_from(data, p)
                p += 2
            else:
                tlen = data[p]
                p += 1
            topic = bytes(data[p : p + tlen]).decode()
            p += tlen
            (plen,) = _I16.unpack_from(data, p)
            p += 2
            props_text = bytes(data[p : p + max(plen, 0)]).decode()
            if p + max(plen, 0) > pos + size:
                raise ProtocolError(f"stored message at byte {pos} overruns its size")
            out.append(
                StoredMessage(
                    queue_id=queue_id,
                    queue_offset=queue_offset,
                    sys_flag=sys_flag,
                    born_timestamp_ms=born,
                    store_timestamp_ms=stored_at,
                    reconsume_times=reconsume,
                    topic=topic,
                    body=body,
                    properties=decode_properties(props_text),
                )
            )
            pos += size
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed stored message at byte {pos}: {exc}") from exc
    return out


def decode_properties(text: str) -> dict[str, str]:
    """Decode message properties as ``MessageDecoder.string2messageProperties`` does."""
    out: dict[str, str] = {}
    for item in text.split(_PROPERTY_SEP):
        name, sep, value = item.partition(_NAME_VALUE_SEP)
        if sep and name:
            out[name] = value
    return out
