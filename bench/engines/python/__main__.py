"""``python -m bench.engines.python``: one worker process speaking the worker protocol.

Commands arrive on stdin and events leave on stdout, one JSON line each; the process's own
stdout is moved onto stderr before any client library loads, so nothing else can reach the
protocol stream. End of input means the runner is gone: the worker stops its load and exits.
Drivers registered in the runner beyond the built-in ones (test doubles) come in
``BENCH_EXTRA_DRIVERS`` (JSON: name -> "module:Class").
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import BinaryIO, Final

from bench.engines import protocol as p

_SETUP_WAIT_S: Final = 60.0
# Extra life a worker gets past its deadline to close clients before it is cut short.
_EXIT_GRACE_S: Final = 20.0
EXTRA_DRIVERS_ENV: Final = "BENCH_EXTRA_DRIVERS"


class _Out:
    """The protocol stream: whole lines, one writer at a time (callbacks emit from threads)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: p.Event) -> None:
        line = p.encode(event)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the runner is gone; stdin's end will stop us


def _read_commands(stream: BinaryIO, commands: queue.Queue[p.Command | str], out: _Out) -> None:
    from bench.engines.python.worker import EOF_COMMAND

    try:
        for line in stream:
            if not line.strip():
                continue
            try:
                commands.put(p.decode_command(line))
            except p.ProtocolError as exc:
                out.emit(p.Failed(f"bad command: {exc}"))
    finally:
        commands.put(EOF_COMMAND)


def _watchdog(deadline: float) -> None:
    """Exit once the deadline (plus grace) has passed, even if a client library hangs.

    ``os._exit`` skips cleanup on purpose: a client blocked on a dead broker must not keep the
    process alive."""
    while time.monotonic() < deadline + _EXIT_GRACE_S:
        time.sleep(0.25)
    os._exit(71)


def main() -> None:
    # Ctrl-C reaches the whole process group: the runner decides how workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = _Out(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    code = 1
    try:
        code = _serve(out)
    except BaseException as exc:
        out.emit(p.Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    out.emit(p.Exit(code))
    # Client libraries leave non-daemon threads behind; they must not hold the exit.
    os._exit(code)


def _serve(out: _Out) -> int:
    from bench.drivers.base import register_driver
    from bench.engines.python.worker import EOF_COMMAND, PythonWorker, one_line
    from bench.engines.spec import LoadSpec

    for name, target in json.loads(os.environ.get(EXTRA_DRIVERS_ENV) or "{}").items():
        register_driver(name, target)
    commands: queue.Queue[p.Command | str] = queue.Queue()
    threading.Thread(
        target=_read_commands, args=(sys.stdin.buffer, commands, out), daemon=True
    ).start()
    try:
        first = commands.get(timeout=_SETUP_WAIT_S)
    except queue.Empty:
        out.emit(p.Failed(f"no setup command within {_SETUP_WAIT_S:.0f} s"))
        return 1
    if first == EOF_COMMAND:
        return 2
    if not isinstance(first, p.Setup) or first.protocol != p.PROTOCOL_VERSION:
        out.emit(p.Failed(f"the first command must be setup, protocol {p.PROTOCOL_VERSION}"))
        return 1
    try:
        spec = LoadSpec.from_protocol(first.spec)
    except Exception as exc:
        out.emit(p.Failed(one_line(exc)))
        return 1
    threading.Thread(
        target=_watchdog, args=(time.monotonic() + spec.deadline_s,), daemon=True
    ).start()
    return PythonWorker(spec, commands, out.emit).run()


if __name__ == "__main__":
    main()
