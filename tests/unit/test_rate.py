"""Rate control: intended times are kept, lateness is recorded, in-flight sends are bounded."""

from __future__ import annotations

import threading
import time

import pytest

from bench.runner.rate import ClosedLoopLimiter, FakeClock, MonotonicClock, OpenLoopSchedule

S = 1_000_000_000


def test_on_time_sender_sends_exactly_at_intended_times() -> None:
    clock = FakeClock(start_ns=5 * S)
    sched = OpenLoopSchedule(4, 5 * S, clock=clock, deadline_ns=7 * S)
    ticks = list(sched)
    assert [t.seq for t in ticks] == list(range(8))
    assert [t.intended_ns for t in ticks] == [5 * S + i * S // 4 for i in range(8)]
    assert all(t.actual_ns == t.intended_ns and t.delay_ns == 0 for t in ticks)
    assert (sched.planned, sched.sent, sched.unsent, sched.max_delay_ns) == (8, 8, 0, 0)


def test_intended_times_do_not_drift_at_fractional_periods() -> None:
    sched = OpenLoopSchedule(3, 0, clock=FakeClock(), deadline_ns=10**6 * S)
    assert [sched.intended_ns(i) for i in range(4)] == [0, 333_333_333, 666_666_666, S]
    assert sched.intended_ns(3 * 10**6) == 10**6 * S
    assert OpenLoopSchedule(0.5, 0, clock=FakeClock(), deadline_ns=S).intended_ns(3) == 6 * S


def test_slow_sender_is_sent_immediately_with_its_delay_recorded() -> None:
    clock = FakeClock()
    period = S // 10
    sched = OpenLoopSchedule(10, 0, clock=clock, deadline_ns=S)
    ticks = []
    for t in sched:
        ticks.append(t)
        if t.seq == 2:
            clock.advance(3 * period + period // 2)  # one send stalls for 3.5 periods
        assert clock.now_ns() >= t.intended_ns  # never released early
    assert [t.seq for t in ticks] == list(range(10))  # nothing skipped
    assert [t.intended_ns for t in ticks] == [i * period for i in range(10)]  # nothing re-based
    assert [t.delay_ns for t in ticks[:6]] == [0, 0, 0, 25 * S // 100, 15 * S // 100, 5 * S // 100]
    # ... and the rest are on time again: the catch-up is a burst only while behind.
    assert [t.delay_ns for t in ticks[6:]] == [0, 0, 0, 0]
    assert sched.max_delay_ns == 25 * S // 100


def test_deadline_passed_while_behind_counts_unsent() -> None:
    clock = FakeClock()
    sched = OpenLoopSchedule(100, 0, clock=clock, deadline_ns=S)
    for t in sched:
        if t.seq == 49:
            clock.advance(S)  # the sender hangs past the deadline
    assert (sched.planned, sched.sent, sched.unsent) == (100, 50, 50)
    assert clock.now_ns() == S + 49 * S // 100  # and the loop did not keep going


def test_max_messages_bounds_the_schedule_and_single_use() -> None:
    sched = OpenLoopSchedule(1000, 0, clock=FakeClock(), deadline_ns=3600 * S, max_messages=7)
    assert len(list(sched)) == 7
    assert sched.unsent == 0
    with pytest.raises(RuntimeError):
        iter(sched)
    with pytest.raises(ValueError):
        OpenLoopSchedule(0, 0, clock=FakeClock(), deadline_ns=S)


def test_monotonic_clock_sleeps_until_target() -> None:
    clock = MonotonicClock()
    target = clock.now_ns() + 20_000_000
    clock.sleep_until_ns(target)
    assert clock.now_ns() >= target


def test_limiter_blocks_at_bound_and_release_from_another_thread_unblocks() -> None:
    lim = ClosedLoopLimiter(2)
    assert lim.acquire(0.1) and lim.acquire(0.1)
    assert lim.in_flight == 2
    assert lim.acquire(0.05) is False
    assert lim.acquire_timeouts == 1
    threading.Timer(0.05, lim.release).start()  # an ack callback on another thread
    t0 = time.monotonic()
    assert lim.acquire(5.0) is True
    assert time.monotonic() - t0 < 4.0
    lim.release()
    lim.release()
    assert lim.wait_idle(0.1)
    with pytest.raises(RuntimeError):
        lim.release()


def test_limiter_bounds_concurrent_senders() -> None:
    lim = ClosedLoopLimiter(3)
    lock = threading.Lock()
    current = peak = 0
    done = 0

    def ack_later() -> None:
        nonlocal current, done
        with lock:
            current -= 1
            done += 1
        lim.release()

    def sender() -> None:
        nonlocal current, peak
        for _ in range(40):
            assert lim.acquire(5.0)
            with lock:
                current += 1
                peak = max(peak, current)
            threading.Timer(0.001, ack_later).start()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert lim.wait_idle(10)
    assert done == 160
    assert peak == 3


def test_closed_loop_slots_end_at_count_and_at_deadline() -> None:
    clock = MonotonicClock()
    lim = ClosedLoopLimiter(4)
    seqs = []
    for seq in lim.slots(clock, clock.now_ns() + 10 * S, max_messages=10):
        seqs.append(seq)
        lim.release()
    assert seqs == list(range(10))

    # Nothing is ever acked: after 4 sends the loop waits, and stops at the deadline.
    lim = ClosedLoopLimiter(4)
    t0 = clock.now_ns()
    assert list(lim.slots(clock, t0 + S // 5, acquire_timeout_s=0.05)) == [0, 1, 2, 3]
    assert S // 5 <= clock.now_ns() - t0 < 2 * S
    assert lim.acquire_timeouts >= 3
