"""Where the suite keeps what it downloads and what its brokers write.

``BENCH_HOME`` (default ``~/.cache/bench``) holds the Maven cache, the resolved classpaths and the
default infra directory. Nothing there is part of the repository; a fresh machine rebuilds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import EnvironmentProblem


def bench_home() -> Path:
    """The cache root: ``$BENCH_HOME`` or ``~/.cache/bench``."""
    return Path(os.environ.get("BENCH_HOME") or Path.home() / ".cache" / "bench")


def default_infra_dir() -> Path:
    """Where ``bench infra`` keeps its state, data and logs unless told otherwise."""
    return Path(os.environ.get("BENCH_INFRA_DIR") or bench_home() / "infra")


def project_infra_dir() -> Path:
    """The repository's ``infra/`` folder (Maven POMs, config templates)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "infra" / "maven"
        if candidate.is_dir():
            return parent / "infra"
    raise EnvironmentProblem(
        f"cannot find the project's infra/ folder above {here}; "
        "install the suite from its repository with `pip install -e .`"
    )
