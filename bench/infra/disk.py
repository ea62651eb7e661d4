"""Refuse to start brokers on a disk they would refuse to write to.

Both brokers stop taking messages on a full filesystem, judged over the whole filesystem rather
than over their own data: Pulsar's bookie turns read-only past ``diskUsageThreshold`` of the
space usable by unprivileged writers (BookKeeper's default 0.95; our configs say 0.99), and then
every topic creation fails with "Not enough non-faulty bookies available"; RocketMQ marks its
store full past ``diskSpaceWarningLevelRatio`` of the space in use (capped at 0.90 in code) and
answers every send "service not available". A run started on such a disk measures the disk, so
it is refused with the figures, before anything starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from bench.errors import BrokerStartError

PULSAR_LIMIT = 0.99
"""diskUsageThreshold in infra/conf/pulsar (standalone.conf and bookkeeper.conf)."""
ROCKETMQ_LIMIT = 0.90
"""RocketMQ's diskSpaceWarningLevelRatio: the code caps it at 90%."""
MARGIN = 0.02
"""Room below a limit for what a run writes."""
MIN_FREE_BYTES = 4 << 30
"""A full run writes a few GiB (commit logs, ledgers, logs)."""


def problems(path: Path, brokers: Iterable[str]) -> list[str]:
    """What keeps ``brokers`` from writing data under ``path``; empty when nothing does."""
    u = shutil.disk_usage(path)
    found: list[str] = []
    gib = u.free / (1 << 30)
    if u.free < MIN_FREE_BYTES:
        found.append(f"{gib:.1f} GiB free (a run needs {MIN_FREE_BYTES >> 30} GiB)")
    wanted = set(brokers)
    # BookKeeper: 1 - usable/total (statvfs f_bavail); RocketMQ: used/total (f_bfree).
    bk = 1.0 - u.free / u.total if u.total else 1.0
    if "pulsar" in wanted and bk >= PULSAR_LIMIT - MARGIN:
        found.append(
            f"{bk:.1%} full as Pulsar's bookie counts it (it turns read-only at "
            f"{PULSAR_LIMIT:.0%}, and {MARGIN:.0%} is left for the run)"
        )
    rmq = u.used / u.total if u.total else 1.0
    if "rocketmq" in wanted and rmq >= ROCKETMQ_LIMIT - MARGIN:
        found.append(
            f"{rmq:.1%} full as RocketMQ counts it (it refuses sends at "
            f"{ROCKETMQ_LIMIT:.0%}, and {MARGIN:.0%} is left for the run)"
        )
    return found


def check(path: Path, brokers: Iterable[str]) -> None:
    """Raise :class:`BrokerStartError` naming every problem of :func:`problems`."""
    path.mkdir(parents=True, exist_ok=True)
    found = problems(path, brokers)
    if found:
        raise BrokerStartError(
            f"the filesystem holding {path} is too full for the brokers: "
            + "; ".join(found)
            + ". Free space there, or point --infra-dir (BENCH_INFRA_DIR) at another disk."
        )
