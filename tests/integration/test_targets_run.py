"""Brokers the suite did not start, as a user runs them: a broker pair brought up separately
(its own infra directory, ports offset by PORT_OFFSET + 2000, Pulsar token authentication and
RocketMQ ACL on),
named in a targets file, run through `bench run --targets`; faults through `bench infra kill` /
`restart` as the target's commands; load on two `bench worker` servers on loopback ports.

One infra for the module, always brought down; every run is a CLI subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from bench.infra.manager import Infra
from bench.infra.topology import InfraSettings
from bench.targets.tokens import pulsar_token
from tests.integration.conftest import PORT_OFFSET, _created

OFFSET = PORT_OFFSET + 2000
WORKER_PORTS = (PORT_OFFSET + 2900, PORT_OFFSET + 2901)
SCENARIOS = Path(__file__).parent / "scenarios"
SECRET_KEY_ENV = "BENCH_T14_PULSAR_SECRET_KEY"
TOKEN_ENV = "BENCH_T14_PULSAR_TOKEN"
ACCESS_ENV = "BENCH_T14_RMQ_ACCESS_KEY"
SECRET_ENV = "BENCH_T14_RMQ_SECRET_KEY"
WORKER_TOKEN = "bench-t14-worker-token-0123456789"
SEND_STEP = "pulsar-sweep-send=async-conn=shared-rate=100"


def _bench() -> list[str]:
    return [sys.executable, "-m", "bench"]


def _targets_text(root: Path) -> str:
    infra = ", ".join(json.dumps(a) for a in [*_bench(), "infra", "--infra-dir", str(root)])
    return f"""\
