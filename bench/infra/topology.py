"""What runs for each broker and topology: process specs, rendered configs, ports, endpoints.

Two topologies, both real processes:

- ``standalone``: RocketMQ = name server + one JVM running the gRPC proxy in local mode with the
  broker inside it; Pulsar = the standalone (broker, bookie and RocksDB metadata in one JVM).
- ``cluster``: RocketMQ = name server + two master brokers + the proxy in cluster mode; Pulsar =
  ZooKeeper + one bookie + two brokers (cluster metadata initialised first), so one broker can
  die while storage and metadata live on.

With ``proxy=True`` the Pulsar proxy runs in front of either topology. Everything binds to
127.0.0.1; ``port_offset`` moves every port at once so two infras can run side by side.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from bench.errors import ConfigError
from bench.infra.paths import project_infra_dir
from bench.infra.process import ProcessSpec

Broker = Literal["rocketmq", "pulsar"]
Topology = Literal["standalone", "cluster"]
BROKERS: tuple[Broker, ...] = ("rocketmq", "pulsar")
TOPOLOGIES: tuple[Topology, ...] = ("standalone", "cluster")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Base ports (before port_offset). RocketMQ's broker also takes listenPort-2 and listenPort+1;
# the proxy's remoting port moves off 8080, Pulsar's web port.
BASE_PORTS: dict[str, int] = {
    "rocketmq.namesrv": 9876,
    "rocketmq.broker": 10911,
    "rocketmq.broker-a": 10911,
    "rocketmq.broker-b": 10921,
    "rocketmq.proxy.grpc": 8081,
    "rocketmq.proxy.remoting": 8082,
    "pulsar.broker": 6650,
    "pulsar.web": 8080,
    "pulsar.broker-2": 6660,
    "pulsar.web-2": 8090,
    "pulsar.zookeeper": 2181,
    "pulsar.bookie": 3181,
    "pulsar.proxy": 6750,
    "pulsar.proxy.web": 8180,
}

PULSAR_OPENS = (
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.util.zip=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-opens=java.base/sun.net=ALL-UNNAMED",
    "--add-opens=java.management/sun.management=ALL-UNNAMED",
    # Not in bin/pulsar, but without it the load manager logs an IllegalAccessException reading
    # cgroup CPU limits on JDK 17.
    "--add-exports=java.base/jdk.internal.platform=ALL-UNNAMED",
)
PULSAR_PROPS = (
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djava.net.preferIPv4Stack=true",
    "-Djute.maxbuffer=10485760",
    "-Dzookeeper.4lw.commands.whitelist=*",
    "-Dlog4j.shutdownHookEnabled=false",
    "-Dbookkeeper.metadata.bookie.drivers="
    "org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver",
    "-Dbookkeeper.metadata.client.drivers="
    "org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver",
)
ROCKETMQ_OPTS = (
    "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED",
    "-Djava.net.preferIPv4Stack=true",
)


@dataclass(frozen=True)
class InfraSettings:
    """Everything that shapes the brokers of one infra; recorded with every result."""

    brokers: tuple[Broker, ...] = BROKERS
    topology: Topology = "standalone"
    proxy: bool = False  # the Pulsar proxy (RocketMQ always has its gRPC proxy)
    port_offset: int = 0
    # async: RocketMQ ASYNC_FLUSH, bookie journalSyncData=false (each broker's usual default
    # for throughput tests); sync: SYNC_FLUSH and an fsync'd journal.
    durability: Literal["async", "sync"] = "async"
    pulsar_bundles: int = 4
    pulsar_session_timeout_ms: int = 30000
    rocketmq_route_refresh_s: int = 20
    rocketmq_send_latency_enable: bool = False
    heap_mb: int = 768
    pulsar_token_secret_env: str = ""
    """Auth switch: when set, Pulsar requires token authentication; the HS256 secret key
    (base64) is read from this environment variable when the configs are rendered. Clients
    without any credentials keep an anonymous role (the suite's own health checks use none); a
    client presenting a wrong token is refused."""
    rocketmq_acl_env: str = ""
    """Auth switch: ``ACCESS:SECRET``, the names of the environment variables holding a RocketMQ
    account's access key and secret key (read when the configs are rendered). When set, the
    broker and the proxy require RocketMQ 5.3's authentication (ACL 2.0: every remoting request
    and every gRPC call signed by a known account); the infra's endpoints name the same
    variables, so the suite's own clients sign with that account."""

    def __post_init__(self) -> None:
        for b in self.brokers:
            if b not in BROKERS:
                raise ConfigError(f"unknown broker {b!r}; known: {', '.join(BROKERS)}")
        if self.topology not in TOPOLOGIES:
            raise ConfigError(f"unknown topology {self.topology!r}; known: {', '.join(TOPOLOGIES)}")
        if not 0 <= self.port_offset <= 40000:
            raise ConfigError(f"port offset {self.port_offset} must be within 0..40000")
        if self.rocketmq_acl_env:
            self.rocketmq_acl_names()

    def rocketmq_acl_names(self) -> tuple[str, str] | None:
        """(access key variable, secret key variable), or None when RocketMQ ACL is off."""
        if not self.rocketmq_acl_env:
            return None
        access, sep, secret = self.rocketmq_acl_env.partition(":")
        if not (sep and _ENV_NAME.fullmatch(access) and _ENV_NAME.fullmatch(secret)):
            raise ConfigError(
                f"RocketMQ ACL setting {self.rocketmq_acl_env!r} must be ACCESS_ENV:SECRET_ENV, "
                "the names of two environment variables"
            )
        return access, secret

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["brokers"] = list(self.brokers)
        return data


