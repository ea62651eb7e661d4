"""The exact loss ledger (DESIGN.md section 4).

Every payload carries the run id, producer id, sequence number and send time
(:func:`encode_payload`). Producers note which sequence numbers they sent, which the broker
acknowledged and which failed (:class:`ProducerLedger`); consumers note what they received
(:class:`ConsumerLedger`). All of it is kept as :class:`IntervalSet` ranges, so memory grows
with the number of gaps, not with the number of messages.

Loss is a property of one subscription: with fan-out every subscription must receive every
acknowledged message of its topic, and a union over subscriptions would hide a loss on one of
them. So :func:`reconcile` takes exactly one (topic, subscription) and refuses anything else;
:meth:`LedgerBook.reconcile` does it for every subscription it holds.

Ledgers merge by a *join*: sets unite and each ledger's own counters take their maximum. A
ledger only grows, so joining a newer snapshot of the same ledger with an older one gives the
newer one, and snapshots can be merged across workers and across time in any order.
Different consumers of one subscription are kept apart until :func:`reconcile`, which counts
a message received by two of them as a duplicate.
"""

from __future__ import annotations

import bisect
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchError

# ---------------------------------------------------------------------------------------------
# IntervalSet


class IntervalSet:
    """A set of integers kept as sorted, disjoint, non-adjacent closed ranges ``[a, b]``.

    ``len()`` is the number of integers; iteration yields ``(a, b)`` ranges. Adding the next
    integer after the last range (the common case: sequence numbers in order) is O(1); any
    other insert is O(log R + R) for R ranges.
    """

    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for a, b in ranges:
            self.add_range(a, b)

    def add(self, n: int) -> bool:
        """Add ``n``; return True if it was not already in the set."""
        ends = self._ends
        if ends:
            last = ends[-1]
            if n == last + 1:
                ends[-1] = n
                self._count += 1
                return True
            if n > last + 1:
                self._starts.append(n)
                ends.append(n)
                self._count += 1
                return True
        return self.add_range(n, n) == 1

    def add_range(self, a: int, b: int) -> int:
        """Add every integer in ``[a, b]``; return how many of them were new."""
        if a > b:
            raise ValueError(f"empty range [{a}, {b}]")
        starts, ends = self._starts, self._ends
        # Ranges i..j-1 overlap or touch [a, b]; they collapse into one.
        i = bisect.bisect_left(ends, a - 1)
        j = bisect.bisect_right(starts, b + 1)
        covered = sum(max(0, min(ends[k], b) - max(starts[k], a) + 1) for k in range(i, j))
        new = (b - a + 1) - covered
        if i < j:
            a = min(a, starts[i])
            b = max(b, ends[j - 1])
        starts[i:j] = [a]
        ends[i:j] = [b]
        self._count += new
        return new

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i = bisect.bisect_right(self._starts, n) - 1
        return i >= 0 and n <= self._ends[i]

    def contains(self, n: int) -> bool:
        """Return True if ``n`` is in the set."""
        return n in self

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __repr__(self) -> str:
        shown = ", ".join(f"[{a}, {b}]" for a, b in list(self)[:8])
        more = ", ..." if self.num_ranges > 8 else ""
        return f"IntervalSet({shown}{more}; {self._count} integers)"

    @property
    def num_ranges(self) -> int:
        """The number of ranges held (the memory the set takes is proportional to it)."""
        return len(self._starts)

    def copy(self) -> IntervalSet:
        """Return an independent copy."""
        return IntervalSet._from_sorted(list(self._starts), list(self._ends))

    @classmethod
    def _from_sorted(cls, starts: list[int], ends: list[int]) -> IntervalSet:
        s = cls()
        s._starts, s._ends = starts, ends
        s._count = sum(b - a + 1 for a, b in zip(starts, ends, strict=True))
        return s

    def union(self, other: IntervalSet) -> IntervalSet:
        """Return the integers in either set."""
        starts: list[int] = []
        ends: list[int] = []
        for a, b in sorted([*self, *other]):
            if ends and a <= ends[-1] + 1:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        return IntervalSet._from_sorted(starts, ends)

    def intersection(self, other: IntervalSet) -> IntervalSet:
        """Return the integers in both sets."""
        starts: list[int] = []
        ends: list[int] = []
        x, y = list(self), list(other)
        i = j = 0
        while i < len(x) and j < len(y):
            a = max(x[i][0], y[j][0])
            b = min(x[i][1], y[j][1])
            if a <= b:
                starts.append(a)
                ends.append(b)
            if x[i][1] < y[j][1]:
                i += 1
            else:
                j += 1
        return IntervalSet._from_sorted(starts, ends)

    def difference(self, other: IntervalSet) -> IntervalSet:
        """Return the integers in this set and not in ``other``."""
        starts: list[int] = []
        ends: list[int] = []
        y = list(other)
        j = 0
        for a, b in self:
            lo = a
            while j < len(y) and y[j][1] < lo:
                j += 1
            k = j
            while k < len(y) and y[k][0] <= b:
                if y[k][0] > lo:
                    starts.append(lo)
                    ends.append(y[k][0] - 1)
                lo = max(lo, y[k][1] + 1)
                k += 1
            if lo <= b:
                starts.append(lo)
                ends.append(b)
        return IntervalSet._from_sorted(starts, ends)

    def to_list(self) -> list[list[int]]:
        """Return the ranges as ``[[a, b], ...]`` (JSON-able)."""
        return [[a, b] for a, b in self]

    @classmethod
    def from_list(cls, data: Any) -> IntervalSet:
        """Build a set from :meth:`to_list` output; raise ValueError on anything else."""
        if not isinstance(data, list):
            raise ValueError(f"interval list must be a list, not {type(data).__name__}")
        starts: list[int] = []
        ends: list[int] = []
        for item in data:
            ok = (
                isinstance(item, list | tuple)
                and len(item) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
                and item[0] <= item[1]
            )
            if not ok:
                raise ValueError(f"bad interval {item!r}: expected [a, b] integers with a <= b")
            if ends and item[0] <= ends[-1] + 1:
                raise ValueError(f"interval {item!r} is not sorted, disjoint and non-adjacent")
            starts.append(item[0])
            ends.append(item[1])
        return cls._from_sorted(starts, ends)


