"""The drain: how a worker knows every acknowledged message has reached its subscriptions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.engines.python.senders import Slot
from bench.metrics.ledger import ConsumerLedger, IntervalSet, LedgerBook, ProducerLedger


@dataclass
class DrainClock:
    """One drain: it ends when nothing is missing, at its deadline, or once the count of
    missing messages has not fallen for ``stall_s`` (``None``: never early)."""

    started: float
    timeout_s: float
    stall_s: float | None
    progress_at: float = field(init=False)
    fewest: int = field(init=False, default=-1)

    def __post_init__(self) -> None:
        self.progress_at = self.started

    def check(self, now: float, missing: int) -> dict[str, Any] | None:
        """``missing`` is -1 while sends are still in flight. The outcome once it is over."""
        if missing < 0 or self.fewest < 0 or missing < self.fewest:
            self.progress_at = now  # acks still coming in, or messages arriving
            self.fewest = missing
        stalled = self.stall_s is not None and now - self.progress_at >= self.stall_s
        if missing == 0 or now >= self.started + self.timeout_s or stalled:
            return {
                "ok": missing == 0,
                "undelivered": missing,
                "seconds": now - self.started,
                "stalled": stalled and missing != 0,
            }
        return None


def undelivered(slots: Sequence[Slot], book: LedgerBook, oneway: bool) -> int:
    """Messages acknowledged (ONEWAY: sent) by ``slots`` that some tracked subscription of
    their topic has not received yet."""
    expected: dict[str, list[tuple[str, IntervalSet]]] = {}
    for slot in slots:
        snap = ProducerLedger.from_dict(slot.ledger.to_dict())
        expected.setdefault(slot.topic, []).append(
            (slot.producer_id, snap.sent if oneway else snap.acked)
        )
    missing = 0
    for c in book.consumer_ledgers():
        snap_c = ConsumerLedger.from_dict(c.to_dict())
        for pid, want in expected.get(snap_c.topic, []):
            got = snap_c.by_producer.get(pid)
            missing += len(want.difference(got.received)) if got else len(want)
    return missing