@dataclass(frozen=True)
class Endpoints:
    """How clients reach one broker's infra."""

    broker: Broker
    topology: Topology
    # Pulsar
    service_url: str = ""  # direct, multi-host in the cluster topology
    proxy_url: str = ""  # through the Pulsar proxy, when it runs
    admin_urls: tuple[str, ...] = ()
    # RocketMQ
    namesrv: str = ""
    grpc_endpoint: str = ""  # the gRPC proxy the 5.x client talks to
    broker_addrs: dict[str, str] = field(default_factory=dict)  # brokerName -> remoting addr
    cluster: str = ""
    # Credentials travel as the NAMES of environment variables only; each process that opens
    # a client reads the values from its own environment (never a file, a spec or a log).
    target: str = ""  # the target's name, when the suite did not start this broker
    auth_token_env: str = ""  # Pulsar token authentication
    acl_access_key_env: str = ""  # RocketMQ ACL
    acl_secret_key_env: str = ""
    tls_ca_file: str = ""  # PEM trust bundle for pulsar+ssl:// and https:// endpoints
    tls_skip_hostname_check: bool = False

    @property
    def label(self) -> str:
        """How errors name this broker: the target's name, else the broker's."""
        return f"target {self.target}" if self.target else self.broker

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["admin_urls"] = list(self.admin_urls)
        return data


@dataclass(frozen=True)
class Plan:
    """Ordered process specs for one broker (start in order, stop in reverse)."""

    broker: Broker
    specs: tuple[ProcessSpec, ...]
    endpoints: Endpoints
    oneshot_after: dict[str, ProcessSpec] = field(default_factory=dict)  # run once after NAME


def port(settings: InfraSettings, key: str) -> int:
    return BASE_PORTS[key] + settings.port_offset


def render(template: str, dest: Path, *, private: bool = False, **values: object) -> Path:
    """Render ``infra/conf/<template>`` with ``${name}`` placeholders into ``dest``.

    ``private``: the file holds a secret; it is readable by its owner only (mode 0600, also when
    an earlier render left it wider), and that before a byte is written.
    """
    text = (project_infra_dir() / "conf" / template).read_text()
    try:
        rendered = string.Template(text).substitute({k: str(v) for k, v in values.items()})
    except KeyError as exc:  # a template and its caller disagree: a bug, said plainly
        raise ConfigError(f"infra/conf/{template}: no value for ${{{exc.args[0]}}}") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(fd, 0o600)
            f.write(rendered)
    else:
        dest.write_text(rendered)
    return dest