# ---------------------------------------------------------------------------------------------
# Payload codec

_MAGIC = b"BLG1"
_VERSION = 1
# magic, version, run id length, producer id length, sequence number, send time (ns)
_FIXED = struct.Struct(">4sBBBQQ")
_U64_MAX = 2**64 - 1


class PayloadError(BenchError):
    """Bytes that are not a payload written by :func:`encode_payload` (a foreign message)."""


@dataclass(frozen=True)
class PayloadHeader:
    """What every benchmark payload carries ahead of its padding."""

    run_id: str
    producer_id: str
    seq: int
    send_ns: int


def header_length(run_id: str, producer_id: str) -> int:
    """Return the smallest payload size that can carry these ids."""
    return _FIXED.size + len(run_id.encode()) + len(producer_id.encode())


def encode_payload(run_id: str, producer_id: str, seq: int, send_ns: int, size: int) -> bytes:
    """Return a payload of exactly ``size`` bytes: the header, then zero padding.

    Raises ValueError if ``size`` is below :func:`header_length`, an id is longer than 255
    UTF-8 bytes, or ``seq``/``send_ns`` is outside 0 .. 2**64-1.
    """
    run = run_id.encode()
    producer = producer_id.encode()
    if len(run) > 255 or len(producer) > 255:
        raise ValueError("run id and producer id must each fit in 255 UTF-8 bytes")
    if not (0 <= seq <= _U64_MAX and 0 <= send_ns <= _U64_MAX):
        raise ValueError(f"seq ({seq}) and send_ns ({send_ns}) must be in 0 .. 2**64-1")
    head = _FIXED.pack(_MAGIC, _VERSION, len(run), len(producer), seq, send_ns) + run + producer
    if size < len(head):
        raise ValueError(f"payload size {size} is below the {len(head)}-byte header")
    return head + bytes(size - len(head))


_SEQ_TIME = struct.Struct(">QQ")


class PayloadTemplate:
    """:func:`encode_payload` for one producer: the bytes that never change (magic, version,
    id lengths, the ids, the padding) are built once, so a send only packs its sequence number
    and send time. The result is byte for byte what :func:`encode_payload` returns."""

    __slots__ = ("_head", "_tail")

    def __init__(self, run_id: str, producer_id: str, size: int) -> None:
        whole = encode_payload(run_id, producer_id, 0, 0, size)  # validates ids and size
        self._head = whole[:7]
        self._tail = whole[_FIXED.size :]

    def encode(self, seq: int, send_ns: int) -> bytes:
        """The payload of sequence number ``seq`` sent at ``send_ns``."""
        return self._head + _SEQ_TIME.pack(seq, send_ns) + self._tail


