"""The load workers as Kubernetes objects: an Indexed Job (one pod a shard) and a headless
Service that gives each pod a stable DNS name, built from the official client's models.

Pod ``i`` of Job ``<name>`` is ``<name>-<i>.<name>.<namespace>.svc``; the runner connects to
pod ``i`` for shard ``i`` (``bench run --k8s``). Each pod runs ``bench worker --listen
0.0.0.0:7070``, takes its shard index from the Job (``JOB_COMPLETION_INDEX``, which the Job
controller sets in an Indexed Job) and its token from a Secret, and the credentials the
targets file names from the same Secret: variable ``X`` from key ``X``. No secret is in the
manifests.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench.errors import ConfigError
from bench.k8s.client import kubernetes
from bench.targets.model import TargetsFile, secret_env_names

WORKER_PORT = 7070
INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class WorkerDeployment:
    """What to render: how many worker pods, from which image, with what resources."""

    workers: int
    name: str = "bench-workers"
    namespace: str = "default"
    image: str = "bench:latest"
    secret: str = "bench-secrets"
    """The Secret holding ``BENCH_WORKER_TOKEN`` and every credential variable of the targets."""
    engine: str = "python"
    cpu: str = "2"
    memory: str = "2Gi"
    secret_envs: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 1000:
            raise ConfigError(f"--workers {self.workers}: between 1 and 1000 pods")

    def addresses(self) -> list[str]:
        """The workers' HOST:PORT, pod ``i`` first for shard ``i``."""
        return [
            f"{self.name}-{i}.{self.name}.{self.namespace}.svc:{WORKER_PORT}"
            for i in range(self.workers)
        ]


def deployment_for(targets: TargetsFile | None, **kw: Any) -> WorkerDeployment:
    """A :class:`WorkerDeployment` whose pods get ``targets``' credential variables."""
    envs: list[str] = []
    for t in targets.targets if targets else []:
        envs.extend(secret_env_names(t))
    return WorkerDeployment(secret_envs=tuple(dict.fromkeys(envs)), **kw)


def build(dep: WorkerDeployment) -> list[Any]:
    """The Service and the Job, as ``kubernetes.client`` model objects."""
    from bench.engines.remote import TOKEN_ENV

    m = kubernetes().client
    labels = {"app.kubernetes.io/name": "bench-worker", "app.kubernetes.io/instance": dep.name}
    service = m.V1Service(
        api_version="v1",
        kind="Service",
        metadata=m.V1ObjectMeta(name=dep.name, namespace=dep.namespace, labels=labels),
        spec=m.V1ServiceSpec(
            cluster_ip="None",  # headless: one DNS record per pod, no load balancing
            selector=labels,
            publish_not_ready_addresses=False,
            ports=[m.V1ServicePort(name="worker", port=WORKER_PORT, target_port=WORKER_PORT)],
        ),
    )

    def from_secret(name: str) -> Any:
        return m.V1EnvVar(
            name=name,
            value_from=m.V1EnvVarSource(
                secret_key_ref=m.V1SecretKeySelector(name=dep.secret, key=name)
            ),
        )

    env = [
        m.V1EnvVar(
            name=INDEX_ENV,
            value_from=m.V1EnvVarSource(
                field_ref=m.V1ObjectFieldSelector(
                    field_path=f"metadata.annotations['{INDEX_ANNOTATION}']"
                )
            ),
        ),
        from_secret(TOKEN_ENV),
        *(from_secret(n) for n in dep.secret_envs),
    ]
    resources = {"cpu": dep.cpu, "memory": dep.memory}
    container = m.V1Container(
        name="worker",
        image=dep.image,
        command=["bench", "worker", "--listen", f"0.0.0.0:{WORKER_PORT}"],
        ports=[m.V1ContainerPort(container_port=WORKER_PORT, name="worker")],
        env=env,
        # Requests equal to limits: a worker's figures must not depend on a neighbour's load.
        resources=m.V1ResourceRequirements(requests=resources, limits=resources),
        readiness_probe=m.V1Probe(
            tcp_socket=m.V1TCPSocketAction(port=WORKER_PORT), period_seconds=2
        ),
    )
    job = m.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=m.V1ObjectMeta(name=dep.name, namespace=dep.namespace, labels=labels),
        spec=m.V1JobSpec(
            completion_mode="Indexed",
            completions=dep.workers,
            parallelism=dep.workers,
            backoff_limit=0,  # a worker that died mid-run fails its step; no silent retry
            ttl_seconds_after_finished=600,
            template=m.V1PodTemplateSpec(
                metadata=m.V1ObjectMeta(labels=labels),
                spec=m.V1PodSpec(
                    subdomain=dep.name,  # with the headless Service: <pod>.<name>.<ns>.svc
                    restart_policy="Never",
                    containers=[container],
                    # Spread the shards: workers on one node would share its CPU.
                    topology_spread_constraints=[
                        m.V1TopologySpreadConstraint(
                            max_skew=1,
                            topology_key="kubernetes.io/hostname",
                            when_unsatisfiable="ScheduleAnyway",
                            label_selector=m.V1LabelSelector(match_labels=labels),
                        )
                    ],
                ),
            ),
        ),
    )
    return [service, job]


def to_yaml(objects: list[Any]) -> str:
    """Multi-document YAML of ``objects`` (``kubectl apply -f`` takes it)."""
    api = kubernetes().client.ApiClient()
    return yaml.safe_dump_all([api.sanitize_for_serialization(o) for o in objects], sort_keys=False)


class _Response:
    def __init__(self, data: Any) -> None:
        self.data = json.dumps(data)


def load(text: str) -> list[Any]:
    """Read rendered manifests back into model objects (``V1Service``, ``V1Job``)."""
    api = kubernetes().client.ApiClient()
    out = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        kind = {"Service": "V1Service", "Job": "V1Job"}.get(doc.get("kind"))
        if kind is None:
            raise ConfigError(f"unexpected manifest kind {doc.get('kind')!r}")
        if "content_type" in inspect.signature(api.deserialize).parameters:
            # Newer clients take the response text; older ones a response object.
            out.append(api.deserialize(json.dumps(doc), kind, "application/json"))
        else:
            out.append(api.deserialize(_Response(doc), kind))
    return out
