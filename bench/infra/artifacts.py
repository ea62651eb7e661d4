"""Broker jars, resolved by Maven from Maven Central into a cache outside the repository.

Each runtime (``rocketmq``, ``rocketmq-perf``, ``pulsar``) is a POM under ``infra/maven/``.
``mvn dependency:build-classpath`` resolves it once into ``$BENCH_HOME/m2`` and writes the
classpath; the classpath file is keyed by the POM's hash, so editing a pinned version resolves
again and nothing else does.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ArtifactError
from bench.infra.paths import bench_home, project_infra_dir

RUNTIMES = ("rocketmq", "rocketmq-perf", "pulsar")
RESOLVE_TIMEOUT_S = 1500


@dataclass(frozen=True)
class Classpath:
    """A resolved runtime: its jars and how long resolution took (0 when cached)."""

    runtime: str
    jars: tuple[str, ...]
    resolve_seconds: float

    def joined(self) -> str:
        return ":".join(self.jars)


def pom_path(runtime: str) -> Path:
    if runtime not in RUNTIMES:
        raise ArtifactError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    return project_infra_dir() / "maven" / f"{runtime}.pom.xml"


def pinned_version(runtime: str) -> str:
    """The version pinned in a runtime's POM (its first ``*.version`` property)."""
    text = pom_path(runtime).read_text()
    match = re.search(r"<(?:rocketmq|pulsar)\.version>([^<]+)<", text)
    if match:
        return match.group(1)
    match = re.search(r"<artifactId>rocketmq-example</artifactId><version>([^<]+)<", text)
    return match.group(1) if match else "unknown"


def _classpath_file(runtime: str) -> Path:
    pom = pom_path(runtime)
    settings = pom.parent / "settings.xml"
    digest = hashlib.sha256(pom.read_bytes() + settings.read_bytes()).hexdigest()[:12]
    return bench_home() / "classpath" / f"{runtime}-{digest}.txt"


def _read_jars(path: Path) -> tuple[str, ...] | None:
    if not path.is_file():
        return None
    jars = tuple(j for j in path.read_text().strip().split(":") if j)
    if not jars or not all(Path(j).is_file() for j in jars):
        return None
    return jars


def _explain_maven_failure(runtime: str, output: str) -> str:
    unreachable = re.search(
        r"(Unknown host [^\s:]+|Connection refused|Connect to [^ ]+ failed|timed out|"
        r"Network is unreachable|Could not transfer artifact [^ ]+)",
        output,
    )
    missing = re.search(r"Could not find artifact ([^\s]+)", output) or re.search(
        r"could not be resolved: ([^:]+:[^:]+:[^:]+:[^\s,]+)", output
    )
    if missing:
        return (
            f"Maven Central does not serve {missing.group(1)} (needed by the {runtime} runtime); "
            f"see infra/maven/{runtime}.pom.xml for the pinned versions"
        )
    if unreachable:
        return (
            f"cannot reach Maven Central to resolve the {runtime} jars ({unreachable.group(1)}); "
            "check the network or a proxy in ~/.m2/settings.xml"
        )
    tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:])
    return f"Maven failed to resolve the {runtime} jars: {tail}"


def ensure_classpath(runtime: str, *, offline: bool = False) -> Classpath:
    """Resolve (or reuse) the jars of ``runtime``; raise :class:`ArtifactError` on failure."""
    target = _classpath_file(runtime)
    jars = _read_jars(target)
    if jars:
        return Classpath(runtime, jars, 0.0)
    mvn = shutil.which("mvn")
    if not mvn:
        raise ArtifactError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_suffix(".lock")
    with lock_path.open("w") as lock:
        # Two processes (a test run and a CLI) may resolve at once; one does the work.
        fcntl.flock(lock, fcntl.LOCK_EX)
        jars = _read_jars(target)
        if jars:
            return Classpath(runtime, jars, 0.0)
        pom = pom_path(runtime)
        cmd = [
            mvn,
            "-B",
            "-s",
            str(pom.parent / "settings.xml"),
            "-f",
            str(pom),
            f"-Dmaven.repo.local={bench_home() / 'm2'}",
            "dependency:build-classpath",
            f"-Dmdep.outputFile={target}.tmp",
        ]
        if offline:
            cmd.insert(1, "-o")
        started = time.monotonic()
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ArtifactError(
                f"resolving the {runtime} jars took over {RESOLVE_TIMEOUT_S} s; "
                "Maven Central may be unreachable"
            ) from exc
        if out.returncode != 0:
            raise ArtifactError(_explain_maven_failure(runtime, out.stdout + out.stderr))
        Path(f"{target}.tmp").replace(target)
        jars = _read_jars(target)
        if not jars:
            raise ArtifactError(f"Maven reported success but {target} lists missing jars")
        return Classpath(runtime, jars, time.monotonic() - started)


def ensure_classpaths(runtimes: tuple[str, ...] = RUNTIMES) -> list[Classpath]:
    """Resolve several runtimes at once, one Maven process each (in ``runtimes`` order).

    Resolution is mostly waiting on Maven Central round trips, one POM at a time within a
    process, so separate processes overlap that waiting; the shared local repository is safe
    for this (Maven's resolver locks each file it downloads). All failures are reported.
    """
    with ThreadPoolExecutor(max_workers=len(runtimes) or 1) as pool:
        futures = [pool.submit(ensure_classpath, runtime) for runtime in runtimes]
    errors = [str(f.exception()) for f in futures if f.exception() is not None]
    if errors:
        raise ArtifactError("; ".join(errors))
    return [f.result() for f in futures]


def cache_size_bytes() -> int:
    """Bytes used by the Maven cache under ``$BENCH_HOME/m2``."""
    root = bench_home() / "m2"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
