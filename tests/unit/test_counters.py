"""Broker counters are stitched across restarts, not reported as a drop."""

from __future__ import annotations

import pytest

from bench.metrics.counters import MonotonicCounter, ResetEvent


def test_stitches_across_resets() -> None:
    c = MonotonicCounter("msgInCounter")
    assert c.total == 0 and c.last is None
    for t, v in enumerate([100, 150, 200]):
        c.update(v, at_ns=t)
    assert c.update(5, at_ns=3) == 205  # broker restarted: 200 before, 5 since
    assert c.update(40, at_ns=4) == 240
    assert c.update(0, at_ns=5) == 240  # a second restart, nothing counted yet
    assert c.update(7, at_ns=6) == 247
    assert c.resets == [ResetEvent(3, 200, 5), ResetEvent(5, 40, 0)]
    assert c.increase == 147  # from the first sample (100)
    assert c.last == 7


def test_no_reset_while_monotonic_including_flat_samples() -> None:
    c = MonotonicCounter()
    for v in [0, 0, 3, 3, 10]:
        c.update(v)
    assert (c.total, c.resets) == (10, [])


def test_known_restart_without_a_visible_drop() -> None:
    c = MonotonicCounter()
    c.update(10)
    c.update(25, restarted=True)  # climbed past 10 before the first sample after restart
    assert c.total == 35
    assert c.resets == [ResetEvent(None, 10, 25)]


def test_rejects_negative_samples() -> None:
    with pytest.raises(ValueError):
        MonotonicCounter("x").update(-1)
