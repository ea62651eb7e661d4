"""RocketMQ ACL in the infra the suite starts: the rendered broker and proxy configs, their
permissions, the endpoints naming the variables, and no secret in the state file."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.errors import ConfigError
from bench.infra import manager
from bench.infra.artifacts import Classpath
from bench.infra.manager import Infra
from bench.infra.topology import InfraSettings, rocketmq_plan

ACCESS_ENV, SECRET_ENV = "BENCH_UT_RMQ_ACCESS", "BENCH_UT_RMQ_SECRET"
ACCESS = "bench-ut-access"
# What a properties file or JSON could mangle: a backslash, quotes, '=', ':', non-ASCII.
SECRET = 'se\\cr"et=:ü-0123456789'
ACL = f"{ACCESS_ENV}:{SECRET_ENV}"


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ACCESS_ENV, ACCESS)
    monkeypatch.setenv(SECRET_ENV, SECRET)


def _properties(path: Path) -> dict[str, str]:
    """key=value lines as java.util.Properties reads these (values unescaped: ``\\\\`` and
    ``\\uXXXX``; continuation lines are not used by the templates)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_acl_on_renders_authentication_into_private_broker_and_proxy_configs(
    tmp_path: Path, keys: None, topology: str
) -> None:
    settings = InfraSettings(topology=topology, rocketmq_acl_env=ACL)  # type: ignore[arg-type]
    plan = rocketmq_plan(settings, tmp_path, "java", "cp")
    brokers = sorted((tmp_path / "conf").glob("broker*.conf"))
    assert len(brokers) == (1 if topology == "standalone" else 2)
    for conf in brokers:
        assert _mode(conf) == 0o600
        props = _properties(conf)
        assert props["authenticationEnabled"] == "true"
        assert props["authenticationMetadataProvider"].endswith(
            "LocalAuthenticationMetadataProvider"
        )
        assert json.loads(props["initAuthenticationUser"]) == {
            "username": ACCESS,
            "password": SECRET,
        }
        inner = json.loads(props["innerClientAuthenticationCredentials"])
        assert inner == {"accessKey": ACCESS, "secretKey": SECRET}
    proxy_conf = tmp_path / "conf" / "rmq-proxy.json"
    assert _mode(proxy_conf) == 0o600
    proxy = json.loads(proxy_conf.read_text())
    assert proxy["authenticationEnabled"] is True
    assert proxy["authenticationMetadataProvider"].endswith("ProxyAuthenticationMetadataProvider")
    assert json.loads(proxy["innerClientAuthenticationCredentials"])["secretKey"] == SECRET
    assert proxy["enableAclRpcHookForClusterMode"] is True
    # The suite's own clients sign with the same account: the endpoints name its variables.
    ep = plan.endpoints
    assert (ep.acl_access_key_env, ep.acl_secret_key_env) == (ACCESS_ENV, SECRET_ENV)
    specs = json.dumps([s.to_json() for s in plan.specs]) + json.dumps(ep.to_json())
    assert SECRET not in specs and ACCESS not in specs


def test_acl_off_renders_no_authentication(tmp_path: Path) -> None:
    plan = rocketmq_plan(InfraSettings(), tmp_path, "java", "cp")
    conf = tmp_path / "conf" / "broker.conf"
    assert "authenticationEnabled" not in _properties(conf)
    assert "authenticationEnabled" not in json.loads(
        (tmp_path / "conf" / "rmq-proxy.json").read_text()
    )
    assert not plan.endpoints.acl_access_key_env and not plan.endpoints.acl_secret_key_env


def test_a_wider_config_left_by_an_earlier_start_becomes_private(
    tmp_path: Path, keys: None
) -> None:
    rocketmq_plan(InfraSettings(), tmp_path, "java", "cp")
    conf = tmp_path / "conf" / "broker.conf"
    conf.chmod(0o644)
    rocketmq_plan(InfraSettings(rocketmq_acl_env=ACL), tmp_path, "java", "cp")
    assert _mode(conf) == 0o600 and SECRET_ENV not in conf.read_text()


def test_the_account_is_created_again_from_the_environment_at_each_start(
    tmp_path: Path, keys: None
) -> None:
    users = tmp_path / "data" / "broker" / "store" / "config" / "users"
    users.mkdir(parents=True)
    (users / "CURRENT").write_text("an account of an earlier start")
    rocketmq_plan(InfraSettings(rocketmq_acl_env=ACL), tmp_path, "java", "cp")
    assert not list(users.iterdir())
    assert _mode(users) == 0o700  # RocksDB keeps the account, secret included, in there


def test_unset_keys_name_the_variables_and_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ACCESS_ENV, ACCESS)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    with pytest.raises(ConfigError) as err:
        rocketmq_plan(InfraSettings(rocketmq_acl_env=ACL), tmp_path, "java", "cp")
    assert SECRET_ENV in str(err.value) and ACCESS not in str(err.value)


@pytest.mark.parametrize("bad", ["ONLY_ONE", "A:", ":B", "A:B:C", "A-B:C", "A:B C"])
def test_the_setting_must_name_two_variables(bad: str) -> None:
    with pytest.raises(ConfigError, match="ACCESS_ENV:SECRET_ENV"):
        InfraSettings(rocketmq_acl_env=bad)


def test_the_state_file_holds_the_variable_names_and_no_secret(
    tmp_path: Path, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `up` with ACL on, the processes and the round trip stubbed: what it records."""
    started: list[str] = []
    monkeypatch.setattr(
        manager, "find_java", lambda: SimpleNamespace(version="17", executable="java")
    )
    monkeypatch.setattr(manager, "ensure_classpath", lambda _rt: Classpath("rocketmq", (), 0.0))
    monkeypatch.setattr(manager, "ensure_free", lambda _ports: None)

    def fake_start(_self: Infra, spec: Any, *_a: object) -> None:
        started.append(spec.name)

    monkeypatch.setattr(Infra, "_start_ready", fake_start)
    monkeypatch.setattr(Infra, "check_health", lambda *_a, **_k: [])
    infra = Infra(tmp_path)
    infra.up(InfraSettings(brokers=("rocketmq",), rocketmq_acl_env=ACL))
    assert started == ["rocketmq/namesrv", "rocketmq/broker"]
    state = infra.state_path.read_text()
    assert SECRET not in state and json.dumps(SECRET) not in state and ACCESS not in state
    ep = infra.endpoints("rocketmq")
    assert (ep.acl_access_key_env, ep.acl_secret_key_env) == (ACCESS_ENV, SECRET_ENV)
    settings = infra.settings()
    assert settings is not None and settings.rocketmq_acl_env == ACL
