"""Stitching of broker counters across broker restarts (DESIGN.md section 3, kill-9-recovery).

A broker's cumulative counters (Pulsar ``msgInCounter``, RocketMQ ``putMessageTimesTotal``...)
restart from zero when the broker process restarts. Read naively, the counter "drops" and a
before/after comparison lies. :class:`MonotonicCounter` detects the drop as a reset and keeps
a stitched total instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResetEvent:
    """A counter restart seen between two samples."""

    at_ns: int | None
    """Time of the first sample after the reset, as given to :meth:`MonotonicCounter.update`."""
    before: int
    """The last sample before the reset (the counter's maximum in its previous life)."""
    after: int
    """The first sample after the reset."""


class MonotonicCounter:
    """Feed it successive samples of one broker counter; read the stitched ``total``.

    ``total`` = sum of the last sample before each reset + the current sample. Counts made
    between the last sample before a crash and the crash itself are unknowable and so missing
    from the total: sample often. A restart whose counter has already climbed back past the
    previous sample cannot be seen in the values; pass ``restarted=True`` when the caller knows
    the broker restarted (e.g. it restarted it).
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._first: int | None = None
        self._last: int | None = None
        self._carried = 0
        self._resets: list[ResetEvent] = []

    def update(self, value: int, at_ns: int | None = None, *, restarted: bool = False) -> int:
        """Add one sample and return the stitched total.

        Raises ValueError on a negative sample (no counter we read can be negative).
        """
        if value < 0:
            raise ValueError(f"counter {self.name!r} sample {value} is negative")
        if self._last is None:
            self._first = value
        elif value < self._last or restarted:
            self._resets.append(ResetEvent(at_ns, self._last, value))
            self._carried += self._last
        self._last = value
        return self.total

    @property
    def total(self) -> int:
        """Stitched cumulative value (0 before any sample)."""
        return self._carried + (self._last or 0)

    @property
    def increase(self) -> int:
        """How much the counter grew since the first sample, across resets."""
        return self.total - (self._first or 0)

    @property
    def last(self) -> int | None:
        """The latest raw sample, or None before any."""
        return self._last

    @property
    def resets(self) -> list[ResetEvent]:
        """Every reset detected, oldest first (a copy)."""
        return list(self._resets)