def tmp_dir(root: Path) -> Path:
    """A broker's JVM temp dir. RocksDB, Netty and the TLS self-signed certificates unpack files
    there on every start and leave them behind after kill -9 (about 12 MiB per start), so it
    lives under the broker's root and is emptied around each bring-up, not in the shared /tmp."""
    return root / "tmp"


def _jvm(java: str, name: str, root: Path, heap_mb: int, direct_mb: int | None = None) -> list[str]:
    safe = name.replace("/", "-")
    logs = root / "logs"
    argv = [
        java,
        f"-Xms{min(heap_mb, 256)}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        # One GC log per process incarnation (%p = pid), so restarts never overwrite.
        f"-Xlog:gc:file={logs / (safe + '-gc-%p.log')}:time,uptime",
        f"-Djava.io.tmpdir={tmp_dir(root)}",
    ]
    if direct_mb:
        argv.append(f"-XX:MaxDirectMemorySize={direct_mb}m")
    return argv


def _pulsar_auth(settings: InfraSettings, conf: Path) -> str:
    """The token-authentication block of the Pulsar configs (empty when it is off). The secret
    key goes to a file of its own (mode 600) beside the configs, never into a config."""
    if not settings.pulsar_token_secret_env:
        return ""
    import base64
    import binascii
    import os

    raw = os.environ.get(settings.pulsar_token_secret_env, "")
    try:
        key = base64.b64decode(raw, validate=True)
    except binascii.Error:
        key = b""
    if len(key) < 32:
        raise ConfigError(
            f"environment variable {settings.pulsar_token_secret_env} must hold a base64 "
            "HS256 secret key of 32+ bytes (Pulsar token authentication)"
        )
    conf.mkdir(parents=True, exist_ok=True)
    key_file = conf / "token-secret.key"
    key_file.touch(mode=0o600)
    key_file.write_bytes(key)
    return "\n".join(
        (
            "authenticationEnabled=true",
            "authenticationProviders="
            "org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
            f"tokenSecretKey=file://{key_file}",
            "anonymousUserRole=bench-anonymous",
            "authorizationEnabled=false",
        )
    )


_RMQ_AUTH_PROVIDER = (
    "org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider"
)
_RMQ_BROKER_USERS = (
    "org.apache.rocketmq.auth.authentication.provider.LocalAuthenticationMetadataProvider"
)
_RMQ_PROXY_USERS = "org.apache.rocketmq.proxy.auth.ProxyAuthenticationMetadataProvider"


def _rocketmq_keys(settings: InfraSettings) -> tuple[str, str] | None:
    """The ACL account's (access key, secret key) from the environment, or None when ACL is off.
    Errors name the variables, never a value."""
    names = settings.rocketmq_acl_names()
    if names is None:
        return None
    unset = [n for n in names if not os.environ.get(n)]
    if unset:
        raise ConfigError(
            f"environment variable(s) {', '.join(unset)} not set: RocketMQ ACL "
            f"(--rocketmq-acl-env {settings.rocketmq_acl_env}) reads the account's access key "
            "and secret key from them"
        )
    return os.environ[names[0]], os.environ[names[1]]


def _properties_json(value: dict[str, str]) -> str:
    """``value`` as JSON inside a Java properties value: ``ensure_ascii`` leaves only ASCII, and
    doubling each backslash survives the properties loader's unescaping."""
    return json.dumps(value, separators=(",", ":")).replace("\\", "\\\\")


