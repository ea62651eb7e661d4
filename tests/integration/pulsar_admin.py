"""Reading a test broker's Pulsar state through its admin REST API."""

from __future__ import annotations

import json
import urllib.request

from bench.drivers.pulsar import PulsarDriver
from bench.infra.topology import Endpoints


def subscriptions(ep: Endpoints, topic: str) -> set[str]:
    """The subscriptions the broker holds on ``topic`` (a name in the driver's namespace)."""
    with PulsarDriver(ep) as driver:
        full = driver.full_name(topic).split("://", 1)[1]
    url = f"{ep.admin_urls[0]}/admin/v2/persistent/{full}/subscriptions"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return set(json.load(resp))


def topics(ep: Endpoints) -> set[str]:
    """The persistent topics of the driver's namespace, as short names."""
    with PulsarDriver(ep) as driver:
        namespace = driver.full_name("x").split("://", 1)[1].rsplit("/", 1)[0]
    url = f"{ep.admin_urls[0]}/admin/v2/persistent/{namespace}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return {name.rsplit("/", 1)[1] for name in json.load(resp)}