def decode_payload(data: bytes | bytearray | memoryview) -> PayloadHeader:
    """Read the header of a payload made by :func:`encode_payload`.

    Raises :class:`PayloadError` (never returns None) when the bytes are not such a payload, so
    a consumer counts foreign messages instead of recording garbage sequence numbers.
    """
    buf = bytes(data[: _FIXED.size + 510])
    if len(buf) < _FIXED.size:
        raise PayloadError(f"{len(buf)}-byte message is shorter than a benchmark header")
    magic, version, run_len, producer_len, seq, send_ns = _FIXED.unpack_from(buf)
    if magic != _MAGIC:
        raise PayloadError(f"message does not start with the benchmark magic {_MAGIC!r}")
    if version != _VERSION:
        raise PayloadError(f"payload version {version} is not {_VERSION}")
    end = _FIXED.size + run_len + producer_len
    if len(buf) < end:
        raise PayloadError("message is truncated inside the benchmark header")
    try:
        run_id = buf[_FIXED.size : _FIXED.size + run_len].decode()
        producer_id = buf[_FIXED.size + run_len : end].decode()
    except UnicodeDecodeError as exc:
        raise PayloadError(f"benchmark header ids are not UTF-8: {exc}") from exc
    return PayloadHeader(run_id, producer_id, seq, send_ns)


# ---------------------------------------------------------------------------------------------
# Producer and consumer ledgers


