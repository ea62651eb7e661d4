"""Rate control: fixed-rate (open-loop) schedules and a bound on sends in flight (closed loop).

At a fixed rate, latency is measured from the *intended* send time, so a sender that falls
behind (a stalled broker, a full client queue) shows up as latency instead of silently lowering
the offered rate: coordinated omission is exposed, not hidden (DESIGN.md section 4). Every loop
here ends at a deadline and, optionally, after a number of messages.

Time comes from an injectable :class:`Clock`, so tests run on a :class:`FakeClock`.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

_NS_PER_S = 1_000_000_000


class Clock(Protocol):
    """A monotonic nanosecond clock that can sleep."""

    def now_ns(self) -> int:
        """Return the current time in ns (monotonic; the origin is arbitrary)."""
        ...

    def sleep_until_ns(self, t_ns: int) -> None:
        """Return once ``now_ns() >= t_ns`` (at once if that is already so)."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic_ns`` and ``time.sleep``."""

    def now_ns(self) -> int:
        """Return ``time.monotonic_ns()``."""
        return time.monotonic_ns()

    def sleep_until_ns(self, t_ns: int) -> None:
        """Sleep until ``t_ns``; loops because ``time.sleep`` may wake a little early."""
        while (remaining := t_ns - time.monotonic_ns()) > 0:
            time.sleep(remaining / _NS_PER_S)


class FakeClock:
    """A clock for tests: time moves only when slept through or advanced."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self.sleeps = 0
        """How many ``sleep_until_ns`` calls had to move time forward."""

    def now_ns(self) -> int:
        """Return the fake time."""
        return self._now

    def sleep_until_ns(self, t_ns: int) -> None:
        """Jump to ``t_ns`` if it is in the future."""
        if t_ns > self._now:
            self._now = t_ns
            self.sleeps += 1

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns`` (simulates work, e.g. a slow send)."""
        if ns < 0:
            raise ValueError("a clock does not go back")
        self._now += ns


@dataclass(frozen=True)
class Tick:
    """One send released by an :class:`OpenLoopSchedule`."""

    seq: int
    """0-based index of the send in the schedule."""
    intended_ns: int
    """When the send should happen: ``start_ns + seq / rate``. Measure latency from here."""
    actual_ns: int
    """When the schedule released it (never before ``intended_ns``)."""

    @property
    def delay_ns(self) -> int:
        """How late the send was released: ``actual_ns - intended_ns`` (>= 0)."""
        return self.actual_ns - self.intended_ns


class OpenLoopSchedule:
    """Releases sends at ``start_ns + i / rate_per_s``, i = 0, 1, 2, ...

    Iterating sleeps until each intended time and yields a :class:`Tick`. When the caller is
    behind, the next tick is released at once with its delay recorded, and intended times never
    move: the schedule does not skip sends, nor re-base itself to hide the lag. Iteration ends
    at the first of: ``max_messages`` ticks; the next intended time at or after
    ``deadline_ns``; the clock reaching ``deadline_ns`` while behind, in which case the
    sends still owed are counted in :attr:`unsent`.
    """

    def __init__(
        self,
        rate_per_s: float,
        start_ns: int,
        *,
        clock: Clock,
        deadline_ns: int,
        max_messages: int | None = None,
    ) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s > 0):
            raise ValueError(f"rate_per_s must be a positive number, not {rate_per_s}")
        if max_messages is not None and max_messages < 0:
            raise ValueError(f"max_messages must be >= 0, not {max_messages}")
        self.rate_per_s = rate_per_s
        self.start_ns = start_ns
        self.deadline_ns = deadline_ns
        self.max_messages = max_messages
        self._clock = clock
        # Exact rational period, so the i-th intended time carries no accumulated rounding.
        rate = Fraction(rate_per_s)
        self._num, self._den = rate.numerator, rate.denominator
        self.sent = 0
        """Ticks released so far."""
        self.max_delay_ns = 0
        """The largest delay of any released tick."""
        self._started = False

    def intended_ns(self, seq: int) -> int:
        """Return the intended time of send ``seq``."""
        return self.start_ns + (seq * _NS_PER_S * self._den) // self._num

    @property
    def planned(self) -> int:
        """How many sends the schedule owes: intended before the deadline, capped by count."""
        span = self.deadline_ns - self.start_ns
        # Count of i >= 0 with floor(i * 1e9 / rate) < span, i.e. i < span * rate / 1e9.
        n = max(0, -(-span * self._num // (_NS_PER_S * self._den)))
        return n if self.max_messages is None else min(n, self.max_messages)

    @property
    def unsent(self) -> int:
        """Sends owed but not released (non-zero if the deadline passed while behind)."""
        return self.planned - self.sent

    def __iter__(self) -> Iterator[Tick]:
        if self._started:
            raise RuntimeError("an OpenLoopSchedule can be iterated only once")
        self._started = True
        return self._ticks()

    def _ticks(self) -> Iterator[Tick]:
        for seq in range(self.planned):
            intended = self.intended_ns(seq)
            self._clock.sleep_until_ns(intended)
            now = self._clock.now_ns()
            if now >= self.deadline_ns:
                return
            tick = Tick(seq, intended, now)
            self.sent += 1
            self.max_delay_ns = max(self.max_delay_ns, tick.delay_ns)
            yield tick


class ClosedLoopLimiter:
    """Bounds the number of asynchronous sends in flight.

    Acquire before a send, release in its completion callback (on any thread). Thread-safe.
    """

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self._cond = threading.Condition()
        self.acquire_timeouts = 0
        """How many acquires timed out (the broker or client did not complete sends)."""

    @property
    def in_flight(self) -> int:
        """Sends acquired and not yet released."""
        with self._cond:
            return self._in_flight

    def acquire(self, timeout_s: float) -> bool:
        """Take a slot, waiting up to ``timeout_s``; return False on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._in_flight < self.max_in_flight, timeout_s)
            if ok:
                self._in_flight += 1
            else:
                self.acquire_timeouts += 1
            return ok

    def release(self) -> None:
        """Give a slot back. Raises RuntimeError if none is taken (a double release is a bug)."""
        with self._cond:
            if self._in_flight == 0:
                raise RuntimeError("release() without a matching acquire()")
            self._in_flight -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every send to complete; return False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout_s)

    def slots(
        self,
        clock: Clock,
        deadline_ns: int,
        max_messages: int | None = None,
        acquire_timeout_s: float = 0.1,
    ) -> Iterator[int]:
        """Yield sequence numbers 0, 1, ..., each after acquiring a slot for it.

        Ends at ``max_messages`` or when ``clock`` reaches ``deadline_ns``. A timed-out acquire
        is retried (and counted in :attr:`acquire_timeouts`) until the deadline.
        """
        for seq in itertools.count() if max_messages is None else range(max_messages):
            while True:
                remaining = deadline_ns - clock.now_ns()
                if remaining <= 0:
                    return
                if self.acquire(min(acquire_timeout_s, remaining / _NS_PER_S)):
                    break
            yield seq
