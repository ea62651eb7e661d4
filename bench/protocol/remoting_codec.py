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
    "TopicRoute",
    "decode_payload",
    "encode_command",
    "encode_properties",
    "loads_lenient",
    "parse_cluster_info",
    "parse_kv_table",
    "parse_topic_route",
    "response_code_name",
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

    UPDATE_AND_CREATE_TOPIC: Final = 17
    UPDATE_AND_CREATE_TOPIC_LIST: Final = 18
    GET_BROKER_RUNTIME_INFO: Final = 28
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
