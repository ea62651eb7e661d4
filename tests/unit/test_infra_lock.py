"""One run per infra directory: a second is refused at once, naming the holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.infra.lock import InfraInUse, InfraLock


def test_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    refused = pytest.raises(InfraInUse, match=rf"in use by another run \(PID {os.getpid()}\)")
    with InfraLock(tmp_path / "infra"), refused, InfraLock(tmp_path / "infra"):
        pass
    with InfraLock(tmp_path / "infra"):  # released: free again
        pass


def test_a_holder_that_dies_leaves_no_stale_lock(tmp_path: Path) -> None:
    root = tmp_path / "infra"
    code = (
        "import sys, time\n"
        "from bench.infra.lock import InfraLock\n"
        f"with InfraLock({str(root)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(InfraInUse, match=rf"PID {child.pid}\)"), InfraLock(root):
            pass
    finally:
        child.kill()  # no clean exit: the kernel drops the flock with the process
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with InfraLock(root):
                break
        except InfraInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
