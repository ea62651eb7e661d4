"""Checking that the ports a topology needs are free, and naming who holds them if not."""

from __future__ import annotations

import contextlib
import socket
import time

import psutil

from bench.errors import PortInUse


def listener_pid(port: int) -> int | None:
    """The PID listening on ``port`` (any address), if this user can see it."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    return None


def holder_of(port: int) -> str | None:
    """Describe the process listening on ``port`` (``pid 123 (cmd)``), if it can be seen."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return "another process (not visible to this user)"
            try:
                proc = psutil.Process(conn.pid)
                cmd = " ".join(proc.cmdline()[:3]) or proc.name()
            except psutil.Error:
                cmd = "?"
            return f"pid {conn.pid} ({cmd[:80]})"
    return None


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``port`` (checked by binding both loopback and any)."""
    for addr in (host, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Brokers bind with SO_REUSEADDR, so TIME_WAIT left by a stopped broker must not
            # count as "in use"; only a live listener does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((addr, port))
            except OSError:
                return False
    return True


def ensure_free(ports: dict[str, int], host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUse` for the first port in ``ports`` (label -> port) that is taken."""
    for label, port in ports.items():
        if not is_free(port, host):
            who = holder_of(port)
            held = f" by {who}" if who else ""
            raise PortInUse(
                f"port {port} ({label}) on {host} is already in use{held}; "
                "stop it, or move the brokers with --port-offset N"
            )


def wait_closed(ports: list[int], timeout_s: float, host: str = "127.0.0.1") -> list[int]:
    """Wait until no one listens on ``ports``; return those still taken at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = [p for p in ports if not is_free(p, host)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.2)


def accepts(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False