def _rocketmq_auth(keys: tuple[str, str] | None) -> tuple[str, str]:
    """The authentication blocks of the broker config and the proxy config (empty when off).

    RocketMQ 5.3.3 enforces ACL 2.0 only (its broker has no ACL 1.0 validator any more; a 1.0
    ``plain_acl.yml`` is merely migrated): ``authenticationEnabled`` in the broker config guards
    every remoting request, in the proxy config every gRPC call and proxy remoting request. The
    broker keeps its accounts in its store (``<store>/config/users``); ``initAuthenticationUser``
    creates ours there at start, a super user, so authorization is not needed and stays off.
    ``innerClientAuthenticationCredentials`` signs what brokers and a cluster-mode proxy send to
    each other.
    """
    if keys is None:
        return "", ""
    access, secret = keys
    user = {"username": access, "password": secret}
    inner = {"accessKey": access, "secretKey": secret}
    broker = "\n".join(
        (
            "authenticationEnabled=true",
            f"authenticationProvider={_RMQ_AUTH_PROVIDER}",
            f"authenticationMetadataProvider={_RMQ_BROKER_USERS}",
            f"initAuthenticationUser={_properties_json(user)}",
            f"innerClientAuthenticationCredentials={_properties_json(inner)}",
        )
    )
    proxy = {
        "authenticationEnabled": True,
        "authenticationProvider": _RMQ_AUTH_PROVIDER,
        "authenticationMetadataProvider": _RMQ_PROXY_USERS,
        "innerClientAuthenticationCredentials": json.dumps(inner),
        # Cluster mode: the proxy signs its own requests to the brokers (local mode calls the
        # broker in-process).
        "enableAclRpcHookForClusterMode": True,
    }
    fields = "".join(f",\n  {json.dumps(k)}: {json.dumps(v)}" for k, v in proxy.items())
    return broker, fields


def _pulsar_common(
    settings: InfraSettings, cluster: str, broker_port: int, web_port: int, auth: str = ""
) -> str:
    text = (project_infra_dir() / "conf" / "pulsar" / "common.conf").read_text()
    return string.Template(text).substitute(
        cluster=cluster,
        broker_port=broker_port,
        web_port=web_port,
        bundles=settings.pulsar_bundles,
        session_timeout_ms=settings.pulsar_session_timeout_ms,
        auth=auth,
    )


