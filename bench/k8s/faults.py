"""kill -9 of a broker pod through the Kubernetes API: delete it with grace period 0.

The StatefulSet recreates the pod and its readiness (and liveness) probes say when it serves
again: that is the ``supervised`` restart policy on Kubernetes.
"""

from __future__ import annotations

from typing import Any

from bench.errors import BrokerUnavailable
from bench.k8s.client import kubernetes, load_config
from bench.targets.model import KubernetesFaults


class PodFaults:
    """Deletes and inspects pods of one namespace."""

    def __init__(self, settings: KubernetesFaults, api: Any = None) -> None:
        self.namespace = settings.namespace
        if api is None:
            load_config(settings.kubeconfig)
            api = kubernetes().client.CoreV1Api()
        self.api = api

    def delete_pod(self, pod: str) -> None:
        """Delete ``pod`` at once (grace period 0: the container gets SIGKILL)."""
        k8s = kubernetes()
        try:
            self.api.delete_namespaced_pod(
                pod,
                self.namespace,
                grace_period_seconds=0,
                body=k8s.client.V1DeleteOptions(grace_period_seconds=0),
            )
        except k8s.client.ApiException as exc:
            raise BrokerUnavailable(
                f"deleting pod {self.namespace}/{pod}: HTTP {exc.status} {exc.reason}"
            ) from None

    def pod_ready(self, pod: str) -> bool:
        """True when ``pod`` exists, is not being deleted and its Ready condition is True."""
        k8s = kubernetes()
        try:
            obj = self.api.read_namespaced_pod(pod, self.namespace)
        except k8s.client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if obj.metadata.deletion_timestamp is not None:
            return False
        conditions = (obj.status.conditions if obj.status else None) or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)
