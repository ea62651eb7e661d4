"""Topic creation as the scenarios use it: counted, and ended early (saying why) when the
broker goes away, refuses everything, or the step is abandoned."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, cast

from bench.drivers.base import Driver, TopicResult
from bench.errors import BrokerUnavailable
from bench.runner.common import MAX_CONSECUTIVE_CREATE_ERRORS, create_topics


class ScriptedDriver:
    """create_topics answers from a script: "ok", "fail", or "gone" (the broker vanished)."""

    def __init__(self, script: Sequence[str], on_each: Any = None) -> None:
        self.script = list(script)
        self.on_each = on_each
        self.asked = 0
        self.closed = False

    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        try:
            for name, what in zip(names, self.script, strict=False):
                self.asked += 1
                if self.on_each:
                    self.on_each(self.asked)
                if what == "gone":
                    raise BrokerUnavailable("PUT http://127.0.0.1:1/x: [Errno 111] refused")
                yield TopicResult(name, 100, None if what == "ok" else "HTTP 500")
        finally:
            self.closed = True


def _names(n: int) -> list[str]:
    return [f"t{i}" for i in range(n)]


def test_every_name_tried_counts_successes_and_failures() -> None:
    d = ScriptedDriver(["ok", "fail", "ok", "ok"])
    c = create_topics(cast(Driver, d), _names(4), 4)
    assert (c.created, c.errors, c.first_error, c.stopped_early) == (3, 1, "HTTP 500", None)


def test_a_broker_that_stops_answering_ends_creation_and_says_so() -> None:
    d = ScriptedDriver(["ok"] * 7 + ["gone"] + ["ok"] * 10)
    c = create_topics(cast(Driver, d), _names(18), 4)
    assert c.created == 7 and c.errors == 1
    assert c.stopped_early is not None and "stopped answering" in c.stopped_early
    assert "Errno 111" in c.stopped_early
    assert d.asked == 8 and d.closed


def test_a_broker_that_refuses_everything_is_given_up_on() -> None:
    n = MAX_CONSECUTIVE_CREATE_ERRORS
    d = ScriptedDriver(["ok", "fail", "ok"] + ["fail"] * (n + 50))
    c = create_topics(cast(Driver, d), _names(n + 53), 4)
    assert c.created == 2 and c.errors == n + 1
    assert c.stopped_early == f"gave up after {n} failures in a row, last: HTTP 500"
    assert d.asked == n + 3 and d.closed


def test_an_abandoned_step_stops_creating_at_once() -> None:
    stop = threading.Event()

    def stop_at_five(i: int) -> None:
        if i == 5:
            stop.set()

    d = ScriptedDriver(["ok"] * 100, on_each=stop_at_five)
    c = create_topics(cast(Driver, d), _names(100), 4, stop)
    assert c.created == 5 and d.asked == 5 and d.closed
    assert c.stopped_early == "stopped after 5 of 100: step abandoned"
