"""The targets file: brokers the suite does not start, how to reach them, and how to fault them.

A targets file names, per broker, its endpoints (several hosts each), TLS, authentication and
the commands that kill, restart and probe its processes. Secrets are never in the file: it
names the *environment variables* that hold them (``token_env``, ``access_key_env``,
``secret_key_env``), and only those names travel (to workers, into run.json); each process that
opens a client reads the values from its own environment.

```yaml
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
      kill: [kubectl, delete, pod, "{pod}", --grace-period=0, --force]
      is_up: [kubectl, wait, --for=condition=Ready, "pod/{pod}", --timeout=1s]
      restarts_by_itself: true
```
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.errors import ConfigError

TARGETS_SCHEMA_VERSION = 1
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            f"{value!r} is not an environment variable name: the file names the variable "
            "that holds a secret, never the secret itself"
        )
    return value


def _host_port(value: str) -> str:
    if not _HOST_PORT.match(value):
        raise ValueError(f"{value!r} is not host:port")
    return value


class Tls(_Strict):
    """TLS towards the brokers (the URLs then say ``pulsar+ssl://`` / ``https://``)."""

    ca_file: str | None = None
    """PEM bundle that signs the brokers' certificates (None: the system's trust store)."""
    verify_hostname: bool = True


class PulsarAuth(_Strict):
    """Pulsar token authentication: the token (a JWT) is in the environment variable."""

    token_env: str

    @field_validator("token_env")
    @classmethod
    def _check(cls, v: str) -> str:
        return _env_name(v)


class RocketMQAuth(_Strict):
    """RocketMQ ACL: access key and secret key, each in an environment variable."""

    access_key_env: str
    secret_key_env: str

    @field_validator("access_key_env", "secret_key_env")
    @classmethod
    def _check(cls, v: str) -> str:
        return _env_name(v)


class FaultProcess(_Strict):
    """One broker process a kill -9 may target."""

    vars: dict[str, str] = Field(default_factory=dict)
    """Values for the command templates' placeholders (``{pod}``, ``{host}``, ``{pid}``...);
    ``{name}`` is always the process's own name."""
    serves: str | None = None
    """The host:port of its broker service, to tell which process owns a topic (clusters)."""


class KubernetesFaults(_Strict):
    """Faults through the Kubernetes API (the optional ``kubernetes`` client): delete a pod with
    grace period 0; the StatefulSet and its liveness probe bring it back."""

    namespace: str = "default"
    pod_var: str = "pod"
    """Which of a process's ``vars`` holds its pod name."""
    kubeconfig: str | None = None
    """None: in-cluster configuration, else the default kubeconfig."""


class Faults(_Strict):
    """How to fault a target's broker processes: argv templates, run without a shell."""

    processes: dict[str, FaultProcess] = Field(min_length=1)
    kill: list[str] | None = None
    restart: list[str] | None = None
    is_up: list[str] | None = None
    """Exits 0 when the process serves again."""
    restarts_by_itself: bool = False
    """True when the platform brings a killed process back (a StatefulSet, systemd): the
    ``supervised`` restart policy then waits for ``is_up`` instead of running ``restart``."""
    kubernetes: KubernetesFaults | None = None
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    """Bound on each command (a restart command may wait for readiness)."""

    @model_validator(mode="after")
    def _commands(self) -> Faults:
        if self.kill is None and self.kubernetes is None:
            raise ValueError("give `kill` (an argv template) or `kubernetes` (delete the pod)")
        for key in ("kill", "restart", "is_up"):
            argv = getattr(self, key)
            if argv is None:
                continue
            if not argv or not all(a for a in argv):
                raise ValueError(f"{key}: an argv template needs a program and no empty parts")
            for proc_name, proc in self.processes.items():
                missing = {
                    m for a in argv for m in _PLACEHOLDER.findall(a) if m not in proc.vars
                } - {"name"}
                if missing:
                    raise ValueError(
                        f"{key}: process {proc_name!r} has no value for "
                        + ", ".join("{" + m + "}" for m in sorted(missing))
                    )
        if self.kubernetes is not None:
            pod = self.kubernetes.pod_var
            lacking = [n for n, p in self.processes.items() if pod not in p.vars]
            if lacking:
                raise ValueError(f"kubernetes: process(es) {', '.join(lacking)} have no {pod!r}")
        return self

    def argv(self, which: Literal["kill", "restart", "is_up"], process: str) -> list[str] | None:
        """The command ``which`` for ``process``, placeholders filled (None if not given)."""
        template = getattr(self, which)
        if template is None:
            return None
        values = {**self.processes[process].vars, "name": process}
        return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], a) for a in template]


