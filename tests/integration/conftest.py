"""Integration tests run against real brokers that bench.infra starts and always stops.

Every infra a test creates goes through ``make_infra``; at the end of the session the guard
checks that none of their processes is alive and none of their ports is held, and that no JVM
whose command line points into this session's temp dirs survives.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from bench.infra.manager import Infra
from bench.infra.ports import wait_closed

# Far from the defaults so a user's own `bench infra up` and these tests never collide.
PORT_OFFSET = int(os.environ.get("BENCH_TEST_PORT_OFFSET", "10000"))

_created: list[Infra] = []


def _sigterm_is_interrupt(signum: int, frame: object) -> None:
    # A CI runner or a user stopping the suite with SIGTERM must still run fixture teardown,
    # which is what stops the brokers.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _sigterm_is_interrupt)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    nightly = os.environ.get("BENCH_NIGHTLY") == "1"
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("nightly") and not nightly:
            # `make test` stays within its time budget; the nightly job runs these
            # (BENCH_NIGHTLY=1) on the machine time it has anyway.
            item.add_marker(pytest.mark.skip(reason="nightly only (BENCH_NIGHTLY=1 runs it)"))


@pytest.fixture
def make_infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Infra]]:
    """Create Infra objects in temp dirs; every one is brought down after the test."""
    mine: list[Infra] = []

    def make(name: str) -> Infra:
        infra = Infra(tmp_path_factory.mktemp(name))
        mine.append(infra)
        _created.append(infra)
        return infra

    yield make
    for infra in mine:
        infra.down()


@pytest.fixture(scope="session", autouse=True)
def no_orphans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    base = str(tmp_path_factory.getbasetemp())
    yield
    leftovers = []
    for infra in _created:
        alive = [n for n, r in infra.records().items() if r.alive()]
        if alive:
            leftovers.append(f"{infra.root}: {alive}")
            infra.down()
        ports = [p for s in infra.specs().values() for p in s.ports.values()]
        busy = wait_closed(ports, 10)
        if busy:
            leftovers.append(f"{infra.root}: ports {busy} still held")
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "java" in (proc.info["name"] or "") and base in cmd:
            leftovers.append(f"JVM pid {proc.info['pid']} from this session still runs")
    assert not leftovers, "integration tests left brokers behind: " + "; ".join(leftovers)