schema_version: 1
targets:
  - name: t14-pulsar
    broker: pulsar
    service_url: pulsar://127.0.0.1:{6650 + OFFSET}
    admin_urls: [http://127.0.0.1:{8080 + OFFSET}]
    auth: {{token_env: {TOKEN_ENV}}}
    faults:
      processes:
        standalone: {{}}
      kill: [{infra}, kill, "pulsar/{{name}}"]
      restart: [{infra}, restart, "pulsar/{{name}}"]
  - name: t14-rocketmq
    broker: rocketmq
    namesrv: ["127.0.0.1:{9876 + OFFSET}"]
    grpc_endpoint: 127.0.0.1:{8081 + OFFSET}
    broker_addrs: {{broker-a: "127.0.0.1:{10911 + OFFSET}"}}
    auth: {{access_key_env: {ACCESS_ENV}, secret_key_env: {SECRET_ENV}}}
    faults:
      processes:
        broker-a: {{}}
      kill: [{infra}, kill, rocketmq/broker]
      restart: [{infra}, restart, rocketmq/broker]
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The broker pair, Pulsar with token authentication and RocketMQ with ACL (one account);
    the secrets live in this process's environment only (and so in its children's)."""
    key = os.urandom(32)
    token = pulsar_token(key, "bench-t14")
    saved = {n: os.environ.get(n) for n in (SECRET_KEY_ENV, TOKEN_ENV, ACCESS_ENV, SECRET_ENV)}
    os.environ[SECRET_KEY_ENV] = base64.b64encode(key).decode()
    os.environ[TOKEN_ENV] = token
    os.environ[ACCESS_ENV] = "bench-t14"
    os.environ[SECRET_ENV] = secrets.token_urlsafe(24)
    root = tmp_path_factory.mktemp("t14-infra")
    infra = Infra(root)
    _created.append(infra)  # the session's orphan guard checks it too
    work = tmp_path_factory.mktemp("t14-runs")
    targets = work / "targets.yaml"
    targets.write_text(_targets_text(root))
    try:
        infra.up(
            InfraSettings(
                port_offset=OFFSET,
                pulsar_token_secret_env=SECRET_KEY_ENV,
                rocketmq_acl_env=f"{ACCESS_ENV}:{SECRET_ENV}",
            ),
            fresh=True,
        )
        yield {
            "infra": infra,
            "targets": targets,
            "out": work / "runs",
            "secrets": [token, os.environ[SECRET_KEY_ENV], os.environ[SECRET_ENV]],
        }
    finally:
        infra.down(graceful=False)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(
    target: dict[str, Any], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    cmd = [
        *_bench(),
        "run",
        *args,
        "--targets",
        str(target["targets"]),
        "--out",
        str(target["out"]),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _run_dir(output: str) -> Path:
    line = next(x for x in output.splitlines() if x.startswith("run written to "))
    return Path(line.split()[3])


def _steps(run_dir: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(x) for x in (run_dir / "steps.jsonl").read_text().splitlines() if x]
    return {r["step_id"]: r for r in rows}


def _no_secret_in(paths: list[Path], secrets: list[str]) -> None:
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        assert files, f"nothing to search in {root}"
        for f in files:
            data = f.read_bytes()
            for s in secrets:
                assert s.encode() not in data, f"a secret is written in {f}"


KIND_STEPS = [
    SEND_STEP,
    "rocketmq-fanout=1",
    "pulsar-mode=create_under_load-bundles=4-topics=50",
    # kill -9 through the target's commands: RocketMQ's broker restarts in seconds; the Pulsar
    # standalone takes a minute to come back here, too long for every CI run.
    "rocketmq-path=direct-restart=supervised-route_refresh_s=20-rep=1",
]


@pytest.fixture(scope="module")
def kinds_run(target: dict[str, Any]) -> Path:
    """One small step of each scenario kind on the target, with local workers (the default
    engine: the JVM worker, which reads the Pulsar token from its environment)."""
    files = [
        *(str(SCENARIOS / f) for f in ("send-frequency.yaml", "subscribe-frequency.yaml")),
        str(SCENARIOS / "topic-growth.yaml"),
        # The smallest kill -9 step: one topic, a short observation after the restart.
        str(Path(__file__).parent / "targets" / "kill-9-recovery.yaml"),
    ]
    only = [a for s in KIND_STEPS for a in ("--only", f"step_id={s}")]
    done = _run(target, *files, *only, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return _run_dir(done.stdout)


def test_one_step_of_each_kind_runs_on_the_target(target: dict[str, Any], kinds_run: Path) -> None:
    run_dir, steps = kinds_run, KIND_STEPS
    records = _steps(run_dir)
    assert set(records) == set(steps)
    for r in records.values():
        assert r["status"] == "ok", (r["step_id"], r["error"])
        assert r["params"]["infra"]["target"] in ("t14-pulsar", "t14-rocketmq")
    kill = records["rocketmq-path=direct-restart=supervised-route_refresh_s=20-rep=1"]
    assert kill["loss"]["lost"] == 0
    assert kill["metrics"]["restarted_at"] > kill["metrics"]["killed_at"]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    (ev,) = [e for e in events if e["kind"] == "kill"]
    assert ev["detail"]["via"] == "command" and ev["detail"]["process"] == "rocketmq/broker-a"
    assert not [e for e in events if e["kind"] in ("infra_up", "infra_down")]
    meta = json.loads((run_dir / "run.json").read_text())["metadata"]
    assert meta["broker_versions"] == {"pulsar": "4.0.8", "rocketmq": "V5_3_3"}
    assert meta["targets"]["pulsar"]["login"] == {"method": "token", "variables": [TOKEN_ENV]}
    assert meta["targets"]["rocketmq"]["login"] == {
        "method": "acl",
        "variables": [ACCESS_ENV, SECRET_ENV],
    }
    report = target["out"] / "report.html"
    rep = subprocess.run(
        [*_bench(), "report", str(run_dir), "-o", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rep.returncode in (0, 1) and report.is_file(), rep.stderr
    logs = [target["infra"].root / b / "logs" for b in ("pulsar", "rocketmq")]
    # RocketMQ's own logs (rocketmqlogs under each process's user.home): the broker and proxy
    # log requests, the account store's creation and authentication failures there.
    logs += sorted((target["infra"].root / "rocketmq" / "data").glob("*/logs"))
    _no_secret_in([run_dir, report, *logs], target["secrets"])


def _refused(target: dict[str, Any], broker: str, env: dict[str, str]) -> str:
    """A run on ``broker`` with the credentials in ``env``: its one error line (exit 2, soon)."""
    started = time.monotonic()
    done = subprocess.run(
        [
            *(*_bench(), "run", str(SCENARIOS / "send-frequency.yaml"), "--broker", broker),
            *("--targets", str(target["targets"]), "--out", str(target["out"])),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    for s in target["secrets"]:
        assert s not in line
    return line


def test_a_wrong_token_is_one_line_naming_the_target(target: dict[str, Any]) -> None:
    env = {**os.environ, TOKEN_ENV: pulsar_token(b"w" * 32, "bench-t14")}
    line = _refused(target, "pulsar", env)
    assert line.startswith("bench: error: target t14-pulsar: the pulsar broker refused the ")
    assert f"${TOKEN_ENV}" in line and "HTTP 401" in line
    assert env[TOKEN_ENV] not in line


def test_a_wrong_rocketmq_key_is_one_line_naming_the_target(target: dict[str, Any]) -> None:
    env = {**os.environ, SECRET_ENV: "wrong-" + secrets.token_urlsafe(18)}
    line = _refused(target, "rocketmq", env)
    assert line.startswith("bench: error: target t14-rocketmq: the rocketmq broker refused the ")
    assert f"${ACCESS_ENV}, ${SECRET_ENV}" in line
    assert env[SECRET_ENV] not in line


@pytest.fixture
def workers(target: dict[str, Any], tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "BENCH_WORKER_TOKEN": WORKER_TOKEN}
    logs = [(tmp_path / f"worker-{port}.log").open("wb") for port in WORKER_PORTS]
    procs = [
        subprocess.Popen(
            [*_bench(), "worker", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for port, log in zip(WORKER_PORTS, logs, strict=True)
    ]
    try:
        deadline = time.monotonic() + 30
        for port in WORKER_PORTS:
            while not any(
                c.laddr and c.laddr.port == port and c.status == "LISTEN"
                for c in psutil.net_connections("tcp")
            ):
                assert time.monotonic() < deadline, f"bench worker on {port} did not listen"
                time.sleep(0.2)
        yield procs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for log in logs:
            log.close()


def _remote(*args: str) -> list[str]:
    addrs = ",".join(f"127.0.0.1:{p}" for p in WORKER_PORTS)
    return ["--workers", addrs, *args]


def test_a_run_across_two_remote_workers_matches_a_local_one(
    target: dict[str, Any], kinds_run: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    os.environ["BENCH_WORKER_TOKEN"] = WORKER_TOKEN
    try:
        sf = str(SCENARIOS / "send-frequency.yaml")
        remote = _run(target, sf, *_remote("--only", f"step_id={SEND_STEP}"))
    finally:
        os.environ.pop("BENCH_WORKER_TOKEN", None)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    a = _steps(kinds_run)[SEND_STEP]
    b = _steps(_run_dir(remote.stdout))[SEND_STEP]
    assert a["status"] == b["status"] == "ok"
    assert set(a["metrics"]) == set(b["metrics"])
    assert set(a["loss"]) == set(b["loss"])
    assert a["loss"]["lost"] == b["loss"]["lost"] == 0
    # 100 msg/s for 6 s measured, acknowledged and received once, either way.
    for r in (a, b):
        assert r["loss"]["acked"] == r["loss"]["received"] >= 500
    meta = json.loads((_run_dir(remote.stdout) / "run.json").read_text())["metadata"]
    assert [w["address"] for w in meta["workers"]["workers"]] == [
        f"127.0.0.1:{p}" for p in WORKER_PORTS
    ]
    assert all(abs(w["offset_ms"]) < 50 for w in meta["workers"]["workers"])
    for name, r in (("local", a), ("remote", b)):
        m = r["metrics"]
        print(f"\n{name}: {json.dumps({k: m.get(k) for k in sorted(m)})} loss {r['loss']}")


def test_a_worker_killed_mid_step_fails_that_step_only(
    target: dict[str, Any], workers: list[subprocess.Popen[bytes]]
) -> None:
    env = {**os.environ, "BENCH_WORKER_TOKEN": WORKER_TOKEN}
    sf = str(SCENARIOS / "send-frequency.yaml")
    steps = [SEND_STEP, "pulsar-sweep-send=async-conn=shared-rate=1000"]
    cmd = [*_bench(), "run", sf, "--engine", "python", "--targets", str(target["targets"])]
    cmd += ["--out", str(target["out"]), *_remote()]
    cmd += [a for s in steps for a in ("--only", f"step_id={s}")]
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = psutil.Process(workers[1].pid)
        deadline = time.monotonic() + 90
        while not server.children():
            assert time.monotonic() < deadline, "the run never reached the second worker"
            time.sleep(0.2)
        time.sleep(5)  # mid-step: set up, producing
        for child in server.children():
            child.kill()
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert run.returncode == 1, out + err
    records = _steps(_run_dir(out))
    first, second = records[steps[0]], records[steps[1]]
    assert first["status"] == "failed"
    assert "remote worker w1 (bench worker at 127.0.0.1:" in first["error"]
    assert "disconnected" in first["error"]
    assert second["status"] == "ok", second["error"]
    assert second["loss"]["lost"] == 0
