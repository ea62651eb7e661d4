"""The worker protocol over TCP: ``bench worker --listen HOST:PORT`` and the runner's side.

One TCP connection is one worker process. The server (:class:`WorkerServer`) accepts a
connection, checks its first line, answers clock exchanges, then starts one worker process of
the engine asked for (the same command a local pool runs) and relays lines both ways: socket ->
the worker's stdin, the worker's stdout -> socket. The connection closing closes the worker's
stdin, so the worker stops exactly as a local one does when its runner dies; the worker ending
closes the connection.

Before the protocol proper, on one connection (JSON lines, runner first):

1. ``{"hello": 1, "token": "..."}``: the token must equal the server's (``BENCH_WORKER_TOKEN``
   in both environments). A wrong one gets one ``failed`` event saying so, and the connection
   is closed. ``{"event": "hello", "host": ..., "pid": ...}`` otherwise.
2. ``{"cmd": "clock"}`` any number of times: ``{"event": "clock", "time_ns": <worker's
   time.time_ns()>}``. The runner keeps the exchange with the shortest round trip and records
   the offset (worker clock - runner clock, at the round trip's midpoint) and its bound (half
   the round trip).
3. ``{"cmd": "start", "engine": "python"|"jvm", "open_loop": bool}``: the worker process
   starts (``open_loop``: its spec will have a rate; the JVM then compiles for start-up, not
   peak; absent means false); from here on the
   lines are the worker protocol (``docs/worker-protocol.md``), unchanged.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from bench.errors import BenchError, ConfigError, EnvironmentProblem

log = logging.getLogger(__name__)

TOKEN_ENV: Final = "BENCH_WORKER_TOKEN"
HELLO_TIMEOUT_S: Final = 10.0
CLOCK_EXCHANGES: Final = 8
CLOCK_WARN_MS: Final = 100.0
MAX_LINE: Final = 256 * 1024 * 1024


class RemoteWorkerError(BenchError):
    """A remote worker refused the connection, could not be reached, or went away."""


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); :class:`ConfigError` otherwise."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"worker address {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def worker_token(required: bool = True) -> str:
    """The shared token from :data:`TOKEN_ENV` (never printed)."""
    token = os.environ.get(TOKEN_ENV, "")
    if required and not token:
        raise ConfigError(
            f"environment variable {TOKEN_ENV} is not set: remote workers and the runner "
            "share a token from it"
        )
    return token


def _send(stream: IO[bytes], obj: dict[str, Any]) -> None:
    stream.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    stream.flush()


# -- server ---------------------------------------------------------------------------------
class WorkerServer:
    """Serves the worker protocol on ``host:port``; one connection, one worker process."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        *,
        command: Callable[[str, bool], tuple[list[str], dict[str, str]]] | None = None,
        log_stream: IO[bytes] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if not token:
            raise ConfigError(f"a worker server needs a token ({TOKEN_ENV})")
        self.token = token
        self._command = command
        self._log = log_stream
        self._clock = clock  # what `clock` answers (tests skew it)
        self.sock = socket.create_server((host, port), reuse_port=False)
        bound = self.sock.getsockname()
        self.address = f"{bound[0]}:{bound[1]}"
        self._stop = threading.Event()
        self.connections = 0
        self.children: list[subprocess.Popen[bytes]] = []
        """Every worker process started, in order (a test kills one to play a lost host)."""

    def serve_forever(self) -> None:
        """Accept connections until :meth:`close` (each handled on its own thread)."""
        self.sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self.connections += 1
            threading.Thread(
                target=self._handle, args=(conn, peer), name=f"conn-{peer}", daemon=True
            ).start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()

    def _handle(self, conn: socket.socket, peer: Any) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = conn.makefile("rb")
        wfile = conn.makefile("wb")
        try:
            conn.settimeout(HELLO_TIMEOUT_S)
            first = json.loads(rfile.readline(64 * 1024) or b"{}")
            token = str(first.get("token", "")) if isinstance(first, dict) else ""
            if not hmac.compare_digest(token.encode(), self.token.encode()):
                log.warning("refused a connection from %s: wrong token", peer)
                _send(
                    wfile,
                    {
                        "event": "failed",
                        "error": f"bench worker at {self.address} refused the connection: "
                        f"wrong token (both sides read it from {TOKEN_ENV})",
                    },
                )
                return
            hello = {"event": "hello", "host": socket.gethostname(), "pid": os.getpid()}
            # An Indexed Job's pod knows its shard (bench.k8s.manifests); recorded by the runner.
            hello["index"] = os.environ.get("JOB_COMPLETION_INDEX")
            _send(wfile, hello)
            while True:
                msg = json.loads(rfile.readline(64 * 1024) or b"{}")
                cmd = msg.get("cmd") if isinstance(msg, dict) else None
                if cmd == "clock":
                    _send(wfile, {"event": "clock", "time_ns": self._clock()})
                    continue
                if cmd == "start":
                    break
                _send(wfile, {"event": "failed", "error": f"expected clock or start, got {cmd}"})
                return
            conn.settimeout(None)
            self._relay(
                conn, rfile, wfile, str(msg.get("engine", "python")), msg.get("open_loop") is True
            )
        except (OSError, ValueError) as exc:
            log.info("connection from %s ended: %s", peer, exc)
        finally:
            for f in (rfile, wfile):
                with contextlib.suppress(OSError):
                    f.close()
            with contextlib.suppress(OSError):
                conn.close()

    def _relay(
        self, conn: socket.socket, rfile: IO[bytes], wfile: IO[bytes], engine: str, open_loop: bool
    ) -> None:
        from bench.engines.pool import worker_command

        argv, extra = (self._command or worker_command)(engine, open_loop)  # type: ignore[arg-type]
        env = {**os.environ, **extra}
        env.pop(TOKEN_ENV, None)  # the worker process has no use for it
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log if self._log is not None else subprocess.DEVNULL,
            env=env,
        )
        self.children.append(proc)
        assert proc.stdin is not None and proc.stdout is not None
        child_in, child_out = proc.stdin, proc.stdout

        def inbound() -> None:
            # Runner -> worker; the connection ending is the worker's end of input.
            try:
                for line in rfile:
                    child_in.write(line)
                    child_in.flush()
            except (OSError, ValueError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    child_in.close()

        t = threading.Thread(target=inbound, name="relay-in", daemon=True)
        t.start()
        try:
            for line in child_out:
                wfile.write(line)
                wfile.flush()
        except (OSError, ValueError):
            pass
        finally:
            # The worker ended (or the runner went away): the other side learns it by EOF.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            t.join(5)
            for stream in (child_in, child_out):
                with contextlib.suppress(OSError):
                    stream.close()


# -- the runner's side ------------------------------------------------------------------------
@dataclass(frozen=True)
class Clock:
    """A remote worker's clock against ours: ``offset_ns`` = worker - runner, known within
    +/- ``bound_ns`` (half the best round trip)."""

    offset_ns: int
    bound_ns: int

    def to_json(self) -> dict[str, float]:
        return {"offset_ms": self.offset_ns / 1e6, "bound_ms": self.bound_ns / 1e6}


class RemoteProcess:
    """A worker process behind a TCP connection, with the part of ``subprocess.Popen``'s
    surface the pool uses (``stdin``, ``stdout``, ``poll``, ``wait``, ``kill``, ``pid``)."""

    pid = 0  # not a local process: nothing to sample or signal

    def __init__(
        self,
        addr: str,
        engine: str,
        token: str,
        timeout_s: float = 10.0,
        *,
        open_loop: bool = False,
    ) -> None:
        self.addr = addr
        host, port = parse_addr(addr)
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise RemoteWorkerError(f"cannot reach bench worker at {addr}: {exc}") from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.stdin: IO[bytes] = self._sock.makefile("wb")
        self.stdout: IO[bytes] = self._sock.makefile("rb")
        self._done = threading.Event()
        try:
            probe = _Probe(addr, self.stdout, self.stdin)
            self.host = str(probe.hello(token).get("host", ""))
            self.clock = probe.clock()
            _send(self.stdin, {"cmd": "start", "engine": engine, "open_loop": open_loop})
        except (OSError, ValueError, KeyError) as exc:
            self._abandon()
            raise RemoteWorkerError(f"bench worker at {addr}: {exc}") from None
        except BaseException:
            self._abandon()
            raise
        self._sock.settimeout(None)

    def _abandon(self) -> None:
        """A connection that never became a worker: close it and its files."""
        self.kill()
        for f in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                f.close()

    def mark_done(self) -> None:
        """The event stream ended (the worker exited or the connection dropped)."""
        self._done.set()

    def poll(self) -> int | None:
        return 0 if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"bench worker at {self.addr}", timeout or 0.0)
        return 0

    def kill(self) -> None:
        """Drop the connection (the remote worker then stops: its input ended)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._done.set()


def serve(listen: str, *, log_stream: IO[bytes] | None = None) -> WorkerServer:
    """A :class:`WorkerServer` on ``listen`` (HOST:PORT) with the token from the environment."""
    host, port = parse_addr(listen)
    try:
        return WorkerServer(host, port, worker_token(), log_stream=log_stream)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot listen on {listen}: {exc}") from None


def probe_workers(addrs: Sequence[str], message: Callable[[str], None]) -> dict[str, Any]:
    """Connect to each ``bench worker`` once (token, clock), before a run; what run.json
    records of them. Raises :class:`RemoteWorkerError` naming the one that fails.

    End-to-end latency stays on one host whatever the offsets: a worker runs both the producers
    and the consumers of its shard of topics, so send and receive times come from one clock.
    """
    token = worker_token()
    seen: list[dict[str, Any]] = []
    for addr in addrs:
        host, port = parse_addr(addr)
        try:
            sock = socket.create_connection((host, port), timeout=HELLO_TIMEOUT_S)
        except OSError as exc:
            raise RemoteWorkerError(f"cannot reach bench worker at {addr}: {exc}") from None
        with sock, sock.makefile("rb") as rfile, sock.makefile("wb") as wfile:
            probe = _Probe(addr, rfile, wfile)
            hello = probe.hello(token)
            clock = probe.clock()
        seen.append(
            {
                "address": addr,
                "host": hello.get("host", ""),
                "index": hello.get("index"),
                **clock.to_json(),
            }
        )
        message(
            f"worker {addr} ({hello.get('host', '?')}): clock offset "
            f"{clock.offset_ns / 1e6:+.3f} ms +/- {clock.bound_ns / 1e6:.3f} ms"
        )
    out: dict[str, Any] = {
        "mode": "remote",
        "workers": seen,
        "e2e_latency": "measured on one host: each worker produces and consumes its own topics",
    }
    # Intervals are stamped with each worker's clock: past this offset the per-second series of
    # different hosts no longer line up (the figures themselves do not depend on it).
    skewed = [w["address"] for w in seen if abs(w["offset_ms"]) > CLOCK_WARN_MS]
    if skewed:
        out["clock_warning"] = (
            f"clocks of {', '.join(skewed)} differ from the runner's by over {CLOCK_WARN_MS} ms: "
            "synchronise them (NTP/chrony); their intervals are misaligned in the series"
        )
        message("WARNING: " + out["clock_warning"])
    return out


@dataclass
class _Probe:
    addr: str
    rfile: IO[bytes]
    wfile: IO[bytes]

    def read(self) -> dict[str, Any]:
        line = self.rfile.readline(MAX_LINE)
        if not line:
            raise RemoteWorkerError(f"bench worker at {self.addr} closed the connection")
        data = json.loads(line)
        if not isinstance(data, dict):
            raise RemoteWorkerError(f"bench worker at {self.addr}: not a protocol line")
        return data

    def hello(self, token: str) -> dict[str, Any]:
        _send(self.wfile, {"hello": 1, "token": token})
        hello = self.read()
        if hello.get("event") != "hello":
            why = hello.get("error") or f"bench worker at {self.addr} answered {hello}"
            raise RemoteWorkerError(str(why))
        return hello

    def clock(self) -> Clock:
        best: tuple[int, int] | None = None
        for _ in range(CLOCK_EXCHANGES):
            t0 = time.time_ns()
            _send(self.wfile, {"cmd": "clock"})
            worker_ns = int(self.read()["time_ns"])
            t1 = time.time_ns()
            if best is None or t1 - t0 < best[1]:
                best = (worker_ns - (t0 + t1) // 2, t1 - t0)
        assert best is not None
        return Clock(best[0], best[1] // 2)
