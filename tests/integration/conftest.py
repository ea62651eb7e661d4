"""Integration tests run against real brokers that bench.infra starts and always stops.

Every infra a test creates goes through ``make_infra``; at the end of the session the guard
checks that none of their processes is alive and none of their ports is held, and that no JVM
whose command line points into this session's temp dirs survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from bench.infra.manager import Infra
from bench.infra.ports import wait_closed
from bench.infra.topology import Broker, InfraSettings

# Far from the defaults so a user's own `bench infra up` and these tests never collide.
PORT_OFFSET = int(os.environ.get("BENCH_TEST_PORT_OFFSET", "10000"))

_created: list[Infra] = []

SCENARIO_DIR = Path(os.environ.get("BENCH_TEST_SCENARIO_DIR", "tests/integration/scenarios"))
QUICK_RUN_PORT_OFFSET = PORT_OFFSET + 6000
QUICK_RUN_TIMEOUT_S = 1800.0
_wants_quick_run = False


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


def pytest_collection_finish(session: pytest.Session) -> None:
    global _wants_quick_run
    _wants_quick_run = not os.environ.get("BENCH_TEST_QUICK_RUN_DIR") and any(
        "quick_run" in getattr(item, "fixturenames", ()) for item in session.items
    )


class BackgroundRun:
    """`bench run` of the tiny scenario set, started with the first integration test and
    running beside the others (it mostly waits on brokers: kills, restarts, timeouts). Its
    ports (offset QUICK_RUN_PORT_OFFSET) are apart from every other test's."""

    def __init__(self, out: Path, infra_root: Path, log: Path) -> None:
        self.out, self.log = out, log
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench",
                    "run",
                    *map(str, sorted(SCENARIO_DIR.glob("*.yaml"))),
                    "--profile",
                    "quick",
                    "--out",
                    str(out),
                    "--infra-dir",
                    str(infra_root),
                    "--port-offset",
                    str(QUICK_RUN_PORT_OFFSET),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own SIGINT/SIGTERM handling stops its brokers; it gets them from stop().
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    def wait(self) -> Path:
        """The run directory once `bench run` has ended (exit 0 or 1: the tests judge the
        steps); fails with the end of its output otherwise."""
        try:
            code = self.proc.wait(QUICK_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            code = None
        runs = sorted(self.out.glob("*/run.json"))
        tail = self.log.read_text(errors="replace")[-4000:]
        assert code in (0, 1) and runs, f"bench run ended with {code}:\n{tail}"
        return runs[-1].parent

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # stops its load and its brokers
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="session", autouse=True)
def background_quick_run(
    tmp_path_factory: pytest.TempPathFactory, no_orphans: None
) -> Iterator[BackgroundRun | None]:
    # After no_orphans is set up, so it is stopped before no_orphans looks for leftovers.
    if not _wants_quick_run:
        yield None
        return
    base = tmp_path_factory.mktemp("quick-run")
    run = BackgroundRun(base / "runs", base / "infra", base / "bench-run.log")
    started = time.monotonic()
    try:
        yield run
    finally:
        run.stop()
        print(f"\nbackground quick run: {time.monotonic() - started:.0f} s, log {run.log}")


def _shared(
    tmp_path_factory: pytest.TempPathFactory, broker: Broker, offset: int, *, proxy: bool = False
) -> Iterator[Infra]:
    infra = Infra(tmp_path_factory.mktemp(f"shared-{broker}"))
    _created.append(infra)
    try:
        infra.up(
            InfraSettings(brokers=(broker,), port_offset=PORT_OFFSET + offset, proxy=proxy),
            fresh=True,
        )
        yield infra
    finally:
        infra.down(graceful=False)


# One standalone broker of each type for every module that needs a plain one (drivers, JVM
# worker, remoting, pull consumer): tests name their topics and groups uniquely, and a test
# that kills the broker restarts it before it ends.
@pytest.fixture(scope="session")
def shared_pulsar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    yield from _shared(tmp_path_factory, "pulsar", 300, proxy=True)  # the proxy path too


@pytest.fixture(scope="session")
def shared_rocketmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    yield from _shared(tmp_path_factory, "rocketmq", 400)


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
        # Temp dirs: nothing to keep. `bench infra down` (graceful) is run on real brokers by
        # test_kill_9_of_bench_run_leaves_nothing_the_next_command_does_not_stop.
        infra.down(graceful=False)


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
