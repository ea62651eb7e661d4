"""bench.clock: durations that a step of the wall clock does not move."""

from __future__ import annotations

import time

import pytest

from bench import clock


def test_a_wall_clock_step_moves_no_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    start = clock.now()
    assert abs(start - time.time()) < 5.0  # on the wall clock's scale
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600.0)
    time.sleep(0.05)
    took = clock.now() - start
    assert 0.05 <= took < 5.0
    # On the wall clock as it reads now: an hour back.
    assert clock.to_wall(start) == pytest.approx(start - 3600.0, abs=1.0)
