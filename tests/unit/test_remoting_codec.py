"""Unit tests of the RocketMQ remoting codec, the lenient JSON reader and opaque matching."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from bench.errors import BrokerUnavailable, DriverError
from bench.protocol.remoting import RemotingConnection, _frame, _TopicSender
from bench.protocol.remoting_codec import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    FrameDecoder,
    MessageQueue,
    ProtocolError,
    RemotingCommand,
    decode_payload,
    encode_command,
    encode_properties,
    loads_lenient,
    parse_cluster_info,
    parse_kv_table,
    parse_topic_route,
    response_code_name,
)

# A cluster info body exactly as a 5.3.3 name server sent it (captured from a live one).
CLUSTER_BODY = (
    b'{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:30911"},"brokerName":'
    b'"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},'
    b'"clusterAddrTable":{"DefaultCluster":["broker-a"]}}'
)


def _binary_header(code: int, opaque: int, flag: int, remark: str, ext: dict[str, str]) -> bytes:
    parts = [struct.pack(">hbhii", code, 0, 479, opaque, flag)]
    rb = remark.encode()
    parts.append(struct.pack(">I", len(rb)) + rb)
    ext_raw = b"".join(
        struct.pack(">H", len(k.encode()))
        + k.encode()
        + struct.pack(">I", len(v.encode()))
        + v.encode()
        for k, v in ext.items()
    )
    parts.append(struct.pack(">I", len(ext_raw)) + ext_raw)
    return b"".join(parts)


# --- frames ----------------------------------------------------------------------------------


def test_encode_lays_out_length_header_word_header_and_body() -> None:
    cmd = RemotingCommand(code=17, opaque=42, ext_fields={"topic": "t1"}, body=b"xyz")
    frame = encode_command(cmd)
    total, word = struct.unpack_from(">II", frame)
    header_len = word & 0xFFFFFF
    assert total == len(frame) - 4
    assert word >> 24 == 0  # JSON
    header = json.loads(frame[8 : 8 + header_len])
    assert header == {
        "code": 17,
        "language": "PYTHON",
        "version": 479,
        "opaque": 42,
        "flag": 0,
        "extFields": {"topic": "t1"},
    }
    assert frame[8 + header_len :] == b"xyz"


def test_round_trip_keeps_every_field() -> None:
    cmd = RemotingCommand(
        code=310, opaque=7, flag=FLAG_ONEWAY, remark="r\u00e9", ext_fields={"a": "b"}, body=b"\0\1"
    )
    back = decode_payload(encode_command(cmd)[4:])
    assert back == cmd
    assert back.is_oneway and not back.is_response


def test_response_flag_bits() -> None:
    assert RemotingCommand(code=0, flag=FLAG_RESPONSE).is_response
    assert not RemotingCommand(code=0, flag=FLAG_ONEWAY).is_response
    assert RemotingCommand(code=0, flag=FLAG_RESPONSE | FLAG_ONEWAY).is_oneway


def test_decoder_reassembles_frames_split_at_every_byte() -> None:
    frames = [
        encode_command(RemotingCommand(code=0, opaque=i, flag=1, body=bytes([i]) * i))
        for i in range(5)
    ]
    stream = b"".join(frames)
    decoder = FrameDecoder()
    got: list[RemotingCommand] = []
    for i in range(len(stream)):
        got.extend(decoder.feed(stream[i : i + 1]))
    assert [c.opaque for c in got] == [0, 1, 2, 3, 4]
    assert [c.body for c in got] == [bytes([i]) * i for i in range(5)]
    assert decoder.buffered == 0


def test_decoder_returns_all_frames_of_one_chunk_and_keeps_the_partial_rest() -> None:
    a = encode_command(RemotingCommand(code=0, opaque=1, flag=1))
    b = encode_command(RemotingCommand(code=0, opaque=2, flag=1, body=b"hello"))
    decoder = FrameDecoder()
    got = decoder.feed(a + b + b[:6])
    assert [c.opaque for c in got] == [1, 2]
    assert decoder.buffered == 6
    assert [c.opaque for c in decoder.feed(b[6:])] == [2]


def test_decoder_rejects_a_length_beyond_the_limit() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(ProtocolError, match="corrupt stream"):
        decoder.feed(struct.pack(">I", 1025) + b"\0" * 8)


def test_decode_rejects_a_header_longer_than_the_frame() -> None:
    with pytest.raises(ProtocolError, match="header length"):
        decode_payload(struct.pack(">I", 100) + b"{}")


def test_decode_rejects_unknown_serialize_type_and_bad_json() -> None:
    with pytest.raises(ProtocolError, match="serialize type"):
        decode_payload(struct.pack(">I", (5 << 24) | 2) + b"{}")
    for bad in (b"{x}", b"{}", b"[]", b'{"code":0,"flag":"x"}', b"\xff"):
        with pytest.raises(ProtocolError, match="malformed remoting header"):
            decode_payload(struct.pack(">I", len(bad)) + bad)
    with pytest.raises(ProtocolError, match="integer code"):
        decode_payload(struct.pack(">I", 12) + b'{"code":"0"}')


def test_non_string_ext_values_arrive_as_strings() -> None:
    raw = b'{"code":0,"extFields":{"a":"x","b":1,"c":true}}'
    cmd = decode_payload(struct.pack(">I", len(raw)) + raw)
    assert cmd.ext_fields == {"a": "x", "b": "1", "c": "true"}


def test_decode_reads_the_rocketmq_binary_header() -> None:
    header = _binary_header(17, 9, 1, "no route", {"queueId": "3", "msgId": "AB"})
    payload = struct.pack(">I", (1 << 24) | len(header)) + header + b"body"
    cmd = decode_payload(payload)
    assert (cmd.code, cmd.opaque, cmd.flag, cmd.remark) == (17, 9, 1, "no route")
    assert cmd.ext_fields == {"queueId": "3", "msgId": "AB"}
    assert cmd.body == b"body"
    assert cmd.language == "JAVA"


def test_header_without_ext_fields_or_remark() -> None:
    raw = b'{"code":0,"flag":1,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON"}'
    cmd = decode_payload(struct.pack(">I", len(raw)) + raw)
    assert cmd.ext_fields == {} and cmd.remark is None and cmd.body == b""


def test_send_header_template_is_valid_json_with_the_v2_fields() -> None:
    mq = MessageQueue('to"p%ic', "broker-a", "127.0.0.1:1", 3)
    sender = _TopicSender([mq], "grp", expires=0.0)
    props = ',"i":' + json.dumps(encode_properties({"KEYS": "k"}))
    frame = _frame(sender.templates[0], 77, FLAG_ONEWAY, props, b"payload")
    cmd = decode_payload(frame[4:])
    assert (cmd.code, cmd.opaque, cmd.flag, cmd.body) == (310, 77, FLAG_ONEWAY, b"payload")
    ext = cmd.ext_fields
    assert ext["a"] == "grp" and ext["b"] == 'to"p%ic' and ext["e"] == "3"
    assert ext["n"] == "broker-a" and ext["i"] == "KEYS\x01k\x02"
    assert abs(int(ext["g"]) - time.time() * 1000) < 60_000
    assert set(ext) == set("abcdefghijkmn")


# --- lenient JSON and bodies -----------------------------------------------------------------


def test_lenient_json_quotes_bare_integer_keys() -> None:
    obj = loads_lenient(CLUSTER_BODY)
    assert obj["brokerAddrTable"]["broker-a"]["brokerAddrs"] == {"0": "127.0.0.1:30911"}


def test_lenient_json_leaves_string_contents_alone() -> None:
    text = '{"remark":"a,1:b {2:c} \\"x,3:y\\"","addrs":{1:"h:1",-2:"h:2", 10 :"h:10"}}'
    obj = loads_lenient(text)
    assert obj["remark"] == 'a,1:b {2:c} "x,3:y"'
    assert obj["addrs"] == {"1": "h:1", "-2": "h:2", "10": "h:10"}


def test_lenient_json_passes_standard_json_and_rejects_garbage() -> None:
    assert loads_lenient(b'{"a":[1,2,{"b":null}]}') == {"a": [1, 2, {"b": None}]}
    with pytest.raises(ProtocolError):
        loads_lenient("{0:")


def test_parse_cluster_info() -> None:
    info = parse_cluster_info(CLUSTER_BODY)
    assert info.brokers["broker-a"].addrs == {0: "127.0.0.1:30911"}
    assert info.brokers["broker-a"].master_addr == "127.0.0.1:30911"
    assert info.clusters == {"DefaultCluster": ("broker-a",)}
    assert info.master_addrs("DefaultCluster") == ["127.0.0.1:30911"]
    assert info.master_addrs("nope") == []


ROUTE_BODY = (
    b'{"brokerDatas":[{"brokerAddrs":{0:"h:2",1:"h:3"},"brokerName":"b","cluster":"C"},'
    b'{"brokerAddrs":{0:"h:1"},"brokerName":"a","cluster":"C"},'
    b'{"brokerAddrs":{1:"h:9"},"brokerName":"c","cluster":"C"}],'
    b'"filterServerTable":{},"queueDatas":['
    b'{"brokerName":"b","perm":6,"readQueueNums":2,"topicSysFlag":0,"writeQueueNums":2},'
    b'{"brokerName":"a","perm":6,"readQueueNums":1,"topicSysFlag":0,"writeQueueNums":1},'
    b'{"brokerName":"c","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}'
)


def test_parse_topic_route_and_write_queues() -> None:
    route = parse_topic_route("t", ROUTE_BODY)
    assert route.broker_addrs() == ["h:1", "h:2"]  # c has no master (id 0)
    queues = [(q.broker_name, q.broker_addr, q.queue_id) for q in route.write_queues()]
    # Broker c's queues are skipped: no master takes sends.
    assert queues == [("a", "h:1", 0), ("b", "h:2", 0), ("b", "h:2", 1)]


def test_write_queues_skip_read_only_perm() -> None:
    body = ROUTE_BODY.replace(b'"brokerName":"a","perm":6', b'"brokerName":"a","perm":4')
    route = parse_topic_route("t", body)
    assert [q.broker_name for q in route.write_queues()] == ["b", "b"]


def test_parse_route_rejects_malformed_queue_data() -> None:
    with pytest.raises(ProtocolError, match="queueDatas"):
        parse_topic_route("t", b'{"queueDatas":[{"perm":6}],"brokerDatas":[]}')


def test_parse_kv_table() -> None:
    table = parse_kv_table(b'{"table":{"msgPutTotalTodayNow":"12","putTps":"1.0 2.0 "}}')
    assert table == {"msgPutTotalTodayNow": "12", "putTps": "1.0 2.0 "}
    with pytest.raises(ProtocolError):
        parse_kv_table(b"[]")


def test_encode_properties_uses_rocketmq_separators() -> None:
    assert encode_properties({"KEYS": "k1", "TAGS": "t"}) == "KEYS\x01k1\x02TAGS\x01t\x02"
    with pytest.raises(ValueError, match="separator"):
        encode_properties({"a": "x\x02y"})


def test_response_code_names() -> None:
    assert response_code_name(17) == "TOPIC_NOT_EXIST"
    assert response_code_name(2) == "SYSTEM_BUSY"
    assert response_code_name(9999) == "CODE_9999"
    assert issubclass(ProtocolError, DriverError)


# --- opaque matching over a real socket (a scripted peer, not a broker) -----------------------


class _ScriptedPeer:
    """Accepts one connection, reads N requests, answers them in reverse order."""

    def __init__(self, expect: int) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.expect = expect
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.server.settimeout(5)
        conn, _ = self.server.accept()
        conn.settimeout(5)
        decoder = FrameDecoder()
        got: list[RemotingCommand] = []
        deadline = time.monotonic() + 5
        while len(got) < self.expect and time.monotonic() < deadline:
            got.extend(decoder.feed(conn.recv(65536)))
        answers = [
            encode_command(
                RemotingCommand(code=0, opaque=c.opaque, flag=FLAG_RESPONSE, body=c.body)
            )
            for c in reversed(got)
        ]
        conn.sendall(b"".join(answers))
        time.sleep(0.5)
        conn.close()
        self.server.close()


def test_pipelined_responses_are_matched_by_opaque_not_order() -> None:
    peer = _ScriptedPeer(expect=50)
    with RemotingConnection(peer.addr, connect_timeout=2) as conn:
        futures = [conn.request_async(28, body=str(i).encode(), timeout=5) for i in range(50)]
        bodies = [f.result(6).body for f in futures]
    assert bodies == [str(i).encode() for i in range(50)]
    peer.thread.join(5)


def test_an_unanswered_request_fails_with_broker_unavailable_in_time() -> None:
    # Accepts (the kernel completes the handshake) but never answers.
    server = socket.create_server(("127.0.0.1", 0))
    try:
        addr = f"127.0.0.1:{server.getsockname()[1]}"
        with RemotingConnection(addr, connect_timeout=2) as conn:
            start = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="did not answer"):
                conn.request(28, timeout=0.5)
            assert 0.45 <= time.monotonic() - start < 1.5
            assert conn.in_flight == 0
    finally:
        server.close()


def test_a_dropped_connection_fails_what_is_in_flight() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        addr = f"127.0.0.1:{server.getsockname()[1]}"
        conn = RemotingConnection(addr, connect_timeout=2)
        fut = conn.request_async(28, timeout=30)
        peer, _ = server.accept()
        peer.close()
        with pytest.raises(BrokerUnavailable, match="lost"):
            fut.result(5)
        assert conn.closed
        with pytest.raises(BrokerUnavailable, match="closed"):
            conn.request(28, timeout=1)
        conn.close()
    finally:
        server.close()
