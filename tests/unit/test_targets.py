"""The targets file, credentials by variable name only, faults through commands, ACL signing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import sys
from pathlib import Path

import pytest

from bench.drivers.pulsar import admin_headers, client_security
from bench.drivers.rocketmq.acl import acl_keys, sign_frame, sign_frames, signature
from bench.errors import BenchError, ConfigError
from bench.infra.topology import Endpoints
from bench.protocol.remoting_codec import RemotingCommand, decode_payload, encode_command
from bench.targets.faults import TargetFaults
from bench.targets.loader import load_targets
from bench.targets.model import describe
from bench.targets.session import missing_capabilities, target_endpoints
from bench.targets.tokens import pulsar_token

GOOD = """\
schema_version: 1
targets:
  - name: lab-pulsar
    broker: pulsar
    topology: cluster
    service_url: pulsar://10.0.0.1:6650,10.0.0.2:6650
    admin_urls: [http://10.0.0.1:8080, http://10.0.0.2:8080]
    auth: {token_env: LAB_PULSAR_TOKEN}
    faults:
      processes:
        broker-1: {vars: {pod: pulsar-broker-0}, serves: "10.0.0.1:6650"}
        broker-2: {vars: {pod: pulsar-broker-1}, serves: "10.0.0.2:6650"}
      kill: [kubectl, delete, pod, "{pod}", --grace-period=0, --force]
      is_up: [kubectl, wait, --for=condition=Ready, "pod/{pod}", --timeout=1s]
      restarts_by_itself: true
  - name: lab-rocketmq
    broker: rocketmq
    namesrv: ["10.0.1.1:9876", "10.0.1.2:9876"]
    grpc_endpoint: 10.0.1.3:8081
    broker_addrs: {broker-a: "10.0.1.4:10911"}
    auth: {access_key_env: LAB_RMQ_AK, secret_key_env: LAB_RMQ_SK}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(text)
    return path


def test_a_good_file_loads_and_its_endpoints_carry_variable_names_only(tmp_path: Path) -> None:
    tf = load_targets(_write(tmp_path, GOOD))
    pulsar = tf.for_broker("pulsar")
    assert pulsar is not None and pulsar.brokers() == 2
    ep = target_endpoints(pulsar)
    assert ep.auth_token_env == "LAB_PULSAR_TOKEN" and ep.target == "lab-pulsar"
    assert ep.admin_urls == ("http://10.0.0.1:8080", "http://10.0.0.2:8080")
    rmq = tf.for_broker("rocketmq")
    assert rmq is not None
    rep = target_endpoints(rmq)
    assert rep.namesrv == "10.0.1.1:9876;10.0.1.2:9876"
    assert (rep.acl_access_key_env, rep.acl_secret_key_env) == ("LAB_RMQ_AK", "LAB_RMQ_SK")
    # What run.json records names the variables, under a key the results store keeps.
    info = describe(rmq)
    assert info["login"] == {"method": "acl", "variables": ["LAB_RMQ_AK", "LAB_RMQ_SK"]}
    assert "auth" not in info


def test_every_problem_is_one_line_with_file_line_and_key(tmp_path: Path) -> None:
    bad = GOOD.replace("token_env: LAB_PULSAR_TOKEN", "token_env: eyJhbGciOi.sEcReT.x").replace(
        "    grpc_endpoint: 10.0.1.3:8081\n", "    grpc_endpoint: 10.0.1.3:8081\n    colour: red\n"
    )
    path = _write(tmp_path, bad)
    with pytest.raises(ConfigError) as err:
        load_targets(path)
    lines = str(err.value).splitlines()
    assert f"{path}:8: targets.0.auth.token_env: must be the NAME of an environment" in lines[0]
    assert lines[1] == f"{path}:20: targets.1.colour: unknown key"
    # A secret pasted where a variable name belongs is never echoed back.
    assert "sEcReT" not in str(err.value)


def test_a_command_template_missing_a_placeholder_value_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("{vars: {pod: pulsar-broker-1}, ", "{"))
    with pytest.raises(
        ConfigError, match=r"targets\.0\.faults: kill: process 'broker-2' has no value for \{pod\}"
    ):
        load_targets(path)


