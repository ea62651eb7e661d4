"""The optional ``kubernetes`` client, imported lazily with one clear error when missing."""

from __future__ import annotations

from typing import Any

from bench.errors import EnvironmentProblem


def kubernetes() -> Any:
    """The ``kubernetes`` package; :class:`EnvironmentProblem` when it is not installed."""
    try:
        import kubernetes as k8s
    except ImportError:
        raise EnvironmentProblem(
            "the Kubernetes client is not installed: pip install 'bench[k8s]'"
        ) from None
    return k8s


def load_config(kubeconfig: str | None = None) -> None:
    """In-cluster configuration when running in a pod, else ``kubeconfig`` (or the default)."""
    config = kubernetes().config
    if kubeconfig is None:
        try:
            config.load_incluster_config()
            return
        except config.ConfigException:
            pass
    try:
        config.load_kube_config(config_file=kubeconfig)
    except Exception as exc:
        raise EnvironmentProblem(f"no Kubernetes configuration: {exc}") from None
