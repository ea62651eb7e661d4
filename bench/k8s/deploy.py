"""``bench run --k8s``: create the workers' Service and Indexed Job, wait until every pod is
ready, hand their addresses to the run, and delete both afterwards, whatever happens."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.errors import BenchError, EnvironmentProblem
from bench.k8s.client import kubernetes, load_config
from bench.k8s.manifests import WorkerDeployment, build

READY_TIMEOUT_S = 300.0


class KubernetesError(BenchError):
    """The Kubernetes API refused or the workers did not become ready."""


def _apis() -> tuple[Any, Any]:
    load_config()
    client = kubernetes().client
    return client.CoreV1Api(), client.BatchV1Api()


def _pods_ready(core: Any, dep: WorkerDeployment) -> tuple[int, list[str]]:
    """How many of the Job's pods are Ready, and the problems seen (failed pods)."""
    pods = core.list_namespaced_pod(dep.namespace, label_selector=f"job-name={dep.name}")
    ready, problems = 0, []
    for pod in pods.items:
        phase = pod.status.phase if pod.status else None
        if phase in ("Failed", "Succeeded"):
            problems.append(f"pod {pod.metadata.name} is {phase}")
        conditions = (pod.status.conditions if pod.status else None) or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            ready += 1
    return ready, problems


@contextmanager
def workers_on_kubernetes(
    dep: WorkerDeployment,
    message: Callable[[str], None],
    *,
    apis: tuple[Any, Any] | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    poll_s: float = 2.0,
) -> Iterator[list[str]]:
    """Create ``dep``'s Service and Job, wait for every pod to be Ready, yield the workers'
    addresses (shard order); delete both when the block ends."""
    core, batch = apis if apis is not None else _apis()
    service, job = build(dep)
    api_exc = kubernetes().client.ApiException
    try:
        core.create_namespaced_service(dep.namespace, service)
        batch.create_namespaced_job(dep.namespace, job)
    except api_exc as exc:
        _delete(core, batch, dep)
        raise KubernetesError(
            f"creating the workers in namespace {dep.namespace}: HTTP {exc.status} {exc.reason}"
        ) from None
    try:
        deadline = time.monotonic() + timeout_s
        message(f"waiting for {dep.workers} worker pod(s) of job {dep.name}")
        while True:
            ready, problems = _pods_ready(core, dep)
            if problems:
                raise KubernetesError("worker pods failed: " + "; ".join(problems))
            if ready >= dep.workers:
                break
            if time.monotonic() >= deadline:
                raise KubernetesError(
                    f"{ready}/{dep.workers} worker pods ready after {timeout_s:.0f} s"
                )
            time.sleep(poll_s)
        yield dep.addresses()
    finally:
        _delete(core, batch, dep)
        message(f"deleted job {dep.name} and its service")


def _delete(core: Any, batch: Any, dep: WorkerDeployment) -> None:
    api_exc = kubernetes().client.ApiException
    try:
        batch.delete_namespaced_job(dep.name, dep.namespace, propagation_policy="Foreground")
    except api_exc as exc:
        if exc.status != 404:
            raise EnvironmentProblem(f"deleting job {dep.name}: HTTP {exc.status}") from None
    try:
        core.delete_namespaced_service(dep.name, dep.namespace)
    except api_exc as exc:
        if exc.status != 404:
            raise EnvironmentProblem(f"deleting service {dep.name}: HTTP {exc.status}") from None