def pulsar_plan(settings: InfraSettings, root: Path, java: str, classpath: str) -> Plan:
    """The Pulsar processes of ``settings.topology`` under ``root`` (the broker's infra dir)."""
    logs, conf = root / "logs", root / "conf"
    log4j = project_infra_dir() / "conf" / "pulsar" / "log4j2.xml"
    journal_sync = "true" if settings.durability == "sync" else "false"
    base = [*PULSAR_OPENS, *PULSAR_PROPS, f"-Dlog4j.configurationFile={log4j}", "-cp", classpath]
    specs: list[ProcessSpec] = []
    oneshot: dict[str, ProcessSpec] = {}
    b1, w1 = port(settings, "pulsar.broker"), port(settings, "pulsar.web")
    auth = _pulsar_auth(settings, conf)

    if settings.topology == "standalone":
        cluster = "standalone"
        data = root / "data" / "standalone"
        cfg = render(
            "pulsar/standalone.conf",
            conf / "standalone.conf",
            common=_pulsar_common(settings, cluster, b1, w1, auth),
            journal_sync=journal_sync,
        )
        argv = [
            *_jvm(java, "pulsar/standalone", root, max(settings.heap_mb, 1024), 1024),
            *base,
            "org.apache.pulsar.PulsarStandaloneStarter",
            "--config",
            str(cfg),
            "-nfw",
            "-nss",
            "--metadata-dir",
            str(data / "metadata"),
            "--bookkeeper-dir",
            str(data / "bookkeeper"),
            "-a",
            "127.0.0.1",
        ]
        specs.append(
            ProcessSpec(
                name="pulsar/standalone",
                argv=tuple(argv),
                cwd=str(data),
                log=str(logs / "standalone.log"),
                ports={"pulsar broker": b1, "pulsar web": w1},
                data_dirs=(str(data),),
                ready_port=w1,
            )
        )
        brokers = [(b1, w1)]
    else:
        cluster = "bench-cluster"
        zk, bk = port(settings, "pulsar.zookeeper"), port(settings, "pulsar.bookie")
        zk_data = root / "data" / "zookeeper"
        zk_cfg = render(
            "pulsar/zookeeper.conf", conf / "zookeeper.conf", data_dir=zk_data, zk_port=zk
        )
        specs.append(
            ProcessSpec(
                name="pulsar/zookeeper",
                argv=(
                    *_jvm(java, "pulsar/zookeeper", root, 256),
                    *base,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    str(zk_cfg),
                ),
                cwd=str(zk_data),
                log=str(logs / "zookeeper.log"),
                ports={"zookeeper": zk},
                data_dirs=(str(zk_data),),
                ready_port=zk,
                killable=False,
            )
        )
        b2, w2 = port(settings, "pulsar.broker-2"), port(settings, "pulsar.web-2")
        brokers = [(b1, w1), (b2, w2)]
        init = ProcessSpec(
            name="pulsar/init-metadata",
            argv=(
                *_jvm(java, "pulsar/init-metadata", root, 256),
                *base,
                "org.apache.pulsar.PulsarClusterMetadataSetup",
                "--cluster",
                cluster,
                "--metadata-store",
                f"zk:127.0.0.1:{zk}",
                "--configuration-metadata-store",
                f"zk:127.0.0.1:{zk}",
                "--web-service-url",
                f"http://127.0.0.1:{w1},127.0.0.1:{w2}",
                "--broker-service-url",
                f"pulsar://127.0.0.1:{b1},127.0.0.1:{b2}",
            ),
            cwd=str(root / "data"),
            log=str(logs / "init-metadata.log"),
        )
        oneshot["pulsar/zookeeper"] = init
        bk_data = root / "data" / "bookie"
        bk_cfg = render(
            "pulsar/bookkeeper.conf",
            conf / "bookkeeper.conf",
            bookie_port=bk,
            zk_port=zk,
            journal_dir=bk_data / "journal",
            ledger_dir=bk_data / "ledgers",
            journal_sync=journal_sync,
        )
        specs.append(
            ProcessSpec(
                name="pulsar/bookie",
                argv=(
                    *_jvm(java, "pulsar/bookie", root, 512, 512),
                    *base,
                    "org.apache.bookkeeper.server.Main",
                    "--conf",
                    str(bk_cfg),
                ),
                cwd=str(bk_data),
                log=str(logs / "bookie.log"),
                ports={"bookie": bk},
                data_dirs=(str(bk_data),),
                ready_port=bk,
                killable=False,
            )
        )
        for i, (bp, wp) in enumerate(brokers, start=1):
            cfg = render(
                "pulsar/broker.conf",
                conf / f"broker-{i}.conf",
                common=_pulsar_common(settings, cluster, bp, wp, auth),
                zk_port=zk,
            )
            bdir = root / "data" / f"broker-{i}"
            specs.append(
                ProcessSpec(
                    name=f"pulsar/broker-{i}",
                    argv=(
                        *_jvm(java, f"pulsar/broker-{i}", root, settings.heap_mb, 512),
                        *base,
                        "org.apache.pulsar.PulsarBrokerStarter",
                        "--broker-conf",
                        str(cfg),
                    ),
                    cwd=str(bdir),
                    log=str(logs / f"broker-{i}.log"),
                    ports={f"pulsar broker-{i}": bp, f"pulsar web-{i}": wp},
                    data_dirs=(str(bdir),),
                    ready_port=wp,
                    stop_group="brokers",
                )
            )

    proxy_url = ""
    if settings.proxy:
        pp, pw = port(settings, "pulsar.proxy"), port(settings, "pulsar.proxy.web")
        if settings.topology == "standalone":
            discovery = f"brokerServiceURL=pulsar://127.0.0.1:{b1}\nbrokerWebServiceURL=http://127.0.0.1:{w1}"
        else:
            # Discovery through the metadata store: the proxy sees which broker owns a topic
            # after a failover instead of pinning one broker's URL.
            zk = port(settings, "pulsar.zookeeper")
            discovery = (
                f"metadataStoreUrl=zk:127.0.0.1:{zk}\n"
                f"configurationMetadataStoreUrl=zk:127.0.0.1:{zk}"
            )
        cfg = render(
            "pulsar/proxy.conf",
            conf / "proxy.conf",
            cluster=cluster,
            proxy_port=pp,
            proxy_web_port=pw,
            discovery=discovery,
            allowed_ports=",".join(str(bp) for bp, _ in brokers),
        )
        pdir = root / "data" / "proxy"
        specs.append(
            ProcessSpec(
                name="pulsar/proxy",
                argv=(
                    *_jvm(java, "pulsar/proxy", root, 256, 256),
                    *base,
                    "org.apache.pulsar.proxy.server.ProxyServiceStarter",
                    "--config",
                    str(cfg),
                ),
                cwd=str(pdir),
                log=str(logs / "proxy.log"),
                ports={"pulsar proxy": pp, "pulsar proxy web": pw},
                data_dirs=(str(pdir),),
                ready_port=pp,
                killable=False,
            )
        )
        proxy_url = f"pulsar://127.0.0.1:{pp}"

    endpoints = Endpoints(
        broker="pulsar",
        topology=settings.topology,
        service_url="pulsar://" + ",".join(f"127.0.0.1:{bp}" for bp, _ in brokers),
        proxy_url=proxy_url,
        admin_urls=tuple(f"http://127.0.0.1:{wp}" for _, wp in brokers),
        cluster=cluster,
    )
    return Plan("pulsar", tuple(specs), endpoints, oneshot)