def test_two_targets_for_one_broker_are_refused(tmp_path: Path) -> None:
    text = GOOD + GOOD.split("targets:\n", 1)[1].split("  - name: lab-rocketmq")[0]
    with pytest.raises(ConfigError, match="two targets for pulsar"):
        load_targets(_write(tmp_path, text))


def test_capabilities_say_what_a_step_needs(tmp_path: Path) -> None:
    tf = load_targets(_write(tmp_path, GOOD))
    rmq, pulsar = tf.for_broker("rocketmq"), tf.for_broker("pulsar")
    assert rmq is not None and pulsar is not None
    missing = missing_capabilities(rmq, "kill-9-recovery", "cluster", {"restart_policy": "manual"})
    assert missing == [
        "a cluster of 2+ brokers (it lists 1)",
        "a `faults` section (how to kill and restart its brokers)",
    ]
    assert missing_capabilities(pulsar, "kill-9-recovery", "cluster", {"path": "proxy"}) == [
        "a Pulsar proxy (`proxy_url`)"
    ]
    # restarts_by_itself + is_up: supervised is possible, manual needs a restart command.
    assert (
        missing_capabilities(pulsar, "kill-9-recovery", "cluster", {"restart_policy": "supervised"})
        == []
    )
    assert missing_capabilities(
        pulsar, "kill-9-recovery", "standalone", {"restart_policy": "manual"}
    ) == ["a `restart` command (restart_policy manual)"]
    assert missing_capabilities(rmq, "send-frequency", "standalone", {}) == []


def test_credentials_come_from_the_environment_and_name_the_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ep = Endpoints(
        broker="pulsar",
        topology="standalone",
        service_url="pulsar://127.0.0.1:6650",
        admin_urls=("http://127.0.0.1:8080",),
        target="lab",
        auth_token_env="LAB_TOKEN_VAR",
    )
    monkeypatch.delenv("LAB_TOKEN_VAR", raising=False)
    with pytest.raises(
        ConfigError, match=r"^target lab: environment variable LAB_TOKEN_VAR is not set"
    ):
        admin_headers(ep)
    monkeypatch.setenv("LAB_TOKEN_VAR", "tok-123")
    assert admin_headers(ep)["Authorization"] == "Bearer tok-123"
    assert "authentication" in client_security(ep)
    # Without a token: no header, no authentication object.
    plain = Endpoints(broker="pulsar", topology="standalone", admin_urls=("http://h:1",))
    assert admin_headers(plain) == {} and client_security(plain) == {}


def test_pulsar_tokens_are_hs256_jwts_over_the_subject() -> None:
    key = b"k" * 32
    token = pulsar_token(key, "bench")
    header, payload, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(header))) == {"alg": "HS256"}
    assert json.loads(base64.urlsafe_b64decode(pad(payload))) == {"sub": "bench"}
    want = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(pad(sig)) == want


def test_acl_signature_is_the_java_clients() -> None:
    ext = {"topic": "T", "a": "1", "AccessKey": "ak"}
    # RocketMQ 5.3.3's AclClientRPCHook(SessionCredentials("ak", "sk")) on a request with ext
    # fields topic=T, a=1 and body "BODY" (run in jshell on the JVM worker's classpath).
    assert signature(ext, b"BODY", "sk") == "Gj2q3UDBvZ+dAxtkbsFs7u4ffts="
    # That is: HmacSHA1 over the values in key order (AccessKey < a < topic), then the body.
    want = base64.b64encode(hmac.new(b"sk", b"ak1T" + b"BODY", hashlib.sha1).digest()).decode()
    assert signature(ext, b"BODY", "sk") == want
    # The Signature field itself is never part of what is signed.
    assert signature({**ext, "Signature": "x"}, b"BODY", "sk") == want