class _TargetBase(_Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    topology: Literal["standalone", "cluster"] = "standalone"
    tls: Tls | None = None
    faults: Faults | None = None


class PulsarTarget(_TargetBase):
    """A Pulsar deployment: binary service URL(s), admin (web) URLs, optional proxy."""

    broker: Literal["pulsar"]
    service_url: str = Field(pattern=r"^pulsar(\+ssl)?://[^/]+$")
    """``pulsar://h1:6650,h2:6650`` (several hosts: the client tries each)."""
    admin_urls: list[str] = Field(min_length=1, max_length=64)
    proxy_url: str | None = Field(default=None, pattern=r"^pulsar(\+ssl)?://[^/]+$")
    cluster: str = "standalone"
    auth: PulsarAuth | None = None

    @field_validator("admin_urls")
    @classmethod
    def _admin(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^https?://[^/]+/?$", url):
                raise ValueError(f"{url!r} is not http(s)://host:port")
        return [u.rstrip("/") for u in v]

    def brokers(self) -> int:
        """How many brokers the target has (its admin URLs: one per broker)."""
        return len(self.admin_urls)


class RocketMQTarget(_TargetBase):
    """A RocketMQ deployment: name servers, the 5.x gRPC proxy, the brokers' remoting addresses."""

    broker: Literal["rocketmq"]
    namesrv: list[str] = Field(min_length=1, max_length=64)
    grpc_endpoint: str
    """The proxy's gRPC endpoint, ``host:port`` (several: ``h1:8081;h2:8081``)."""
    broker_addrs: dict[str, str] = Field(min_length=1)
    """Broker name -> its master's remoting address."""
    cluster: str = "DefaultCluster"
    auth: RocketMQAuth | None = None

    @field_validator("namesrv")
    @classmethod
    def _namesrv(cls, v: list[str]) -> list[str]:
        return [_host_port(a) for a in v]

    @field_validator("grpc_endpoint")
    @classmethod
    def _grpc(cls, v: str) -> str:
        for part in v.split(";"):
            _host_port(part)
        return v

    @field_validator("broker_addrs")
    @classmethod
    def _brokers(cls, v: dict[str, str]) -> dict[str, str]:
        return {k: _host_port(a) for k, a in v.items()}

    def brokers(self) -> int:
        """How many broker masters the target has."""
        return len(self.broker_addrs)


Target = Annotated[PulsarTarget | RocketMQTarget, Field(discriminator="broker")]


class TargetsFile(_Strict):
    """The whole file: one target per broker at most."""

    schema_version: Literal[1]
    targets: list[Target] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _unique(self) -> TargetsFile:
        seen: set[str] = set()
        for t in self.targets:
            if t.broker in seen:
                raise ValueError(f"two targets for {t.broker}: a run measures one of each")
            seen.add(t.broker)
        return self

    def for_broker(self, broker: str) -> PulsarTarget | RocketMQTarget | None:
        """The target of ``broker``, if the file has one."""
        return next((t for t in self.targets if t.broker == broker), None)


def secret_env_names(target: PulsarTarget | RocketMQTarget) -> list[str]:
    """The environment variables that hold ``target``'s secrets."""
    if isinstance(target, PulsarTarget):
        return [target.auth.token_env] if target.auth else []
    return [target.auth.access_key_env, target.auth.secret_key_env] if target.auth else []


def check_secrets_present(target: PulsarTarget | RocketMQTarget) -> None:
    """Raise :class:`ConfigError` naming the target and the variable when a secret is unset
    (the message names the variable, never a value)."""
    missing = [n for n in secret_env_names(target) if not os.environ.get(n)]
    if missing:
        raise ConfigError(
            f"target {target.name}: environment variable(s) {', '.join(missing)} not set "
            "(they hold its credentials)"
        )


def describe(target: PulsarTarget | RocketMQTarget) -> dict[str, Any]:
    """What run.json records of a target: names, endpoints, the *names* of the variables that
    hold its credentials; never a secret (the file holds none)."""
    names = secret_env_names(target)
    return target.model_dump(mode="json", exclude={"faults", "auth"}) | {
        "faults": sorted(target.faults.processes) if target.faults else [],
        # "login", not "auth": the results store drops credential-like keys wholesale, and
        # these are only the method and the variables' names.
        "login": {
            "method": ("token" if isinstance(target, PulsarTarget) else "acl") if names else None,
            "variables": names,
        },
    }
