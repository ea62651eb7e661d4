"""The worker protocol, version 1: typed commands and events as JSON lines.

``docs/worker-protocol.md`` is the specification; this module is its Python side, used by the
runner's :class:`~bench.engines.pool.WorkerPool` and by the Python worker. The JVM worker speaks
the same lines. Every message is one JSON object on one line: commands carry ``"cmd"``, events
``"event"``. :func:`encode` writes one; :func:`decode_command` and :func:`decode_event` read
one and raise :class:`ProtocolError` naming what is wrong, so a broken worker is one clear line,
never a misread figure.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Final, Literal, TypeAlias

from bench.errors import BenchError

PROTOCOL_VERSION: Final = 1
MAX_LINE_BYTES: Final = 256 * 1024 * 1024
"""A line longer than this is refused: a ledger of millions of gaps is the largest honest one."""

Engine = Literal["python", "jvm"]
ENGINES: Final[tuple[Engine, ...]] = ("python", "jvm")
DEFAULT_ENGINE: Final[Engine] = "jvm"
"""The engine of a run that names none. The JVM worker, on the brokers' official clients,
keeps the brokers the limit on a 2-core machine where the Python clients do not (measured:
docs/results.md, "Load engines")."""


class ProtocolError(BenchError):
    """A line that is not a valid protocol message."""


# -- commands (runner -> worker) --------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """Open clients, subscribe, create producers; answer ``ready`` or ``failed``."""

    spec: dict[str, Any]
    protocol: int = PROTOCOL_VERSION
    cmd: Literal["setup"] = "setup"


@dataclass(frozen=True)
class Go:
    """Start producing (every worker of a step gets it at once)."""

    cmd: Literal["go"] = "go"


@dataclass(frozen=True)
class SetRate:
    """Send at ``rate_per_s`` in total from now on (None: closed loop)."""

    rate_per_s: float | None
    cmd: Literal["set_rate"] = "set_rate"


@dataclass(frozen=True)
class AddSubscriptions:
    """Add ``n`` untracked subscriptions to each of ``topics`` (None: every topic)."""

    n: int
    topics: list[str] | None = None
    cmd: Literal["add_subscriptions"] = "add_subscriptions"


@dataclass(frozen=True)
class Churn:
    """Subscribe/unsubscribe at ``ops_per_s`` (0 stops), keeping ``live`` subscriptions."""

    ops_per_s: float
    live: int = 4
    cmd: Literal["churn"] = "churn"


@dataclass(frozen=True)
class StopProducers:
    """Stop sending; consumers go on."""

    cmd: Literal["stop_producers"] = "stop_producers"


@dataclass(frozen=True)
class Drain:
    """Stop sending and report ``drained`` once every acknowledged message has arrived."""

    timeout_s: float
    stall_s: float | None = None
    cmd: Literal["drain"] = "drain"


@dataclass(frozen=True)
class LedgerRequest:
    """Answer with a ``ledger`` event."""

    cmd: Literal["ledger"] = "ledger"


@dataclass(frozen=True)
class Stop:
    """Ship the last interval with the ledger, close every client, ``exit``."""

    cmd: Literal["stop"] = "stop"


Command: TypeAlias = (
    Setup | Go | SetRate | AddSubscriptions | Churn | StopProducers | Drain | LedgerRequest | Stop
)
_COMMANDS: Final[dict[str, type[Any]]] = {
    c.cmd: c
    for c in (
        Setup,
        Go,
        SetRate,
        AddSubscriptions,
        Churn,
        StopProducers,
        Drain,
        LedgerRequest,
        Stop,
    )
}


# -- events (worker -> runner) ----------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    """Set up: the worker waits for ``go``."""

    worker_id: str
    engine: str
    producers: int
    consumers: int
    setup_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    client: dict[str, str] = field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION
    event: Literal["ready"] = "ready"


@dataclass(frozen=True)
class Stats:
    """One interval: :class:`bench.metrics.intervals.IntervalStats` as a JSON object."""

    stats: dict[str, Any]
    event: Literal["stats"] = "stats"


@dataclass(frozen=True)
class Ledger:
    """A cumulative ledger book (:meth:`bench.metrics.ledger.LedgerBook.to_dict`)."""

    ledger: dict[str, Any]
    event: Literal["ledger"] = "ledger"


@dataclass(frozen=True)
class ProducersDone:
    """Every producer of the worker has stopped (duration, count, or told)."""

    sent: int
    event: Literal["producers_done"] = "producers_done"


@dataclass(frozen=True)
class Drained:
    """The outcome of a ``drain``."""

    ok: bool
    undelivered: int
    seconds: float
    stalled: bool
    ledger: dict[str, Any]
    event: Literal["drained"] = "drained"


@dataclass(frozen=True)
class Failed:
    """Something went wrong: ``error`` is one line a person can act on."""

    error: str
    trace: str = ""
    event: Literal["failed"] = "failed"


@dataclass(frozen=True)
class Exit:
    """The worker's last line (0 normal, 1 set-up failed, 2 stopped before go, 3 deadline)."""

    code: int
    event: Literal["exit"] = "exit"