def test_every_frame_of_a_write_is_signed() -> None:
    frames = [
        encode_command(RemotingCommand(10, i, 0, None, {"topic": f"t{i}"}, b"payload"))
        for i in range(3)
    ]
    out = sign_frames(b"".join(frames), "ak", "sk")
    pos, seen = 0, []
    while pos < len(out):
        (total,) = struct.unpack_from(">I", out, pos)
        cmd = decode_payload(out[pos + 4 : pos + 4 + total])
        seen.append(cmd)
        pos += 4 + total
    assert [c.opaque for c in seen] == [0, 1, 2]
    for i, cmd in enumerate(seen):
        assert cmd.body == b"payload"
        assert cmd.ext_fields["AccessKey"] == "ak"
        unsigned = {k: v for k, v in cmd.ext_fields.items() if k != "Signature"}
        assert cmd.ext_fields["Signature"] == signature(unsigned, b"payload", "sk")
        assert cmd.ext_fields["topic"] == f"t{i}"
    assert sign_frame(frames[0], "ak", "sk") == out[: len(sign_frame(frames[0], "ak", "sk"))]


def test_acl_needs_both_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = Endpoints(broker="rocketmq", topology="standalone", target="r", acl_access_key_env="AK_V")
    with pytest.raises(ConfigError, match="target r: RocketMQ ACL needs both"):
        acl_keys(ep)
    assert acl_keys(Endpoints(broker="rocketmq", topology="standalone")) is None


FAULTS = """\
schema_version: 1
targets:
  - name: box
    broker: rocketmq
    namesrv: ["127.0.0.1:9876"]
    grpc_endpoint: 127.0.0.1:8081
    broker_addrs: {broker-a: "127.0.0.1:10911"}
    faults:
      timeout_s: 10
      processes:
        broker-a: {vars: {mark: "MARK"}}
      kill: [PY, -c, "import sys; open(sys.argv[1], 'a').write('kill {name}\\\\n')", "LOG"]
      restart: [PY, -c, "import sys; open(sys.argv[1], 'a').write('restart {mark}\\\\n')", "LOG"]
      is_up: [PY, -c, "import sys; sys.exit('restart' not in open(sys.argv[1]).read())", "LOG"]
"""


def test_faults_run_the_targets_commands_without_a_shell(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("")
    text = FAULTS.replace("PY", sys.executable).replace("LOG", str(log))
    target = load_targets(_write(tmp_path, text)).for_broker("rocketmq")
    assert target is not None
    faults = TargetFaults(target)
    assert faults.victims() == ["rocketmq/broker-a"]
    assert not faults.is_up("rocketmq/broker-a")
    at, took = faults.kill9("rocketmq/broker-a")
    assert took >= 0 and at > 0
    back = faults.restart("broker-a")
    assert back >= at
    assert log.read_text().splitlines() == ["kill broker-a", "restart MARK"]
    assert faults.is_up("broker-a")


def test_a_failing_fault_command_is_one_line_naming_the_target(tmp_path: Path) -> None:
    kill = "kill: [PY, -c, \"import sys; sys.stderr.write('no such pod\\\\n'); sys.exit(3)\"]"
    text = re.sub(r"(?m)^      kill: .*$", "      " + kill.replace("\\", "\\\\"), FAULTS)
    text = text.replace("PY", sys.executable).replace("LOG", str(tmp_path / "x"))
    target = load_targets(_write(tmp_path, text)).for_broker("rocketmq")
    assert target is not None
    with pytest.raises(BenchError) as err:
        TargetFaults(target).kill9("broker-a")
    assert str(err.value).startswith("target box: kill broker-a: ")
    assert str(err.value).endswith("exited 3: no such pod")
