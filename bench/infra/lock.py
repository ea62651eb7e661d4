"""One run at a time per infra directory.

Two runs on one infra directory wipe each other's broker data ("fresh" bring-ups) and kill
each other's brokers: the second run is refused at once instead. The lock is an advisory
``flock`` on ``<root>/run.lock`` that the kernel drops when the holder exits, however it exits,
so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from bench.errors import ConfigError


class InfraInUse(ConfigError):
    """Another live process holds the infra directory."""


class InfraLock:
    """``with InfraLock(root):`` holds ``root`` for this process or raises :class:`InfraInUse`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / "run.lock"
        self._fd: int | None = None

    def __enter__(self) -> InfraLock:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InfraInUse(
                f"{self.root} is in use by another run (PID {holder}); give this run its own "
                "--infra-dir and --port-offset, or wait for that one to end"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
