"""bench.engines.jvm without Maven or a broker: the build stamp, the argv, clear errors."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.engines import jvm
from bench.errors import ArtifactError
from bench.infra.java import JavaRuntime

REAL = Path(jvm.__file__).resolve().parents[2] / "engines" / "jvm"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the worker's sources (no target/) standing in for engines/jvm."""
    root = tmp_path / "engines" / "jvm"
    root.mkdir(parents=True)
    shutil.copy(REAL / "pom.xml", root / "pom.xml")
    shutil.copytree(REAL / "src", root / "src")
    monkeypatch.setattr(jvm, "engine_dir", lambda: root)
    monkeypatch.setattr(jvm, "find_java", lambda: JavaRuntime("/opt/java/bin/java", 17, "17"))
    return root


def _fake_build(root: Path, jar: Path) -> None:
    """What a successful Maven run leaves behind."""
    target = root / "target"
    (target / "classes" / "bench" / "worker").mkdir(parents=True, exist_ok=True)
    (target / "classes" / "bench" / "worker" / "Main.class").write_bytes(b"")
    (target / "classpath.txt").write_text(str(jar))


def test_argv_starts_the_main_class() -> None:
    worker = jvm.JvmWorker("/usr/bin/java", "/a.jar:/b.jar")
    argv = worker.argv()
    assert argv[0] == "/usr/bin/java"
    assert argv[-3:] == ["-cp", "/a.jar:/b.jar", "bench.worker.Main"]
    assert any(flag.startswith("-Xmx") for flag in argv)


def test_source_hash_follows_every_source(project: Path) -> None:
    before = jvm.source_hash(project)
    assert jvm.source_hash(project) == before
    main = project / "src" / "main" / "java" / "bench" / "worker" / "Main.java"
    main.write_text(main.read_text() + "\n// edited\n")
    assert jvm.source_hash(project) != before


def test_builds_once_then_reuses(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jar = tmp_path / "dep.jar"
    jar.write_bytes(b"")
    calls: list[list[str]] = []

    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        _fake_build(project, jar)
        return subprocess.CompletedProcess(cmd, 0, "BUILD SUCCESS", "")

    monkeypatch.setattr(jvm.shutil, "which", lambda _: "/usr/bin/mvn")
    monkeypatch.setattr(jvm.subprocess, "run", run)
    messages: list[str] = []
    first = jvm.ensure_built(messages.append)
    assert len(calls) == 1 and messages
    assert "-s" in calls[0] and any(a.startswith("-Dmaven.repo.local=") for a in calls[0])
    assert first.classpath.split(":") == [str(project / "target" / "classes"), str(jar)]
    second = jvm.ensure_built()
    assert len(calls) == 1 and second.classpath == first.classpath
    # An edited source is rebuilt.
    (project / "src" / "main" / "java" / "bench" / "worker" / "New.java").write_text("class New {}")
    jvm.ensure_built()
    assert len(calls) == 2


def test_missing_maven_is_one_clear_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jvm.shutil, "which", lambda _: None)
    with pytest.raises(ArtifactError, match=r"Maven \(mvn\) is not on PATH"):
        jvm.ensure_built()


def test_failed_build_shows_maven_tail(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = "[INFO] stuff\n[ERROR] Worker.java:[12,5] cannot find symbol\n[ERROR] BUILD FAILURE\n"

    def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, output, "")

    monkeypatch.setattr(jvm.shutil, "which", lambda _: "/usr/bin/mvn")
    monkeypatch.setattr(jvm.subprocess, "run", run)
    with pytest.raises(ArtifactError, match="cannot find symbol") as info:
        jvm.ensure_built()
    assert "\n" not in str(info.value)
    assert not (project / "target" / "bench-build.stamp").exists()


def test_missing_sources_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jvm, "project_infra_dir", lambda: tmp_path / "infra")
    with pytest.raises(ArtifactError, match="sources are missing"):
        jvm.engine_dir()


def test_an_open_loop_worker_compiles_for_start_up_a_closed_loop_one_for_peak() -> None:
    w = jvm.JvmWorker(java="/usr/bin/java", classpath="/x.jar")
    assert "-XX:TieredStopAtLevel=1" in w.argv(open_loop=True)
    assert "-XX:TieredStopAtLevel=1" not in w.argv()
    assert w.argv(open_loop=True)[-3:] == w.argv()[-3:] == ["-cp", "/x.jar", jvm.MAIN_CLASS]


def test_a_pool_compiles_for_start_up_at_a_fixed_rate_unless_told_to_measure_a_peak() -> None:
    from bench.engines.pool import WorkerPool
    from tests.unit.test_worker import _spec

    at_rate, closed = _spec("w0", ["t"], rate_per_s=100.0), _spec("w1", ["t"], rate_per_s=None)
    assert WorkerPool("jvm")._open_loop(at_rate) and not WorkerPool("jvm")._open_loop(closed)
    assert not WorkerPool("jvm", peak=True)._open_loop(at_rate)
