"""Which broker a cluster kill -9 step kills: one that serves the probe topic."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bench.runner import kill_recovery
from bench.runner.common import Creation

PORTS = {"pulsar/broker-1": 26650, "pulsar/broker-2": 26652}


def _ctx(events: list[tuple[str, Any]]) -> Any:
    specs = {
        name: SimpleNamespace(
            ports={"pulsar broker (binary)": port, "pulsar broker http": port + 1}
        )
        for name, port in PORTS.items()
    }
    infra = SimpleNamespace(
        endpoints=lambda broker: SimpleNamespace(admin_urls=["http://a", "http://b"]),
        specs=lambda: specs,
    )
    return SimpleNamespace(
        run_id="20261124-000000-abcdef",
        broker="pulsar",
        infra=infra,
        event=lambda kind, detail=None: events.append((kind, detail)),
    )


@pytest.mark.parametrize(
    ("owners", "want_victim", "warned"),
    [
        (["broker-2", "broker-1"], "pulsar/broker-1", False),  # broker-1 serves one: it dies
        (["broker-2"] * 16, "pulsar/broker-2", True),  # every bundle moved: kill the owner
        ([None] * 16, "pulsar/broker-1", True),  # lookups answered nothing usable
    ],
)
def test_the_killed_broker_serves_the_probe_topic(
    monkeypatch: pytest.MonkeyPatch, owners: list[str | None], want_victim: str, warned: bool
) -> None:
    answers = iter(owners + [owners[-1]] * 16)

    def lookup(url: str, timeout: float) -> Any:
        owner = next(answers)
        if owner is None:
            return None
        return {"brokerUrl": f"pulsar://127.0.0.1:{PORTS['pulsar/' + owner]}"}

    monkeypatch.setattr(kill_recovery, "http_get_json", lookup)
    monkeypatch.setattr(
        kill_recovery,
        "create_topics",
        lambda driver, names, concurrency: Creation(len(names), 0, 0.1, None),
    )
    events: list[tuple[str, Any]] = []
    topic, victim = kill_recovery._probe_topic_on_victim(
        _ctx(events),
        driver=None,
        victims=list(PORTS),
        prefix="k9p3",  # type: ignore[arg-type]
    )
    assert victim == want_victim
    assert topic.startswith("k9p3-")
    assert bool(events) == warned
    if owners[0] == "broker-2" and want_victim == "pulsar/broker-2":
        assert "killing pulsar/broker-2" in events[0][1]


def test_an_outage_longer_than_the_step_is_a_lower_bound() -> None:
    probe = kill_recovery.Probe(driver=None, topic="t", stats_topics=[])  # type: ignore[arg-type]
    killed = 1000.0
    # Acked before the kill, then only failures: no window, a lower bound up to the stop.
    probe.results = [(999.0, 999.01, True), (1000.5, 1030.5, False), (1001.0, 1031.0, False)]
    probe.stopped_at = 1040.0
    dead = killed + 0.05  # the kill returned once the process had exited
    assert probe.outage(killed, dead) is None
    assert probe.unavailable_at_least(killed, dead) == pytest.approx(40.0)
    # A send made between the signal and the exit, acknowledged by the dying broker: not the
    # service back (it gave an outage of 0.0 s with the broker back 8.4 s later).
    probe.results.append((1000.002, 1000.004, True))
    assert probe.outage(killed, dead) is None
    assert probe.unavailable_at_least(killed, dead) == pytest.approx(40.0)
    # A send made after the exit and acknowledged: the window, and no lower bound.
    probe.results.append((1012.0, 1012.3, True))
    assert probe.outage(killed, dead) == pytest.approx(12.3)
    assert probe.unavailable_at_least(killed, dead) is None
