"""Per-interval statistics that workers ship to the Runner (DESIGN.md section 2).

Inside a worker, producer and consumer callbacks feed a :class:`StatsRecorder`; once a second
the worker calls :meth:`StatsRecorder.snapshot_and_reset` and ships the resulting
:class:`IntervalStats` as JSON. The Runner merges them with :func:`merge`: counters add,
histograms merge exactly, ledger snapshots join.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.metrics import histograms
from bench.metrics.ledger import LedgerBook

# Counter names the framework uses; others are allowed (the dicts are open).
SENT = "sent"
ACKED = "acked"
SEND_ERRORS = "send_errors"
RECEIVED = "received"
CLAMPED_PREFIX = "clamped."
"""Counter ``clamped.<histogram>``: values recorded at the histogram's range edge."""


@dataclass
class IntervalStats:
    """What one worker (or, after :func:`merge`, several) measured over one interval.

    Times are ``time.time_ns()``. ``histograms`` maps a name (publish, publish_intended, e2e,
    lookup, create_topic, subscribe, ...) to :func:`bench.metrics.histograms.encode` text.
    ``ledger`` is an optional, cumulative :meth:`LedgerBook.to_dict` snapshot.
    """

    worker_id: str
    start_ns: int
    end_ns: int
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, str] = field(default_factory=dict)
    ledger: dict[str, Any] | None = None

    def histogram(self, name: str) -> HdrHistogram:
        """Return the decoded histogram ``name`` (empty if none was recorded)."""
        encoded = self.histograms.get(name)
        return histograms.decode(encoded) if encoded is not None else histograms.new_histogram()

    def to_json(self) -> str:
        """Return the stats as one JSON document."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        """Return the stats as a JSON-able object (the protocol's ``stats`` event)."""
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> IntervalStats:
        """Parse :meth:`to_json` output; raise ValueError if it is malformed."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: Any) -> IntervalStats:
        """Rebuild stats from :meth:`to_dict` output; raise ValueError if malformed."""
        if not isinstance(d, dict) or set(d) != set(cls.__dataclass_fields__):
            raise ValueError("interval stats JSON does not have the expected keys")
        stats = cls(**d)
        ok = (
            isinstance(stats.worker_id, str)
            and isinstance(stats.start_ns, int)
            and isinstance(stats.end_ns, int)
            and all(isinstance(v, int) for v in stats.counters.values())
            and all(isinstance(v, int) for v in stats.errors.values())
            and all(isinstance(v, str) for v in stats.histograms.values())
            and (stats.ledger is None or isinstance(stats.ledger, dict))
        )
        if not ok:
            raise ValueError("interval stats JSON has a value of the wrong type")
        return stats


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + v


def merge(stats: Sequence[IntervalStats]) -> IntervalStats:
    """Combine interval stats of several workers and/or several intervals.

    Counters and errors add; histograms merge exactly; the interval spans the earliest start
    to the latest end; ``worker_id`` lists the distinct ids, sorted, comma-separated. Ledger
    snapshots join (see :mod:`bench.metrics.ledger`), so repeated cumulative snapshots of a
    worker do not double count. Raises ValueError on an empty sequence.
    """
    if not stats:
        raise ValueError("nothing to merge")
    counters: dict[str, int] = {}
    errors: dict[str, int] = {}
    by_name: dict[str, list[str]] = {}
    book: LedgerBook | None = None
    for s in stats:
        _add(counters, s.counters)
        _add(errors, s.errors)
        for name, encoded in s.histograms.items():
            by_name.setdefault(name, []).append(encoded)
        if s.ledger is not None:
            book = book or LedgerBook()
            book.join(LedgerBook.from_dict(s.ledger))
    return IntervalStats(
        worker_id=",".join(sorted({s.worker_id for s in stats})),
        start_ns=min(s.start_ns for s in stats),
        end_ns=max(s.end_ns for s in stats),
        counters=counters,
        errors=errors,
        histograms={n: histograms.encode(histograms.merge(e)) for n, e in by_name.items()},
        ledger=book.to_dict() if book is not None else None,
    )


class StatsRecorder:
    """Accumulates one worker's counters, errors and histograms between snapshots.

    Thread-safe: pulsar-client and gRPC callbacks call it from their own threads. The worker
    calls :meth:`snapshot_and_reset` once a second (the recorder keeps no timer of its own).
    """

    def __init__(self, worker_id: str, start_ns: int) -> None:
        self.worker_id = worker_id
        self._start_ns = start_ns
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        # Latencies wait here until the snapshot records them in bulk (record_many): one list
        # append per value on the callback threads instead of a histogram update.
        self._values: dict[str, list[int]] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def error(self, kind: str, n: int = 1) -> None:
        """Count ``n`` errors of ``kind`` (e.g. the exception class name)."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + n

    def record_us(self, name: str, value_us: int) -> None:
        """Record a latency in microseconds into histogram ``name``.

        A value outside 1 us .. 1 h is recorded at the edge and counted in
        ``clamped.<name>``, so a figure can say it holds clamped values.
        """
        with self._lock:
            values = self._values.get(name)
            if values is None:
                values = self._values[name] = []
            values.append(value_us)

    def acked(
        self, counter: str, publish: tuple[str, int], intended: tuple[str, int] | None
    ) -> None:
        """One acknowledgement: the counter and its latencies under one lock (the hot path)."""
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + 1
            for name, value in (publish, intended) if intended else (publish,):
                values = self._values.get(name)
                if values is None:
                    values = self._values[name] = []
                values.append(value)

    def snapshot_and_reset(
        self, now_ns: int, ledger: dict[str, Any] | None = None
    ) -> IntervalStats:
        """Return what was recorded since the last snapshot (interval ending ``now_ns``).

        ``ledger`` (a :meth:`LedgerBook.to_dict` snapshot) is attached as given.
        """
        with self._lock:
            counters, self._counters = self._counters, {}
            errors, self._errors = self._errors, {}
            buffered, self._values = self._values, {}
            start_ns, self._start_ns = self._start_ns, now_ns
        hists: dict[str, HdrHistogram] = {}
        for name, values in buffered.items():
            h = hists[name] = histograms.new_histogram()
            clamped = histograms.record_many(h, values)
            if clamped:
                key = CLAMPED_PREFIX + name
                counters[key] = counters.get(key, 0) + clamped
        # Encoding takes a while; done outside the lock so callbacks are not held up.
        return IntervalStats(
            worker_id=self.worker_id,
            start_ns=start_ns,
            end_ns=now_ns,
            counters=counters,
            errors=errors,
            histograms={name: histograms.encode(h) for name, h in hists.items()},
            ledger=ledger,
        )
