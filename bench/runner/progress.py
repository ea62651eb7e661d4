"""Where a run says what it is doing: permanent lines, and a live display of the current step.

Permanent lines (step start, step summary, infra up/down, warnings) always come out whole. On
an interactive terminal the current step also has a live line drawn with ``rich`` (step n of N,
label, phase, elapsed and time left, current rate, errors), redrawn from the caller's thread at
most ``refresh_per_s`` times a second (no refresh thread) and erased when the step ends. Anywhere
else (CI logs, pipes) the live line degrades to a plain line at most every ``log_every_s``
seconds, with no escape codes.
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Where the runner reports what it is doing.

    ``console`` overrides the console built on ``stream`` (tests force a terminal with it); a
    console that is not interactive gets plain lines; ``clock`` is for tests. Use as a context
    manager, or call :meth:`close`, so the live display is stopped whatever happens (an
    interpreter exit stops it too, but a line written to the screen before that, bypassing
    Python's ``sys.stderr``, would land on the live line).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        log_every_s: float = 10.0,
        *,
        console: Console | None = None,
        refresh_per_s: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if console is None:
            self.stream = stream or sys.stderr
            # Not a terminal means plain lines, whatever FORCE_COLOR says: CI logs stay plain.
            console = Console(
                file=self.stream, force_terminal=None if _isatty(self.stream) else False
            )
        else:
            self.stream = console.file
        self.console = console
        self.clock = clock
        self.tty = console.is_interactive
        self.log_every_s = log_every_s
        self.refresh_every_s = 1.0 / refresh_per_s
        self._last_log = float("-inf")
        self._last_refresh = float("-inf")
        self._live: Live | None = None
        self.step_label = ""
        self.step_started = clock()
        self.step_total_s: float | None = None
        self.steps_done = 0
        self.steps_total = 0

    def message(self, text: str) -> None:
        """A line that stays (step start/end, infra up/down, warnings)."""
        if self.tty:
            # Printed above the live line, which rich redraws below it; never cut or wrapped.
            self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def start_step(self, label: str, expected_s: float | None) -> None:
        """A step begins: ``label`` names it, ``expected_s`` is its planned duration if known."""
        self._stop_live()
        self.step_label = label
        self.step_started = self.clock()
        self.step_total_s = expected_s
        self._last_refresh = float("-inf")
        self.message(f"[{self.steps_done + 1}/{self.steps_total}] {label}")

    def end_step(self, summary: str) -> None:
        """The step ended: the live line goes, ``summary`` stays."""
        self._stop_live()
        self.steps_done += 1
        self.message(f"    {summary}")

    def tick(self, tps: float, errors: int, phase: str = "") -> None:
        """Update the live line (call about once a second)."""
        now = self.clock()
        elapsed = now - self.step_started
        if self.tty:
            if now - self._last_refresh < self.refresh_every_s:
                return
            self._last_refresh = now
            shown = self._render(elapsed, tps, errors, phase)
            if self._live is None:
                self._live = Live(
                    shown,
                    console=self.console,
                    auto_refresh=False,
                    transient=True,
                    # Python-level writes to the screen come out above the line, not through it.
                    redirect_stdout=self.console.file is sys.stderr and _isatty(sys.stdout),
                    redirect_stderr=self.console.file is sys.stderr,
                )
                atexit.register(self._stop_live)
                self._live.start(refresh=True)
            else:
                self._live.update(shown, refresh=True)
        elif now - self._last_log >= self.log_every_s:
            self._last_log = now
            left = self._left(elapsed)
            remaining = f" / ~{left:.0f} s left" if left is not None else ""
            print(
                f"    {phase + ' ' if phase else ''}{elapsed:5.0f} s{remaining} | "
                f"{tps:9.0f} msg/s | errors {errors}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        """Stop the live display (if any); permanent lines still print afterwards."""
        self._stop_live()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _left(self, elapsed: float) -> float | None:
        return max(0.0, self.step_total_s - elapsed) if self.step_total_s else None

    def _render(self, elapsed: float, tps: float, errors: int, phase: str) -> RenderableType:
        left = self._left(elapsed)
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        cells: list[RenderableType] = [
            Text(f"[{self.steps_done + 1}/{self.steps_total}]", style="bold"),
            Text(self.step_label),
            Text(phase or "-", style="cyan"),
        ]
        if self.step_total_s:
            cells.append(ProgressBar(total=self.step_total_s, completed=elapsed, width=10))
        cells += [
            Text(f"{elapsed:.0f} s" + (f" / ~{left:.0f} s left" if left is not None else "")),
            Text(f"{tps:,.0f} msg/s", style="bold"),
            Text(f"errors {errors:,}", style="bold red" if errors else "green"),
        ]
        for _ in cells[2:]:
            grid.add_column(no_wrap=True)
        grid.add_row(*cells)
        return grid

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            atexit.unregister(self._stop_live)
            live.stop()


class QuietProgress(Progress):
    """Progress that prints nothing (tests, library use)."""

    def message(self, text: str) -> None:
        pass

    def tick(self, tps: float, errors: int, phase: str = "") -> None:
        pass
