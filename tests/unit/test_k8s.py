"""Kubernetes: the rendered worker manifests load back through the official client's models;
`bench run --k8s`'s create / wait / delete against a fake API."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.engines.remote import TOKEN_ENV
from bench.k8s.deploy import KubernetesError, workers_on_kubernetes
from bench.k8s.faults import PodFaults
from bench.k8s.manifests import INDEX_ANNOTATION, INDEX_ENV, WorkerDeployment, load
from bench.targets.model import KubernetesFaults

kubernetes = pytest.importorskip("kubernetes")

TARGETS = """\
schema_version: 1
targets:
  - name: lab
    broker: pulsar
    service_url: pulsar://pulsar-proxy:6650
    admin_urls: [http://pulsar-proxy:8080]
    auth: {token_env: LAB_PULSAR_TOKEN}
"""


def test_rendered_manifests_load_back_with_index_resources_and_secrets(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text(TARGETS)
    out = tmp_path / "workers.yaml"
    result = CliRunner().invoke(
        cli,
        [
            *("k8s", "render", "--targets", str(targets), "--workers", "3", "--cpu", "1500m"),
            *("--memory", "3Gi", "--secret", "bench-lab", "-o", str(out)),
        ],
    )
    assert result.exit_code == 0, result.output
    service, job = load(out.read_text())
    assert isinstance(service, kubernetes.client.V1Service)
    assert isinstance(job, kubernetes.client.V1Job)
    assert service.spec.cluster_ip == "None"  # headless: one DNS name per pod
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == job.spec.parallelism == 3
    pod = job.spec.template.spec
    assert pod.subdomain == service.metadata.name
    (container,) = pod.containers
    assert container.command[:2] == ["bench", "worker"]
    assert container.resources.requests == container.resources.limits
    assert container.resources.limits == {"cpu": "1500m", "memory": "3Gi"}
    env = {e.name: e for e in container.env}
    index = env[INDEX_ENV].value_from.field_ref.field_path
    assert index == f"metadata.annotations['{INDEX_ANNOTATION}']"
    for name in (TOKEN_ENV, "LAB_PULSAR_TOKEN"):
        ref = env[name].value_from.secret_key_ref
        assert (ref.name, ref.key) == ("bench-lab", name)
        assert env[name].value is None  # never a value in the manifest
    assert service.spec.selector == job.spec.template.metadata.labels


def test_worker_addresses_follow_the_pod_index() -> None:
    dep = WorkerDeployment(workers=2, name="w", namespace="perf")
    assert dep.addresses() == ["w-0.w.perf.svc:7070", "w-1.w.perf.svc:7070"]


def _pod(name: str, ready: bool, phase: str = "Running") -> Any:
    cond = SimpleNamespace(type="Ready", status="True" if ready else "False")
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, deletion_timestamp=None),
        status=SimpleNamespace(phase=phase, conditions=[cond]),
    )


class FakeApi:
    """CoreV1Api and BatchV1Api in one: records calls, pods get ready after two polls."""

    def __init__(self, fail_pod: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.polls = 0
        self.fail_pod = fail_pod

    def create_namespaced_service(self, ns: str, body: Any) -> None:
        self.calls.append(("create_service", body.metadata.name))

    def create_namespaced_job(self, ns: str, body: Any) -> None:
        self.calls.append(("create_job", body.spec.completions))

    def list_namespaced_pod(self, ns: str, label_selector: str) -> Any:
        self.polls += 1
        ready = self.polls > 2
        pods = [_pod("w-0", ready), _pod("w-1", ready, "Failed" if self.fail_pod else "Running")]
        return SimpleNamespace(items=pods)

    def delete_namespaced_job(self, name: str, ns: str, propagation_policy: str) -> None:
        self.calls.append(("delete_job", name))

    def delete_namespaced_service(self, name: str, ns: str) -> None:
        self.calls.append(("delete_service", name))


def test_run_creates_waits_and_always_deletes() -> None:
    api = FakeApi()
    dep = WorkerDeployment(workers=2, name="w")
    with workers_on_kubernetes(dep, lambda m: None, apis=(api, api), poll_s=0.01) as addrs:
        assert addrs == dep.addresses()
        assert api.polls == 3
    assert [c[0] for c in api.calls] == [
        "create_service",
        "create_job",
        "delete_job",
        "delete_service",
    ]
    failing = FakeApi(fail_pod=True)
    with (
        pytest.raises(KubernetesError, match="pod w-1 is Failed"),
        workers_on_kubernetes(dep, lambda m: None, apis=(failing, failing), poll_s=0.01),
    ):
        pass
    assert failing.calls[-2:] == [("delete_job", "w"), ("delete_service", "w")]


def test_pod_faults_delete_with_grace_period_zero_and_read_readiness() -> None:
    calls: list[tuple[Any, ...]] = []

    class Core:
        def delete_namespaced_pod(self, name: str, ns: str, **kw: Any) -> None:
            calls.append((name, ns, kw["grace_period_seconds"], kw["body"].grace_period_seconds))

        def read_namespaced_pod(self, name: str, ns: str) -> Any:
            return _pod(name, ready=name == "up")

    faults = PodFaults(KubernetesFaults(namespace="mq"), api=Core())
    faults.delete_pod("pulsar-broker-0")
    assert calls == [("pulsar-broker-0", "mq", 0, 0)]
    assert faults.pod_ready("up") and not faults.pod_ready("down")
