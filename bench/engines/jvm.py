"""The JVM worker (``engines/jvm``): built with Maven on first use, started as a plain ``java``.

The worker speaks ``docs/worker-protocol.md`` on the brokers' official Java clients. Its POM
resolves from Maven Central only (``infra/maven/settings.xml``) into the suite's Maven cache,
``$BENCH_HOME/m2``, like the broker jars (:mod:`bench.infra.artifacts`). The build goes to
``engines/jvm/target`` (git-ignored): compiled classes and the dependency classpath, with a stamp
holding a hash of the POM, the settings and every source file, so an unchanged worker is never
rebuilt and any edit rebuilds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ArtifactError
from bench.infra.java import find_java
from bench.infra.paths import bench_home, project_infra_dir

MAIN_CLASS = "bench.worker.Main"
BUILD_TIMEOUT_S = 1500
JVM_FLAGS: tuple[str, ...] = (
    # A worker holds ledgers (ranges) and in-flight payloads only: a small, fixed heap.
    "-Xms512m",
    "-Xmx512m",
    # G1 at its default pause goal (200 ms). A goal of 20 ms shrank the young generation: 4.5x
    # the collections, each no shorter (p50 14.8 against 10.3 ms, max 75 against 69 ms), 5-7x
    # the total pause, and the worker's CPU a message from 6.4 to 10.4 us (Pulsar, closed loop,
    # one worker, same broker, back to back; GC logs of both).
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    # Netty (in both clients) uses direct buffers and reflection into java.nio.
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djava.net.preferIPv4Stack=true",
)
OPEN_LOOP_FLAGS: tuple[str, ...] = (
    # A worker on a fixed-rate schedule must keep up from its first second, not reach a peak:
    # C1 only. With C2 as well, the first seconds of C2 compiling took a core from a 2-core
    # machine and a Pulsar sync step at 1,000 msg/s fell behind its schedule during warm-up:
    # publish p99 from the intended time 632-1,140 ms, against 25-30 ms C1 only (same step,
    # back to back). Closed loops measure the peak, where C2's code is worth its start
    # (calibrate, Pulsar: 70,753/s and 12.9 us a message with C2, 50,848/s and 17.0 C1 only).
    "-XX:TieredStopAtLevel=1",
)
_STAMP = "bench-build.stamp"
_CLASSPATH = "classpath.txt"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class JvmWorker:
    """A built JVM worker: how to start one."""

    java: str
    classpath: str
    jvm_flags: tuple[str, ...] = JVM_FLAGS
    build_seconds: float = 0.0
    """How long the build took (0 when the existing build was current)."""

    def argv(self, open_loop: bool = False) -> list[str]:
        """The command line that starts one worker (it then reads commands on stdin);
        ``open_loop``: its spec has a rate (:data:`OPEN_LOOP_FLAGS`)."""
        flags = (*self.jvm_flags, *OPEN_LOOP_FLAGS) if open_loop else self.jvm_flags
        return [self.java, *flags, "-cp", self.classpath, MAIN_CLASS]


def engine_dir() -> Path:
    """The worker's Maven project: ``engines/jvm`` in the repository."""
    path = project_infra_dir().parent / "engines" / "jvm"
    if not (path / "pom.xml").is_file():
        raise ArtifactError(f"the JVM worker's sources are missing: no {path / 'pom.xml'}")
    return path


def source_hash(root: Path | None = None) -> str:
    """A hash of everything the build depends on: the POM, Maven settings and all sources."""
    root = root or engine_dir()
    digest = hashlib.sha256()
    settings = project_infra_dir() / "maven" / "settings.xml"
    files = [(root / "pom.xml", "pom.xml"), (settings, "settings.xml")]
    files += [
        (p, str(p.relative_to(root))) for p in sorted((root / "src").rglob("*")) if p.is_file()
    ]
    for path, name in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _current(target: Path, wanted: str) -> str | None:
    """The classpath of an up-to-date build, or None when it must be (re)built."""
    stamp, classpath = target / _STAMP, target / _CLASSPATH
    if not stamp.is_file() or stamp.read_text().strip() != wanted or not classpath.is_file():
        return None
    jars = [j for j in classpath.read_text().strip().split(":") if j]
    if not jars or not all(Path(j).is_file() for j in jars):
        return None
    classes = target / "classes"
    if not (classes / "bench" / "worker" / "Main.class").is_file():
        return None
    return ":".join([str(classes), *jars])


def _maven_failure(output: str) -> str:
    tail = [line.strip() for line in output.strip().splitlines() if line.strip()][-12:]
    errors = [line for line in tail if line.startswith("[ERROR]")] or tail
    return "building the JVM worker failed (mvn): " + " | ".join(errors[:6])


def ensure_built(progress: Progress | None = None) -> JvmWorker:
    """Build the JVM worker if its sources changed (or it was never built); return it.

    Raises :class:`~bench.errors.EnvironmentProblem` when Java 17+ is missing and
    :class:`~bench.errors.ArtifactError` when Maven is missing or the build fails (with the tail
    of Maven's output).
    """
    java = find_java()
    root = engine_dir()
    target = root / "target"
    wanted = source_hash(root)
    classpath = _current(target, wanted)
    if classpath:
        return JvmWorker(java.executable, classpath)
    mvn = shutil.which("mvn")
    if not mvn:
        raise ArtifactError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
    target.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".build.lock").open("w") as lock:
        # A test run and a CLI may build at once; one does the work, the other reuses it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        classpath = _current(target, wanted)
        if classpath:
            return JvmWorker(java.executable, classpath)
        if progress is not None:
            progress("building the JVM worker (mvn; the first build downloads the clients)")
        (target / _STAMP).unlink(missing_ok=True)
        cmd = [
            mvn,
            "-B",
            "-s",
            str(project_infra_dir() / "maven" / "settings.xml"),
            "-f",
            str(root / "pom.xml"),
            f"-Dmaven.repo.local={bench_home() / 'm2'}",
            "compile",
            "dependency:build-classpath",
            f"-Dmdep.outputFile={target / _CLASSPATH}",
        ]
        started = time.monotonic()
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ArtifactError(
                f"building the JVM worker took over {BUILD_TIMEOUT_S} s; "
                "Maven Central may be unreachable"
            ) from exc
        if out.returncode != 0:
            raise ArtifactError(_maven_failure(out.stdout + out.stderr))
        (target / _STAMP).write_text(wanted + "\n")
        classpath = _current(target, wanted)
        if not classpath:
            raise ArtifactError(f"Maven reported success but the build in {target} is incomplete")
        return JvmWorker(java.executable, classpath, build_seconds=time.monotonic() - started)
