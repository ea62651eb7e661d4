"""Finding a Java runtime that can run the brokers (JDK 17 or newer)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.errors import EnvironmentProblem

MIN_JAVA = 17


@dataclass(frozen=True)
class JavaRuntime:
    """A checked ``java`` executable and its major version."""

    executable: str
    major: int
    version: str


def _java_from_home(home: str, origin: str) -> str:
    exe = Path(home) / "bin" / "java"
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise EnvironmentProblem(
            f"{origin}={home} has no executable bin/java; point it at a JDK {MIN_JAVA}+ "
            "or unset it to use the java on PATH"
        )
    return str(exe)


def find_java() -> JavaRuntime:
    """Return the Java to run brokers with.

    ``BENCH_JAVA_HOME`` wins, then ``JAVA_HOME``, then ``java`` on ``PATH``. Raises
    :class:`EnvironmentProblem` if none is usable or it is older than Java 17.
    """
    for var in ("BENCH_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home:
            exe = _java_from_home(home, var)
            break
    else:
        found = shutil.which("java")
        if not found:
            raise EnvironmentProblem(
                f"no Java found: install a JDK {MIN_JAVA}+ (e.g. apt-get install openjdk-17-jdk) "
                "or set JAVA_HOME"
            )
        exe = found
    try:
        out = subprocess.run(
            [exe, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"cannot run {exe} -version: {exc}") from exc
    text = out.stderr + out.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?[^"]*"', text)
    if out.returncode != 0 or not match:
        first = text.strip().splitlines()[0] if text.strip() else f"exit {out.returncode}"
        raise EnvironmentProblem(f"{exe} is not a working Java: {first}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise EnvironmentProblem(
            f"{exe} is Java {major}; the brokers need Java {MIN_JAVA}+ "
            "(set JAVA_HOME to a newer JDK)"
        )
    return JavaRuntime(executable=exe, major=major, version=match.group(0))