def rocketmq_plan(settings: InfraSettings, root: Path, java: str, classpath: str) -> Plan:
    """The RocketMQ processes of ``settings.topology`` under ``root``."""
    logs, conf = root / "logs", root / "conf"
    cluster = "DefaultCluster"
    ns = port(settings, "rocketmq.namesrv")
    grpc, remoting = (
        port(settings, "rocketmq.proxy.grpc"),
        port(settings, "rocketmq.proxy.remoting"),
    )
    flush = "SYNC_FLUSH" if settings.durability == "sync" else "ASYNC_FLUSH"
    keys = _rocketmq_keys(settings)
    broker_auth, proxy_auth = _rocketmq_auth(keys)
    acl_names = settings.rocketmq_acl_names() or ("", "")

    def rmq_jvm(name: str, role: str, heap: int, home: Path) -> list[str]:
        return [
            *_jvm(java, name, root, heap, 1024 if role != "namesrv" else None),
            *ROCKETMQ_OPTS,
            # Store, logs and name-server files stay inside the infra dir.
            f"-Duser.home={home}",
            f"-Drmq.logback.configurationFile=rmq.{role}.logback.xml",
            "-cp",
            classpath,
        ]

    env = {"ROCKETMQ_HOME": str(root)}
    ns_data = root / "data" / "namesrv"
    ns_cfg = render(
        "rocketmq/namesrv.conf", conf / "namesrv.conf", namesrv_port=ns, data_dir=ns_data
    )
    specs = [
        ProcessSpec(
            name="rocketmq/namesrv",
            argv=(
                *rmq_jvm("rocketmq/namesrv", "namesrv", 256, ns_data),
                "org.apache.rocketmq.namesrv.NamesrvStartup",
                "-c",
                str(ns_cfg),
            ),
            cwd=str(ns_data),
            log=str(logs / "namesrv.log"),
            ports={"rocketmq name server": ns},
            env=env,
            data_dirs=(str(ns_data),),
            ready_port=ns,
            killable=False,
        )
    ]
    proxy_cfg = render(
        "rocketmq/proxy.json",
        conf / "rmq-proxy.json",
        cluster=cluster,
        namesrv_port=ns,
        grpc_port=grpc,
        remoting_port=remoting,
        route_refresh_s=settings.rocketmq_route_refresh_s,
        send_latency_enable="true" if settings.rocketmq_send_latency_enable else "false",
        auth=proxy_auth,
        private=keys is not None,
    )
    proxy_ports = {"rocketmq proxy grpc": grpc, "rocketmq proxy remoting": remoting}
    names = ["broker"] if settings.topology == "standalone" else ["broker-a", "broker-b"]
    broker_addrs: dict[str, str] = {}
    broker_cfgs: list[tuple[str, Path, Path, int]] = []
    for bname in names:
        lp = port(settings, f"rocketmq.{bname}")
        bdir = root / "data" / bname
        broker_name = "broker-a" if bname == "broker" else bname
        cfg = render(
            "rocketmq/broker.conf",
            conf / f"{bname}.conf",
            cluster=cluster,
            broker_name=broker_name,
            namesrv_port=ns,
            listen_port=lp,
            store_dir=bdir / "store",
            flush_disk_type=flush,
            auth=broker_auth,
            private=keys is not None,
        )
        if keys is not None:
            # The broker creates the account only when its store has none of that name: drop
            # the accounts of an earlier start, so the secret is the one in the environment now.
            # The store (RocksDB, the secret in its log) is the owner's alone, as the configs.
            users = bdir / "store" / "config" / "users"
            shutil.rmtree(users, ignore_errors=True)
            users.mkdir(parents=True)
            users.chmod(0o700)
        broker_addrs[broker_name] = f"127.0.0.1:{lp}"
        broker_cfgs.append((bname, cfg, bdir, lp))

    def broker_ports(label: str, lp: int) -> dict[str, int]:
        return {f"{label} remoting": lp, f"{label} fast": lp - 2, f"{label} ha": lp + 1}

    if settings.topology == "standalone":
        bname, cfg, bdir, lp = broker_cfgs[0]
        specs.append(
            ProcessSpec(
                name="rocketmq/broker",
                argv=(
                    *rmq_jvm("rocketmq/broker", "proxy", settings.heap_mb + 256, bdir),
                    "org.apache.rocketmq.proxy.ProxyStartup",
                    "-pm",
                    "local",
                    "-bc",
                    str(cfg),
                    "-pc",
                    str(proxy_cfg),
                ),
                cwd=str(bdir),
                log=str(logs / "broker.log"),
                ports={**broker_ports("rocketmq broker", lp), **proxy_ports},
                env=env,
                data_dirs=(str(bdir),),
                ready_port=grpc,
            )
        )
    else:
        for bname, cfg, bdir, lp in broker_cfgs:
            specs.append(
                ProcessSpec(
                    name=f"rocketmq/{bname}",
                    argv=(
                        *rmq_jvm(f"rocketmq/{bname}", "broker", settings.heap_mb, bdir),
                        "org.apache.rocketmq.broker.BrokerStartup",
                        "-c",
                        str(cfg),
                    ),
                    cwd=str(bdir),
                    log=str(logs / f"{bname}.log"),
                    ports=broker_ports(f"rocketmq {bname}", lp),
                    env=env,
                    data_dirs=(str(bdir),),
                    ready_port=lp,
                    stop_group="brokers",
                    registers_with=f"127.0.0.1:{ns}",
                )
            )
        pdir = root / "data" / "proxy"
        specs.append(
            ProcessSpec(
                name="rocketmq/proxy",
                argv=(
                    *rmq_jvm("rocketmq/proxy", "proxy", 512, pdir),
                    "org.apache.rocketmq.proxy.ProxyStartup",
                    "-pm",
                    "cluster",
                    "-pc",
                    str(proxy_cfg),
                ),
                cwd=str(pdir),
                log=str(logs / "proxy.log"),
                ports=proxy_ports,
                env=env,
                data_dirs=(str(pdir),),
                ready_port=grpc,
                killable=False,
            )
        )
    endpoints = Endpoints(
        broker="rocketmq",
        topology=settings.topology,
        namesrv=f"127.0.0.1:{ns}",
        grpc_endpoint=f"127.0.0.1:{grpc}",
        broker_addrs=broker_addrs,
        cluster=cluster,
        acl_access_key_env=acl_names[0],
        acl_secret_key_env=acl_names[1],
    )
    return Plan("rocketmq", tuple(specs), endpoints)


def wipe(root: Path) -> None:
    """Remove a broker's data, configs, logs and temp files (``--fresh``)."""
    for sub in ("data", "conf", "logs", tmp_dir(root).name):
        shutil.rmtree(root / sub, ignore_errors=True)