Event: TypeAlias = Ready | Stats | Ledger | ProducersDone | Drained | Failed | Exit
_EVENTS: Final[dict[str, type[Any]]] = {
    e.event: e for e in (Ready, Stats, Ledger, ProducersDone, Drained, Failed, Exit)
}

# JSON types each field may take (ints are numbers too; bool is not an int here).
_NUMBER = (int, float)
_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "spec": (dict,),
    "protocol": (int,),
    "rate_per_s": (*_NUMBER, type(None)),
    "n": (int,),
    "topics": (list, type(None)),
    "ops_per_s": _NUMBER,
    "live": (int,),
    "timeout_s": _NUMBER,
    "stall_s": (*_NUMBER, type(None)),
    "worker_id": (str,),
    "engine": (str,),
    "producers": (int,),
    "consumers": (int,),
    "setup_s": _NUMBER,
    "settings": (dict,),
    "client": (dict,),
    "stats": (dict,),
    "ledger": (dict,),
    "sent": (int,),
    "ok": (bool,),
    "undelivered": (int,),
    "seconds": _NUMBER,
    "stalled": (bool,),
    "error": (str,),
    "trace": (str,),
    "code": (int,),
}


def encode(message: Command | Event) -> bytes:
    """One protocol line (with its newline) for ``message``."""
    return json.dumps(asdict(message), separators=(",", ":")).encode() + b"\n"


def _decode(line: bytes | str, key: str, table: dict[str, type[Any]]) -> Any:
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(line)} bytes is over the {MAX_LINE_BYTES} limit")
    try:
        data = json.loads(line)
    except ValueError as exc:
        shown = line[:80] if isinstance(line, str) else line[:80].decode(errors="replace")
        raise ProtocolError(f"not a JSON line: {shown!r} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), str):
        raise ProtocolError(f"a protocol line must be an object with {key!r}: {str(data)[:80]}")
    kind = table.get(data[key])
    if kind is None:
        raise ProtocolError(f"unknown {key} {data[key]!r}; known: {', '.join(sorted(table))}")
    names = {f.name for f in fields(kind)}
    problems = [f"unknown field {k!r}" for k in data if k not in names]
    for f in fields(kind):
        if f.name == key:
            continue
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                problems.append(f"missing field {f.name!r}")
            continue
        value = data[f.name]
        want = _TYPES.get(f.name)
        if want is not None and (
            (isinstance(value, bool) and bool not in want) or not isinstance(value, want)
        ):
            problems.append(f"{f.name} is {type(value).__name__}, not {_names(want)}")
    if problems:
        raise ProtocolError(f"{key} {data[key]!r}: " + "; ".join(problems))
    return kind(**{k: v for k, v in data.items() if k != key})


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(
        "null"
        if t is type(None)
        else {"dict": "object", "list": "array"}.get(t.__name__, t.__name__)
        for t in types
    )


def decode_command(line: bytes | str) -> Command:
    """Parse one command line; raise :class:`ProtocolError` if it is not one."""
    return _decode(line, "cmd", _COMMANDS)


def decode_event(line: bytes | str) -> Event:
    """Parse one event line; raise :class:`ProtocolError` if it is not one."""
    return _decode(line, "event", _EVENTS)
