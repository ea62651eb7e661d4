"""What makes a result comparable: host, software versions, git revision, scenario hashes.

Every run records this in its metadata. Nothing here reads credentials, and
:func:`scrub` removes anything that looks like one before a dict is written.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import psutil

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|credential|auth|api[_-]?key)", re.I)


def scrub(value: Any) -> Any:
    """A copy of ``value`` with every mapping key that names a secret replaced by ``"***"``."""
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def host_info(path: str | Path = ".") -> dict[str, Any]:
    """Cores, memory, disk and OS of this machine (the brokers and workers share it)."""
    disk = shutil.disk_usage(path)
    freq = psutil.cpu_freq()
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_mhz": round(freq.current) if freq else None,
        "memory_bytes": psutil.virtual_memory().total,
        "disk_total_bytes": disk.total,
        "disk_free_bytes": disk.free,
        "python": sys.version.split()[0],
        "clock": "time.time_ns on one host (end-to-end latency is same-host)",
    }


def package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def client_versions() -> dict[str, str | None]:
    """Versions of the Python client libraries that talk to the brokers."""
    return {
        name: package_version(name)
        for name in ("pulsar-client", "rocketmq-python-client", "grpcio", "hdrhistogram", "bench")
    }


def git_revision(repo: str | Path | None = None) -> dict[str, Any]:
    """The project's git commit and whether the work tree had local changes."""
    cwd = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": rev, "dirty": dirty}
