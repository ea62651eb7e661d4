"""When a kill -9 step has observed enough: the workers' clients must be back, not just the
broker (a Pulsar client's reconnect backoff can outlast a short observation window)."""

from __future__ import annotations

from bench.metrics.intervals import IntervalStats
from bench.runner.kill_recovery import _clients_back
from bench.runner.measure import StepMeter

S = 1_000_000_000


def _meter(per_second: list[tuple[int, int]], phase: str = "measure") -> StepMeter:
    """One tick a second from t=1 s: (acked, received)."""
    meter = StepMeter("kill-9-recovery", "s", "pulsar", 0.0)
    for i, (acked, received) in enumerate(per_second):
        counters = {"acked": acked, "received": received}
        meter.add([IntervalStats("w0", i * S, (i + 1) * S, counters)], phase)
    return meter


def test_clients_are_back_once_they_send_receive_and_carry_the_rate() -> None:
    # 100/s before the kill at 3 s; broker back at 6 s; clients idle, then back at 9 s.
    before = [(100, 100)] * 3
    down = [(0, 0)] * 3
    reconnecting = [(0, 0)] * 3
    meter = _meter(before + down + reconnecting)
    assert not _clients_back(meter, killed=3.0, resumed=6.0)
    meter.add([IntervalStats("w0", 9 * S, 10 * S, {"acked": 95, "received": 0})], "measure")
    assert not _clients_back(meter, killed=3.0, resumed=6.0), "consumers are not back yet"
    meter.add([IntervalStats("w0", 10 * S, 11 * S, {"acked": 50, "received": 80})], "measure")
    assert _clients_back(meter, killed=3.0, resumed=6.0)


def test_a_rate_below_nine_tenths_is_not_recovered() -> None:
    meter = _meter([(100, 100)] * 3 + [(0, 0)] * 3 + [(80, 80)] * 5)
    assert not _clients_back(meter, killed=3.0, resumed=6.0)


def test_drain_ticks_do_not_count() -> None:
    meter = _meter([(100, 100)] * 3 + [(0, 0)] * 3)
    meter.add([IntervalStats("w0", 6 * S, 7 * S, {"acked": 100, "received": 100})], "drain")
    assert not _clients_back(meter, killed=3.0, resumed=5.0)
