"""The run's progress display: plain throttled lines off a terminal, a rich live line on one,
permanent lines always whole, and nothing left on screen or running once it stops."""

from __future__ import annotations

import io
import re
import threading

import pytest
from rich.console import Console

from bench.runner.progress import Progress, QuietProgress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _terminal(clock: FakeClock, width: int = 120) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width)
    return Progress(console=console, clock=clock), out


def test_off_a_terminal_permanent_lines_stay_and_ticks_are_throttled() -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(out, log_every_s=10.0, clock=clock)
    progress.steps_total = 2
    progress.message("bringing pulsar up")
    progress.start_step("send-frequency pulsar-rate=100", 30.0)
    for second in range(26):  # one tick a second, as the load loop calls it
        clock.now = 1000.0 + second
        progress.tick(100.0, 0, "measure")
    progress.end_step("ok: 100 of 100 msg/s offered")

    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert lines[:2] == ["bringing pulsar up", "[1/2] send-frequency pulsar-rate=100"]
    assert lines[-1] == "    ok: 100 of 100 msg/s offered"
    ticks = lines[2:-1]
    assert len(ticks) == 3  # seconds 0, 10 and 20
    assert ticks[1] == "    measure    10 s / ~20 s left |       100 msg/s | errors 0"
    assert progress.steps_done == 1


def test_on_a_terminal_the_live_line_shows_step_phase_rate_and_errors() -> None:
    clock = FakeClock()
    progress, out = _terminal(clock)
    progress.steps_total = 28
    progress.steps_done = 2
    progress.start_step("kill-9-recovery pulsar-standalone", 60.0)
    clock.now += 12
    progress.tick(1234.0, 7, "fault")

    shown = ANSI.sub("", out.getvalue()).split("\n")[-1]
    assert shown.startswith("[3/28] kill-9-recovery pulsar-standalone")
    for part in ("fault", "12 s / ~48 s left", "1,234 msg/s", "errors 7"):
        assert part in shown
    progress.close()


def test_the_live_line_is_redrawn_at_most_four_times_a_second() -> None:
    clock = FakeClock()
    progress, out = _terminal(clock)
    progress.steps_total = 1
    progress.start_step("s", None)
    for n in range(20):  # 20 ticks within one second
        clock.now += 0.05
        progress.tick(float(n), 0, "measure")
    progress.close()
    assert 1 <= ANSI.sub("", out.getvalue()).count("msg/s") <= 5  # + the final redraw on stop


def test_a_permanent_message_during_a_live_tick_comes_out_whole() -> None:
    clock = FakeClock()
    progress, out = _terminal(clock, width=80)
    progress.steps_total = 1
    progress.start_step("topic-growth rocketmq-topics=1000", None)
    progress.tick(500.0, 0, "measure")
    # Longer than the terminal, with brackets that rich markup would eat.
    warning = "warning: [rocketmq] " + "topic creation is slower than planned " * 4
    progress.message(warning)
    clock.now += 1
    progress.tick(510.0, 0, "measure")
    progress.end_step("ok: 1,000 of 1,000 topics")

    text = ANSI.sub("", out.getvalue())
    # Whole: one line, not wrapped, not cut, nothing of the live line on it.
    assert "\r" + warning + "\n" in text
    assert text.endswith("\r    ok: 1,000 of 1,000 topics\n")


def test_stopping_leaves_no_live_display_and_no_thread() -> None:
    clock = FakeClock()
    threads = threading.active_count()
    progress, out = _terminal(clock)
    progress.steps_total = 2
    with pytest.raises(KeyboardInterrupt), progress:
        progress.start_step("send-frequency pulsar-rate=100", 10.0)
        progress.tick(100.0, 0, "warmup")
        assert threading.active_count() == threads  # refreshed by the caller, no thread
        raise KeyboardInterrupt  # Ctrl-C in the middle of a step: no end_step

    text = out.getvalue()
    assert text.rfind(SHOW_CURSOR) > text.rfind(HIDE_CURSOR) > 0
    # The live line is erased: nothing is redrawn after a later line.
    before = len(text)
    progress.message("bench: interrupted")
    assert out.getvalue()[before:] == "bench: interrupted\n"
    assert threading.active_count() == threads


def test_quiet_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress = QuietProgress()
    progress.steps_total = 1
    progress.start_step("s", 1.0)
    progress.tick(1.0, 0, "measure")
    progress.end_step("ok")
    assert progress.steps_done == 1
    assert capsys.readouterr() == ("", "")
