"""A live progress line for long runs: step, broker, elapsed/remaining, current TPS, errors.

On a terminal the line is rewritten in place; otherwise (CI logs) a plain line is printed at
most every ``log_every_s`` seconds, so a nightly log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Where the runner reports what it is doing."""

    def __init__(self, stream: TextIO | None = None, log_every_s: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every_s = log_every_s
        self._last_log = 0.0
        self._live = False
        self.step_label = ""
        self.step_started = time.monotonic()
        self.step_total_s: float | None = None
        self.steps_done = 0
        self.steps_total = 0

    def message(self, text: str) -> None:
        """A line that stays (step start/end, infra up/down, warnings)."""
        self._clear()
        print(text, file=self.stream, flush=True)

    def start_step(self, label: str, expected_s: float | None) -> None:
        self.step_label = label
        self.step_started = time.monotonic()
        self.step_total_s = expected_s
        self.message(f"[{self.steps_done + 1}/{self.steps_total}] {label}")

    def end_step(self, summary: str) -> None:
        self.steps_done += 1
        self.message(f"    {summary}")

    def tick(self, tps: float, errors: int, phase: str = "") -> None:
        """Update the live line (call about once a second)."""
        elapsed = time.monotonic() - self.step_started
        remaining = (
            f" / ~{max(0.0, self.step_total_s - elapsed):.0f} s left" if self.step_total_s else ""
        )
        text = (
            f"    {phase + ' ' if phase else ''}{elapsed:5.0f} s{remaining} | "
            f"{tps:9.0f} msg/s | errors {errors}"
        )
        if self.tty:
            self.stream.write("\r" + text.ljust(78))
            self.stream.flush()
            self._live = True
        elif time.monotonic() - self._last_log >= self.log_every_s:
            self._last_log = time.monotonic()
            print(text, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._live:
            self.stream.write("\r" + " " * 78 + "\r")
            self._live = False


class QuietProgress(Progress):
    """Progress that prints nothing (tests, library use)."""

    def message(self, text: str) -> None:
        pass

    def tick(self, tps: float, errors: int, phase: str = "") -> None:
        pass
