"""A broker the suite did not start, seen by the runner as it sees its own infra.

:class:`TargetInfra` answers what the step executors ask of :class:`bench.infra.manager.Infra`
(endpoints, the broker processes it may kill, their pids for resource sampling: none here) from
a target of the targets file. :func:`identify` connects once before the run, checks the
credentials and what the target can do, and reads the brokers' own versions for run.json.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drivers.base import open_driver
from bench.errors import BenchError, BrokerUnavailable, ConfigError
from bench.infra.topology import Broker, Endpoints
from bench.targets.faults import TargetFaults
from bench.targets.model import PulsarTarget, RocketMQTarget, check_secrets_present, describe

IDENTIFY_TIMEOUT_S = 15.0


def target_endpoints(target: PulsarTarget | RocketMQTarget) -> Endpoints:
    """The endpoints record of ``target``: addresses, TLS, and the *names* of the variables
    holding its credentials (what travels to workers)."""
    tls = {
        "tls_ca_file": (target.tls.ca_file or "") if target.tls else "",
        "tls_skip_hostname_check": not target.tls.verify_hostname if target.tls else False,
    }
    if isinstance(target, PulsarTarget):
        return Endpoints(
            broker="pulsar",
            topology=target.topology,
            service_url=target.service_url,
            proxy_url=target.proxy_url or "",
            admin_urls=tuple(target.admin_urls),
            cluster=target.cluster,
            target=target.name,
            auth_token_env=target.auth.token_env if target.auth else "",
            **tls,  # type: ignore[arg-type]
        )
    return Endpoints(
        broker="rocketmq",
        topology=target.topology,
        namesrv=";".join(target.namesrv),
        grpc_endpoint=target.grpc_endpoint,
        broker_addrs=dict(target.broker_addrs),
        cluster=target.cluster,
        target=target.name,
        acl_access_key_env=target.auth.access_key_env if target.auth else "",
        acl_secret_key_env=target.auth.secret_key_env if target.auth else "",
        **tls,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class TargetSettings:
    """What a step on a target records in place of the infra settings."""

    target: str
    broker: str
    topology: str

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "broker": self.broker, "topology": self.topology}


class TargetInfra:
    """The :class:`~bench.infra.manager.Infra` surface the executors use, for a target."""

    def __init__(self, target: PulsarTarget | RocketMQTarget) -> None:
        self.target = target
        self._endpoints = target_endpoints(target)
        self.faults = TargetFaults(target) if target.faults is not None else None
        # No broker GC logs or pids here: the brokers are on other hosts.
        self.root = Path(tempfile.gettempdir()) / "bench-target-none"

    def endpoints(self, broker: Broker) -> Endpoints:
        if broker != self.target.broker:
            raise ConfigError(f"target {self.target.name} is a {self.target.broker}, not {broker}")
        return self._endpoints

    def pids(self) -> dict[str, int]:
        return {}

    def killable(self, broker: Broker) -> list[str]:
        return self.faults.victims() if self.faults else []


def missing_capabilities(
    target: PulsarTarget | RocketMQTarget, kind: str, topology: str, params: dict[str, Any]
) -> list[str]:
    """What a step (``kind``, scenario ``topology``, step ``params``) needs that ``target``
    lacks, one phrase each (empty: it can run)."""
    missing: list[str] = []
    if topology == "cluster" and target.brokers() < 2:
        missing.append(f"a cluster of 2+ brokers (it lists {target.brokers()})")
    path = params.get("path")
    if path == "proxy" and isinstance(target, PulsarTarget) and not target.proxy_url:
        missing.append("a Pulsar proxy (`proxy_url`)")
    if kind == "kill-9-recovery":
        faults = target.faults
        if faults is None:
            missing.append("a `faults` section (how to kill and restart its brokers)")
        else:
            policy = params.get("restart_policy")
            can_watch = faults.is_up is not None or faults.kubernetes is not None
            if policy == "manual" and faults.restart is None:
                missing.append("a `restart` command (restart_policy manual)")
            if policy == "supervised" and not (
                (faults.restarts_by_itself and can_watch) or faults.restart is not None
            ):
                missing.append(
                    "restarts_by_itself with `is_up` (or kubernetes), or a `restart` command "
                    "(restart_policy supervised)"
                )
    return missing


def _auth_failure(target: PulsarTarget | RocketMQTarget, exc: BaseException) -> str | None:
    text = str(exc)
    if any(s in text for s in ("HTTP 401", "HTTP 403", "Unauthorized", "Forbidden")):
        return "refused the credentials"
    if any(s in text.lower() for s in ("no permission", "signature", "accesskey", "authenticat")):
        return "refused the credentials"
    return None


def identify(target: PulsarTarget | RocketMQTarget) -> dict[str, Any]:
    """Connect to ``target``, check that its credentials are accepted, and return its identity
    for run.json: name, endpoints, the broker's version as the broker reports it, the names (not
    values) of the credential variables.

    Raises one-line :class:`BenchError` naming the target: a variable unset, credentials
    refused, or no answer within :data:`IDENTIFY_TIMEOUT_S` (never a hang).
    """
    check_secrets_present(target)
    endpoints = target_endpoints(target)
    info = describe(target)
    try:
        if isinstance(target, PulsarTarget):
            info["broker_version"] = _pulsar_version(endpoints)
        else:
            info.update(_rocketmq_identity(endpoints))
    except BenchError as exc:
        why = _auth_failure(target, exc)
        if why:
            raise ConfigError(
                f"target {target.name}: the {target.broker} broker {why} "
                f"({_auth_names(target)}): {_one_line(exc)}"
            ) from None
        raise BrokerUnavailable(f"target {target.name}: {_one_line(exc)}") from None
    return info


def _auth_names(target: PulsarTarget | RocketMQTarget) -> str:
    if isinstance(target, PulsarTarget):
        return f"token from ${target.auth.token_env}" if target.auth else "no credentials given"
    if target.auth:
        return f"keys from ${target.auth.access_key_env}, ${target.auth.secret_key_env}"
    return "no credentials given"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300].rstrip(": ")


def _pulsar_version(endpoints: Endpoints) -> str:
    from bench.drivers.pulsar import HttpError, PulsarDriver

    driver = open_driver("pulsar", endpoints, settings={"http_timeout_s": IDENTIFY_TIMEOUT_S})
    assert isinstance(driver, PulsarDriver)
    try:
        versions: list[str] = []
        # Every admin URL answers (a cluster's brokers each), with the credentials given.
        for url in endpoints.admin_urls:
            status, body = driver.admin_request(url, "GET", "/admin/v2/brokers/version")
            if status in (401, 403):
                # The body is the server's HTML error page: the status says it all.
                raise HttpError("GET", f"{url}/admin/v2/brokers/version", status, "")
            if status != 200:
                raise HttpError("GET", f"{url}/admin/v2/brokers/version", status, body.decode())
            text = body.decode(errors="replace").strip()
            with contextlib.suppress(ValueError):
                text = str(json.loads(text))
            versions.append(text)
        return ", ".join(sorted(set(versions)))
    finally:
        driver.close()


def _rocketmq_identity(endpoints: Endpoints) -> dict[str, Any]:
    from bench.drivers.rocketmq.acl import remoting_client

    client = remoting_client(
        endpoints, timeout=IDENTIFY_TIMEOUT_S, admin_timeout=IDENTIFY_TIMEOUT_S
    )
    try:
        versions: dict[str, str] = {}
        for name, addr in endpoints.broker_addrs.items():
            info = client.get_broker_runtime_info(addr)
            versions[name] = str(info.get("brokerVersionDesc", "unknown"))
        return {"broker_version": ", ".join(sorted(set(versions.values()))), "brokers": versions}
    finally:
        client.close()
