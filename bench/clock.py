"""Event times for durations: wall-clock seconds in scale, monotonic in their steps.

A machine booted moments ago still has its clock adjusted (steps of ~14 s were seen within
minutes), so a duration taken as the difference of two ``time.time()`` readings can be off by
the step, or negative. :func:`now` reads the wall clock once per process and advances it by the
monotonic clock: differences of its readings are true durations, and a single reading is still
close to the wall clock (for people, and for lining up with the workers' interval times, which
are wall-clock readings). :func:`to_wall` puts one of its readings on the wall clock as it reads
now.
"""

from __future__ import annotations

import time

_WALL0 = time.time()
_MONO0 = time.monotonic()


def now() -> float:
    """Seconds since the epoch as the wall clock read at import, advanced monotonically."""
    return _WALL0 + (time.monotonic() - _MONO0)


def to_wall(t: float) -> float:
    """``t`` (a :func:`now` reading) on the wall clock as it reads at this moment."""
    return t + (time.time() - now())
