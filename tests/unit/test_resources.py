"""Resource sampling of real processes (this one and a child started here) and GC log parsing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from bench.metrics.resources import CpuMeter, ResourceSampler, gc_pause_ms
from bench.runner.measure import StepMeter, client_bound


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_samples_own_and_child_process_and_notices_death(child: subprocess.Popen[bytes]) -> None:
    sampler = ResourceSampler({"self": os.getpid(), "child": child.pid})
    busy(0.3)
    rows = {r["name"]: r for r in sampler.sample()}
    assert set(rows) == {"self", "child", "host"}
    me = rows["self"]
    assert me["alive"] is True and me["pid"] == os.getpid()
    assert me["cpu_percent"] > 20  # we just spun a core
    assert me["rss_bytes"] > 10 * 2**20
    assert me["threads"] >= 1
    assert rows["child"]["alive"] is True and rows["child"]["cpu_percent"] >= 0.0
    with open(os.devnull) as f1, open(os.devnull) as f2, open(os.devnull) as f3:
        opened = {r["name"]: r for r in sampler.sample()}["self"]["open_files"]
        assert (f1, f2, f3) and opened == me["open_files"] + 3

    child.kill()
    child.wait(10)
    rows = {r["name"]: r for r in sampler.sample()}
    assert rows["child"]["alive"] is False
    assert rows["child"]["rss_bytes"] is None
    assert rows["self"]["alive"] is True


def test_unreaped_zombie_reads_as_dead(child: subprocess.Popen[bytes]) -> None:
    # A broker killed with -9 stays a zombie until its parent reaps it.
    sampler = ResourceSampler({"child": child.pid})
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.01)
    (row, _host) = sampler.sample()
    assert (row["name"], row["alive"], row["threads"]) == ("child", False, None)


def test_unknown_pid_reads_as_dead_and_watch_replaces_pid(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait(10)
    sampler = ResourceSampler({"broker": child.pid})
    assert sampler.sample()[0]["alive"] is False
    sampler.watch("broker", os.getpid())  # restarted under a new PID
    row = sampler.sample()[0]
    assert (row["alive"], row["pid"]) == (True, os.getpid())


def test_host_row_counts_loopback_traffic() -> None:
    sampler = ResourceSampler({})
    payload = b"x" * (4 * 2**20)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        received = 0

        def drain() -> None:
            nonlocal received
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(1 << 16):
                    received += len(chunk)

        t = threading.Thread(target=drain)
        t.start()
        with socket.create_connection(("127.0.0.1", port)) as client:
            for _ in range(5):
                client.sendall(payload)
        t.join(30)
    assert received == 5 * len(payload)
    (host,) = sampler.sample()
    assert host["kind"] == "host"
    lo_bytes = host["net_if_bytes_per_s"]["lo"] * host["interval_s"]
    # 20 MiB sent and the same 20 MiB received on lo.
    assert lo_bytes >= 2 * 5 * len(payload)
    assert host["net_bytes_per_s"] >= host["net_if_bytes_per_s"]["lo"]
    assert host["disk_write_bytes_per_s"] is None or host["disk_write_bytes_per_s"] >= 0


def test_host_row_reports_cpu_busy_share_of_all_cores() -> None:
    sampler = ResourceSampler({})
    busy(0.5)
    (host,) = sampler.sample()
    # One thread spinning on an N-core host: at least a fraction of 1/N busy, never above 100.
    assert host["cpu_percent"] is not None
    assert 100.0 / (os.cpu_count() or 1) * 0.3 <= host["cpu_percent"] <= 100.0


def test_background_thread_collects_rows_until_stopped() -> None:
    sampler = ResourceSampler({"self": os.getpid()}, interval_s=0.05)
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    time.sleep(0.5)
    rows = sampler.stop()
    assert 3 <= len([r for r in rows if r["name"] == "self"]) <= 12
    assert len(rows) % 2 == 0  # one process row and one host row per sample
    time.sleep(0.2)
    assert sampler.rows() == rows  # nothing is added after stop()
    with pytest.raises(RuntimeError):
        sampler.stop()


GC_LOG = """\
[0.012s][info][gc] Using G1
[2.345s][info][gc] GC(3) Pause Young (Normal) (G1 Evacuation Pause) 24M->8M(256M) 3.456ms
[2.400s][info][gc,start    ] GC(4) Pause Young (Concurrent Start) (G1 Humongous Allocation)
[2.402s][info][gc          ] GC(4) Pause Young (Concurrent Start) (G1 Humongous Allocation) \
30M->9M(256M) 1.500ms
[2.402s][info][gc          ] GC(5) Concurrent Mark Cycle
[2.450s][info][gc,phases   ] GC(4)   Evacuate Collection Set: 1.2ms
[2.480s][info][gc          ] GC(5) Pause Remark 12M->12M(256M) 0.044ms
[2.490s][info][gc          ] GC(5) Pause Cleanup 12M->12M(256M) 0.010ms
[2.500s][info][gc          ] GC(5) Concurrent Mark Cycle 98.000ms
[9.000s][info][gc          ] GC(6) Pause Full (System.gc()) 40M->20M(256M) 45.000ms
"""


def test_gc_pause_ms_sums_pauses_only(tmp_path: Path) -> None:
    log = tmp_path / "gc.log"
    log.write_text(GC_LOG)
    assert gc_pause_ms(log) == pytest.approx(3.456 + 1.5 + 0.044 + 0.010 + 45.0)
    with pytest.raises(FileNotFoundError):
        gc_pause_ms(tmp_path / "missing.log")


def test_cpu_meter_separates_a_busy_group_from_an_idle_one(child: subprocess.Popen[bytes]) -> None:
    with CpuMeter(interval_s=0.05) as cpu:
        cpu.watch("busy", os.getpid())
        cpu.watch("idle", child.pid)
        cpu.watch("gone", 2**22 + 12345)  # no such process: left out, not an error
        t0 = time.monotonic()
        busy(0.6)
        t1 = time.monotonic()
        time.sleep(0.1)
    busy_cores = cpu.cores("busy", t0, t1)
    idle_cores = cpu.cores("idle", t0, t1)
    assert busy_cores is not None and idle_cores is not None
    # The spinning thread keeps up to a core busy (less on a loaded machine), the sleeping child
    # next to none: compared with each other, not with a wall-clock expectation.
    assert busy_cores > 0.05
    assert idle_cores < busy_cores / 3
    assert cpu.cores("gone", t0, t1) is None
    assert cpu.cores("nobody", t0, t1) is None


def test_cpu_meter_keeps_the_last_reading_of_a_process_that_exits() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.monotonic() + 0.4\nwhile time.monotonic() < end: pass",
        ]
    )
    with CpuMeter(interval_s=0.05) as cpu:
        cpu.watch("spin", proc.pid)
        t0 = time.monotonic()
        proc.wait(10)
        time.sleep(0.3)
        t1 = time.monotonic()
    cores = cpu.cores("spin", t0, t1)
    assert cores is not None and cores > 0  # readings before the exit still count


def test_cpu_meter_window_before_any_reading_is_unknown() -> None:
    with CpuMeter(interval_s=0.05) as cpu:
        t0 = time.monotonic() - 5.0
        cpu.watch("me", os.getpid())
        time.sleep(0.15)
    assert cpu.cores("me", t0 - 1.0, t0) is None


@pytest.mark.parametrize(
    ("host", "client", "broker", "expected"),
    [
        (95.0, 110.0, 80.0, True),  # saturated, our workers took more than the broker
        (95.0, 60.0, 120.0, True),  # saturated, workers a third of what was used
        (95.0, 20.0, 170.0, False),  # saturated by the broker: the broker's limit
        (60.0, 110.0, 10.0, False),  # not saturated: nobody was starved
        (None, 110.0, 80.0, None),
        (95.0, None, 80.0, None),
    ],
)
def test_client_bound_rule(
    host: float | None, client: float | None, broker: float | None, expected: bool | None
) -> None:
    assert client_bound(host, client, broker) is expected


def test_step_resources_split_broker_and_worker_cpu() -> None:
    meter = StepMeter("s", "step", "pulsar", warmup_s=0)
    rows = (
        [
            {
                "kind": "process",
                "ts_ns": t,
                "name": "pulsar/standalone",
                "alive": True,
                "cpu_percent": 80.0,
                "rss_bytes": 1,
                "threads": 1,
                "open_files": 1,
            }
            for t in (1_000_000_000, 2_000_000_000)
        ]
        + [
            {
                "kind": "process",
                "ts_ns": t,
                "name": f"worker/w{i}",
                "alive": True,
                "cpu_percent": 55.0,
                "rss_bytes": 1,
                "threads": 1,
                "open_files": 1,
            }
            for t in (1_000_000_000, 2_000_000_000)
            for i in range(2)
        ]
        + [
            {
                "kind": "host",
                "ts_ns": t,
                "net_bytes_per_s": 0.0,
                "disk_write_bytes_per_s": 0.0,
                "cpu_percent": 96.0,
            }
            for t in (1_000_000_000, 2_000_000_000)
        ]
    )
    m = meter.resource_metrics(rows, {"start": 0.5, "end": 2.5}, ["pulsar/standalone"])
    assert m["broker_cpu_pct"] == pytest.approx(80.0)
    assert m["client_cpu_pct"] == pytest.approx(110.0)
    assert m["host_cpu_pct"] == pytest.approx(96.0)
    assert m["client_bound"] is True