def _get(d: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d or not isinstance(d[key], kind):
        raise ValueError(f"ledger dict lacks {key!r} of type {kind}")
    return d[key]


class ProducerLedger:
    """What one producer sent, what the broker acknowledged, and what failed.

    Thread-safe: sends happen on the worker's thread, acks and failures arrive on the client
    library's callback threads. A producer id is unique in a run and lives in one worker.
    """

    def __init__(self, producer_id: str, topic: str) -> None:
        self.producer_id = producer_id
        self.topic = topic
        self.sent = IntervalSet()
        self.acked = IntervalSet()
        self.failed = IntervalSet()
        self._lock = threading.Lock()

    def record_sent(self, seq: int) -> None:
        """Note that ``seq`` was handed to the client library."""
        with self._lock:
            self.sent.add(seq)

    def record_acked(self, seq: int) -> None:
        """Note that the broker acknowledged ``seq``."""
        with self._lock:
            self.acked.add(seq)

    def record_failed(self, seq: int) -> None:
        """Note that the send of ``seq`` reported an error (it may still have been stored)."""
        with self._lock:
            self.failed.add(seq)

    def join(self, other: ProducerLedger) -> None:
        """Add in another snapshot of the same producer (sets unite)."""
        if (other.producer_id, other.topic) != (self.producer_id, self.topic):
            raise ValueError(
                f"cannot join producer {other.producer_id!r} on {other.topic!r} "
                f"into {self.producer_id!r} on {self.topic!r}"
            )
        with other._lock:
            sent, acked, failed = other.sent.copy(), other.acked.copy(), other.failed.copy()
        with self._lock:
            self.sent = self.sent.union(sent)
            self.acked = self.acked.union(acked)
            self.failed = self.failed.union(failed)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able snapshot."""
        with self._lock:
            return {
                "producer_id": self.producer_id,
                "topic": self.topic,
                "sent": self.sent.to_list(),
                "acked": self.acked.to_list(),
                "failed": self.failed.to_list(),
            }

    @classmethod
    def from_dict(cls, d: Any) -> ProducerLedger:
        """Rebuild a ledger from :meth:`to_dict` output; raise ValueError if malformed."""
        ledger = cls(_get(d, "producer_id", str), _get(d, "topic", str))
        ledger.sent = IntervalSet.from_list(_get(d, "sent", list))
        ledger.acked = IntervalSet.from_list(_get(d, "acked", list))
        ledger.failed = IntervalSet.from_list(_get(d, "failed", list))
        return ledger


@dataclass
class ReceivedFrom:
    """What one consumer ledger received from one producer."""

    received: IntervalSet = field(default_factory=IntervalSet)
    duplicates: int = 0
    """Receipts of a sequence number this ledger had already received."""
    reordered: int = 0
    """First receipts of a sequence number below the highest one already received: a message
    delivered out of order. A duplicate is counted as a duplicate only, never here too."""
    max_seen: int = -1


class ConsumerLedger:
    """What one consumer (or several consumers of one subscription in one worker) received.

    ``consumer_id`` must be unique in the run. Sharing one ledger among a worker's consumers of
    a shared subscription keeps its ranges contiguous; reordering is then counted across them.
    Thread-safe: receipts arrive on the client library's threads.
    """

    def __init__(self, run_id: str, topic: str, subscription: str, consumer_id: str) -> None:
        self.run_id = run_id
        self.topic = topic
        self.subscription = subscription
        self.consumer_id = consumer_id
        self.by_producer: dict[str, ReceivedFrom] = {}
        self.foreign = 0
        """Receipts of well-formed payloads from another run (e.g. an old backlog)."""
        self.undecodable = 0
        """Receipts of bytes that are not a benchmark payload at all."""
        self._lock = threading.Lock()

    @property
    def key(self) -> tuple[str, str]:
        """The (topic, subscription) this ledger belongs to."""
        return (self.topic, self.subscription)

    def record(self, header: PayloadHeader) -> bool:
        """Note one receipt; return True if it was the first receipt of that message."""
        with self._lock:
            if header.run_id != self.run_id:
                self.foreign += 1
                return False
            r = self.by_producer.get(header.producer_id)
            if r is None:
                r = self.by_producer[header.producer_id] = ReceivedFrom()
            if not r.received.add(header.seq):
                r.duplicates += 1
                return False
            if header.seq < r.max_seen:
                r.reordered += 1
            else:
                r.max_seen = header.seq
            return True

    def record_payload(self, data: bytes | bytearray | memoryview) -> PayloadHeader | None:
        """Decode and record one message; return its header, or None if foreign/undecodable."""
        try:
            header = decode_payload(data)
        except PayloadError:
            with self._lock:
                self.undecodable += 1
            return None
        self.record(header)
        return header if header.run_id == self.run_id else None

    def join(self, other: ConsumerLedger) -> None:
        """Add in another snapshot of the same consumer: sets unite, counters take the max."""
        ident = (self.run_id, self.topic, self.subscription, self.consumer_id)
        other_ident = (other.run_id, other.topic, other.subscription, other.consumer_id)
        if ident != other_ident:
            raise ValueError(f"cannot join consumer ledger {other_ident} into {ident}")
        theirs = ConsumerLedger.from_dict(other.to_dict())  # a consistent copy, lock-free after
        with self._lock:
            self.foreign = max(self.foreign, theirs.foreign)
            self.undecodable = max(self.undecodable, theirs.undecodable)
            for pid, t in theirs.by_producer.items():
                mine = self.by_producer.get(pid)
                if mine is None:
                    self.by_producer[pid] = t
                    continue
                mine.received = mine.received.union(t.received)
                mine.duplicates = max(mine.duplicates, t.duplicates)
                mine.reordered = max(mine.reordered, t.reordered)
                mine.max_seen = max(mine.max_seen, t.max_seen)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able snapshot."""
        with self._lock:
            return {
                "run_id": self.run_id,
                "topic": self.topic,
                "subscription": self.subscription,
                "consumer_id": self.consumer_id,
                "foreign": self.foreign,
                "undecodable": self.undecodable,
                "by_producer": {
                    pid: {
                        "received": r.received.to_list(),
                        "duplicates": r.duplicates,
                        "reordered": r.reordered,
                        "max_seen": r.max_seen,
                    }
                    for pid, r in self.by_producer.items()
                },
            }

    @classmethod
    def from_dict(cls, d: Any) -> ConsumerLedger:
        """Rebuild a ledger from :meth:`to_dict` output; raise ValueError if malformed."""
        ledger = cls(
            _get(d, "run_id", str),
            _get(d, "topic", str),
            _get(d, "subscription", str),
            _get(d, "consumer_id", str),
        )
        ledger.foreign = _get(d, "foreign", int)
        ledger.undecodable = _get(d, "undecodable", int)
        for pid, r in _get(d, "by_producer", dict).items():
            ledger.by_producer[pid] = ReceivedFrom(
                received=IntervalSet.from_list(_get(r, "received", list)),
                duplicates=_get(r, "duplicates", int),
                reordered=_get(r, "reordered", int),
                max_seen=_get(r, "max_seen", int),
            )
        return ledger


# ---------------------------------------------------------------------------------------------
# Reconciliation


@dataclass(frozen=True)
class ProducerLoss:
    """One producer's figures on one subscription."""

    producer_id: str
    acked: int
    received: int
    lost: int
    duplicated: int
    received_not_acked: int
    reordered: int
    lost_ranges: list[list[int]]
    """The lost sequence numbers as ``[[a, b], ...]``, to place a loss in time."""


@dataclass(frozen=True)
class LossReport:
    """Exact delivery figures for one (topic, subscription).

    - ``acked``: messages the broker acknowledged to a producer;
    - ``received``: distinct messages the subscription received;
    - ``lost``: acknowledged and never received;
    - ``duplicated``: receipts beyond the first of a message, within a consumer and across the
      subscription's consumers;
    - ``received_not_acked``: received although no ack was recorded (the ack was lost, or the
      send timed out after the broker stored it, or the producer's ledger is missing);
    - ``reordered``: first receipts below a sequence number a consumer had already received;
    - ``foreign`` / ``undecodable``: receipts from another run / of non-benchmark bytes.
    """

    topic: str
    subscription: str
    acked: int
    received: int
    lost: int
    duplicated: int
    received_not_acked: int
    reordered: int
    foreign: int
    undecodable: int
    per_producer: dict[str, ProducerLoss]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        d = {k: v for k, v in self.__dict__.items() if k != "per_producer"}
        d["per_producer"] = {pid: dict(p.__dict__) for pid, p in self.per_producer.items()}
        return d


def reconcile(
    topic: str,
    subscription: str,
    producer_ledgers: Iterable[ProducerLedger],
    consumer_ledgers: Iterable[ConsumerLedger],
) -> LossReport:
    """Compare what the producers of ``topic`` had acknowledged with what ``subscription`` got.

    Pass every producer ledger of the topic and every consumer ledger of the subscription
    (snapshots of one ledger may repeat: they are joined). A ledger of another topic or
    subscription is a ValueError, because mixing subscriptions would hide a loss. With no
    consumer ledger at all, everything acknowledged is lost.
    """
    producers: dict[str, ProducerLedger] = {}
    for p in producer_ledgers:
        if p.topic != topic:
            raise ValueError(f"producer {p.producer_id!r} writes {p.topic!r}, not {topic!r}")
        if p.producer_id in producers:
            producers[p.producer_id].join(p)
        else:
            producers[p.producer_id] = ProducerLedger.from_dict(p.to_dict())
    consumers: dict[str, ConsumerLedger] = {}
    for c in consumer_ledgers:
        if c.key != (topic, subscription):
            raise ValueError(
                f"consumer ledger {c.consumer_id!r} is for {c.key}, not {(topic, subscription)}"
            )
        if c.consumer_id in consumers:
            consumers[c.consumer_id].join(c)
        else:
            consumers[c.consumer_id] = ConsumerLedger.from_dict(c.to_dict())

    producer_ids = set(producers)
    for c in consumers.values():
        producer_ids.update(c.by_producer)
    per_producer: dict[str, ProducerLoss] = {}
    for pid in sorted(producer_ids):
        acked = producers[pid].acked if pid in producers else IntervalSet()
        received = IntervalSet()
        receipts = reordered = 0
        for c in consumers.values():
            r = c.by_producer.get(pid)
            if r is not None:
                received = received.union(r.received)
                receipts += len(r.received) + r.duplicates
                reordered += r.reordered
        lost = acked.difference(received)
        per_producer[pid] = ProducerLoss(
            producer_id=pid,
            acked=len(acked),
            received=len(received),
            lost=len(lost),
            duplicated=receipts - len(received),
            received_not_acked=len(received.difference(acked)),
            reordered=reordered,
            lost_ranges=lost.to_list(),
        )
    rows = per_producer.values()
    return LossReport(
        topic=topic,
        subscription=subscription,
        acked=sum(p.acked for p in rows),
        received=sum(p.received for p in rows),
        lost=sum(p.lost for p in rows),
        duplicated=sum(p.duplicated for p in rows),
        received_not_acked=sum(p.received_not_acked for p in rows),
        reordered=sum(p.reordered for p in rows),
        foreign=sum(c.foreign for c in consumers.values()),
        undecodable=sum(c.undecodable for c in consumers.values()),
        per_producer=per_producer,
    )


class LedgerBook:
    """All the ledgers of a worker (or, after joins, of a run), shipped as one snapshot.

    Thread-safe. ``to_dict`` snapshots are cumulative; joining snapshots of the same ledgers,
    from any workers and any moments, in any order, gives the union of what they knew.
    """

    def __init__(self) -> None:
        self.producers: dict[str, ProducerLedger] = {}
        self.consumers: dict[str, ConsumerLedger] = {}
        self._lock = threading.Lock()

    def producer(self, producer_id: str, topic: str) -> ProducerLedger:
        """Return the ledger of ``producer_id``, creating it on first use."""
        with self._lock:
            p = self.producers.get(producer_id)
            if p is None:
                p = self.producers[producer_id] = ProducerLedger(producer_id, topic)
        if p.topic != topic:
            raise ValueError(f"producer {producer_id!r} already writes {p.topic!r}, not {topic!r}")
        return p

    def consumer(
        self, run_id: str, topic: str, subscription: str, consumer_id: str
    ) -> ConsumerLedger:
        """Return the ledger of ``consumer_id``, creating it on first use.

        Create it when the consumer subscribes, even if it never receives anything: a
        subscription is reconciled only if some ledger names it.
        """
        with self._lock:
            c = self.consumers.get(consumer_id)
            if c is None:
                c = self.consumers[consumer_id] = ConsumerLedger(
                    run_id, topic, subscription, consumer_id
                )
        if (c.run_id, c.key) != (run_id, (topic, subscription)):
            raise ValueError(f"consumer {consumer_id!r} already exists for {c.key}")
        return c

    def consumer_ledgers(self) -> list[ConsumerLedger]:
        """The consumer ledgers held now (a list taken under the book's lock)."""
        with self._lock:
            return list(self.consumers.values())

    def join(self, other: LedgerBook) -> None:
        """Add in every ledger of ``other`` (ledgers with the same id are joined)."""
        with other._lock:
            theirs_p = list(other.producers.values())
            theirs_c = list(other.consumers.values())
        for p in theirs_p:
            self._join_producer(ProducerLedger.from_dict(p.to_dict()))
        for c in theirs_c:
            self._join_consumer(ConsumerLedger.from_dict(c.to_dict()))

    def _join_producer(self, p: ProducerLedger) -> None:
        with self._lock:
            mine = self.producers.setdefault(p.producer_id, p)
        if mine is not p:
            mine.join(p)

    def _join_consumer(self, c: ConsumerLedger) -> None:
        with self._lock:
            mine = self.consumers.setdefault(c.consumer_id, c)
        if mine is not c:
            mine.join(c)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able snapshot of every ledger."""
        with self._lock:
            producers = list(self.producers.values())
            consumers = list(self.consumers.values())
        return {
            "producers": [p.to_dict() for p in producers],
            "consumers": [c.to_dict() for c in consumers],
        }

    @classmethod
    def from_dict(cls, d: Any) -> LedgerBook:
        """Rebuild a book from :meth:`to_dict` output; raise ValueError if malformed."""
        book = cls()
        for pd in _get(d, "producers", list):
            book._join_producer(ProducerLedger.from_dict(pd))
        for cd in _get(d, "consumers", list):
            book._join_consumer(ConsumerLedger.from_dict(cd))
        return book

    def reconcile(self) -> list[LossReport]:
        """Return one :class:`LossReport` per (topic, subscription), sorted by that key."""
        with self._lock:
            producers = list(self.producers.values())
            consumers = list(self.consumers.values())
        by_topic: dict[str, list[ProducerLedger]] = {}
        for p in producers:
            by_topic.setdefault(p.topic, []).append(p)
        by_sub: dict[tuple[str, str], list[ConsumerLedger]] = {}
        for c in consumers:
            by_sub.setdefault(c.key, []).append(c)
        return [
            reconcile(topic, sub, by_topic.get(topic, []), ledgers)
            for (topic, sub), ledgers in sorted(by_sub.items())
        ]
