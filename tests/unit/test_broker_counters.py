"""Every kind that sends records ``broker_messages_in``: the broker's own count of what the step's
topics stored from just before the load to the end of the drain, stitched across a kill -9
restart, null (never 0) with a warning saying why when the broker cannot give it; ``bench
check`` holds it against the client's sends, and the report shows both.

The executors run here against a fake broker whose counter the test controls (it moves with the
load, restarts from 0 like Pulsar's ``msgInCounter``, goes down, loses a topic), with the worker
pool replaced by a loop that stores what it "sends" on that broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.drivers.base import (
    Consumer,
    Driver,
    DriverClient,
    ErrorKind,
    LookupMethod,
    OnMessage,
    Producer,
    SendCallback,
    TopicResult,
)
from bench.drivers.pulsar import PulsarDriver
from bench.errors import BrokerUnavailable
from bench.infra.topology import Endpoints, InfraSettings
from bench.metrics.intervals import IntervalStats
from bench.report.html import build_context
from bench.results.check import check_run, counter_problem
from bench.results.store import RunWriter, load_run
from bench.runner import (
    broker_count,
    kill_recovery,
    send_frequency,
    subscribe_frequency,
    topic_growth,
)
from bench.runner.api import StepContext
from bench.runner.broker_count import BrokerCount
from bench.runner.load import LoadResult
from bench.runner.progress import QuietProgress
from bench.scenarios.loader import load_scenario
from bench.scenarios.steps import expand_steps

# -- a broker whose counter the test controls ---------------------------------------------------


class FakeBroker:
    """What a broker stored per topic, and the counter it reports (``volatile``: restarts from 0
    with the broker, like Pulsar's ``msgInCounter``; else it survives, like RocketMQ's queue
    offsets)."""

    def __init__(self, *, volatile: bool = True) -> None:
        self.volatile = volatile
        self.up = True
        self.stored: dict[str, int] = {}
        self.counter: dict[str, int] = {}
        self.missing: set[str] = set()
        self.late: dict[str, int] = {}  # stored after the next reading (a ONEWAY backlog)
        self.readings = 0
        self.lock = threading.Lock()

    def store(self, topic: str, n: int) -> bool:
        with self.lock:
            if not self.up:
                return False
            self.stored[topic] = self.stored.get(topic, 0) + n
            self.counter[topic] = self.counter.get(topic, 0) + n
            return True

    def kill(self) -> float:
        with self.lock:
            self.up = False
        return time.time()

    def restart(self) -> None:
        with self.lock:
            self.up = True
            if self.volatile:
                self.counter = dict.fromkeys(self.counter, 0)

    def stats(self, topics: Sequence[str]) -> dict[str, int]:
        with self.lock:
            if not self.up:
                raise BrokerUnavailable("connection refused")
            self.readings += 1
            found = [t for t in topics if t not in self.missing]
            out = {
                "messages_in": sum(self.counter.get(t, 0) for t in found),
                "missing": len(topics) - len(found),
            }
            for t, n in self.late.items():
                self.stored[t] = self.stored.get(t, 0) + n
                self.counter[t] = self.counter.get(t, 0) + n
            self.late = {}
            return out

    def total(self, topics: Sequence[str]) -> int:
        return sum(self.stored.get(t, 0) for t in topics)


class _Client(DriverClient):
    def close(self) -> None:
        pass


class _Producer(Producer):
    def __init__(self, broker: FakeBroker, topic: str) -> None:
        self.broker, self.topic = broker, topic

    def send(self, payload: bytes) -> None:
        if not self.broker.store(self.topic, 1):
            raise BrokerUnavailable("down")

    def send_async(self, payload: bytes, callback: SendCallback) -> None:
        ok = self.broker.store(self.topic, 1)
        callback(None if ok else BrokerUnavailable("down"))

    def send_oneway(self, payload: bytes) -> None:
        self.broker.store(self.topic, 1)

    def close(self) -> None:
        pass


class _Consumer(Consumer):
    def close(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


class CountingDriver(Driver):
    """A driver whose ``broker_stats`` reads :class:`FakeBroker` (test only, never registered)."""

    name = "fake-counting"
    send_modes = frozenset({"sync", "async", "oneway"})
    paths = ("direct", "proxy")

    def __init__(self, broker: FakeBroker) -> None:
        super().__init__(Endpoints(broker="pulsar", topology="standalone"))
        self.broker = broker

    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        for name in names:
            yield TopicResult(name, 1)

    def lookup(self, topic: str, timeout_s: float, method: LookupMethod = "admin") -> int:
        return 1

    def broker_stats(self, topics: Sequence[str]) -> dict[str, int]:
        return self.broker.stats(topics)

    def new_client(self) -> DriverClient:
        return _Client()

    def producer(self, topic: str, send_mode: str, client: DriverClient) -> Producer:
        return _Producer(self.broker, topic)

    def consumer(
        self, topic: str, subscription: str, on_message: OnMessage, client: DriverClient
    ) -> Consumer:
        return _Consumer()

    def classify(self, exc: BaseException) -> ErrorKind:
        return "broker_error"

    def close(self) -> None:
        pass


# -- BrokerCount on its own ---------------------------------------------------------------------


def test_a_count_that_restarts_from_zero_is_stitched_across_the_restart() -> None:
    broker = FakeBroker(volatile=True)
    topics = ["a", "b"]
    broker.store("a", 500)  # before the step: not the step's
    count = BrokerCount(CountingDriver(broker), topics, stitch=True, sleep=lambda s: None)
    count.start()
    broker.store("a", 300)
    broker.store("b", 300)
    count.sample()  # just before the kill
    broker.kill()
    count.sample()  # down: no reading, no harm
    broker.restart()
    broker.store("a", 50)
    count.sample()  # a reading after the restart sees the fall
    broker.store("a", 900)  # past the last reading before the kill: only that reading saw it
    broker.store("b", 100)
    count.end()
    assert count.unknown is None
    assert count.stored == 300 + 300 + 50 + 900 + 100
    assert count.falls == 1


def test_without_stitching_a_count_that_fell_is_unknown_never_a_difference() -> None:
    broker = FakeBroker(volatile=True)
    broker.store("a", 1000)
    count = BrokerCount(CountingDriver(broker), ["a"], sleep=lambda s: None)
    count.start()
    broker.kill()
    broker.restart()
    broker.store("a", 10)
    count.end()
    assert count.stored is None
    assert count.unknown is not None and "fell from 1,000 to 10" in count.unknown


@pytest.mark.parametrize(
    ("edge", "missing", "why"),
    [
        ("start", False, "could not be read before the load: connection refused"),
        ("end", False, "could not be read after the drain: connection refused"),
        ("end", True, "could not be read after the drain: b not found on the broker"),
    ],
)
def test_a_count_the_broker_cannot_give_is_none_with_the_reason(
    edge: str, missing: bool, why: str
) -> None:
    broker = FakeBroker()
    count = BrokerCount(CountingDriver(broker), ["a", "b"], stitch=True, sleep=lambda s: None)
    if edge == "start":
        broker.kill()
    count.start()
    broker.store("a", 10)
    if edge == "end":
        if missing:
            broker.missing.add("b")  # a RocketMQ topic gone from the broker
        else:
            broker.kill()
    count.end()
    assert count.stored is None
    assert count.unknown is not None and why in count.unknown


def test_the_last_edge_waits_for_the_count_to_stop_moving() -> None:
    broker = FakeBroker()
    count = BrokerCount(CountingDriver(broker), ["a"], sleep=lambda s: None)
    count.start()
    broker.store("a", 700)
    broker.late = {"a": 300}  # ONEWAY messages still queued in the broker when senders stop
    count.end()
    assert count.stored == 1000
    assert broker.readings >= 4  # the start, then readings until two agree


# -- the executors, with the load replaced by a loop over the fake broker -----------------------


def _fake_load(
    broker: FakeBroker, per_tick: int = 40, ticks: int = 6, tick_s: float = 0.0
) -> Callable[..., LoadResult]:
    """``run_load`` that stores ``per_tick`` messages a tick over the plan's topics while the
    broker is up (sends fail while it is down), calling the step's hooks like the real one."""

    def run_load(
        plan: Any,
        meter: Any,
        duration_s: float,
        *,
        on_tick: Any = None,
        until: Any = None,
        phase_of: Any = None,
        **_: Any,
    ) -> LoadResult:
        topics = list(plan.topics)
        last = time.time_ns()
        for i in range(1, 400):
            if tick_s:
                time.sleep(tick_s)
            acked = sum(broker.store(topics[k % len(topics)], 1) for k in range(per_tick))
            now = time.time_ns()
            counters = {
                "sent": per_tick,
                "acked": acked,
                "send_errors": per_tick - acked,
                "received": acked,
            }
            meter.add([IntervalStats("w0", last, now, counters)], phase_of(i) if phase_of else None)
            last = now
            if on_tick:
                on_tick(float(i), None)
            if (until and until(float(i))) or (not until and i >= ticks):
                break
        meter.add([IntervalStats("w0", last, time.time_ns(), {"sent": 0})], "drain")
        return LoadResult(None, True)

    return run_load


class FakeInfra:
    """The step's infra: a broker process to kill and restart, nothing to sample."""

    def __init__(self, root: Path, broker: FakeBroker) -> None:
        self.root, self.broker = root, broker

    def endpoints(self, broker: str) -> Endpoints:
        return Endpoints(broker="pulsar", topology="standalone")

    def pids(self) -> dict[str, int]:
        return {}

    def killable(self, broker: str) -> list[str]:
        return ["pulsar/standalone"]

    def kill9(self, name: str) -> float:
        return self.broker.kill()

    def restart(self, name: str) -> None:
        self.broker.restart()


SCENARIOS: dict[str, str] = {
    "subscribe-frequency": """
schema_version: 1
name: sub
kind: subscribe-frequency
brokers: [pulsar]
topology: standalone
description: test
message_size: 100
profiles:
  quick: {publish_rate_per_s: 100, topics: 2, fanout: [1], churn_per_s: [5], warmup_s: 1,
          duration_s: 3}
""",
    "topic-growth": """
schema_version: 1
name: tg
kind: topic-growth
brokers: [pulsar]
topology: standalone
description: test
message_size: 100
profiles:
  quick: {topic_counts: [6], mode: precreate, active_topics: 3, rate_per_s: 100,
          lookup_sample: 2, warmup_s: 1, duration_s: 3, pulsar_bundles: [4]}
""",
    "send-frequency": """
schema_version: 1
name: sf
kind: send-frequency
brokers: [pulsar]
topology: standalone
description: test
message_size: 100
profiles:
  quick: {rates_per_s: [100], send_modes: [async], connection_modes: [shared], topics: 2,
          producers: 2, warmup_s: 1, duration_s: 3}
""",
    "kill-9-recovery": """
schema_version: 1
name: k9
kind: kill-9-recovery
brokers: [pulsar]
topology: standalone
description: test
message_size: 100
profiles:
  quick: {rate_per_s: 100, producers: 2, topics: 2, warmup_s: 1, kill_after_s: 20,
          restart_policy: [manual], manual_restart_after_s: 0.1, observe_after_restart_s: 0.3,
          drain_timeout_s: 5}
""",
}


def _run_step(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    broker: FakeBroker,
    load: Callable[..., LoadResult],
    driver: Driver | None = None,
) -> tuple[dict[str, Any], RunWriter, list[str]]:
    """Run one step of ``kind`` on ``broker``; its record, run and step topics."""
    path = tmp_path / f"{kind}.yaml"
    path.write_text(SCENARIOS[kind])
    scenario = load_scenario(path)
    step = expand_steps(scenario, "quick")[0]
    module = {
        "subscribe-frequency": subscribe_frequency,
        "topic-growth": topic_growth,
        "send-frequency": send_frequency,
        "kill-9-recovery": kill_recovery,
    }[kind]
    driver = driver or CountingDriver(broker)
    topics: list[str] = []

    def plan(ctx: Any, spec: Any, names: Sequence[str]) -> Any:
        topics.extend(names)
        return SimpleNamespace(topics=list(names))

    monkeypatch.setattr(module, "open_step_driver", lambda ctx, *a, **k: driver)
    monkeypatch.setattr(module, "run_load", load)
    monkeypatch.setattr(module, "load_plan", plan)
    monkeypatch.setattr(broker_count, "SETTLE_S", 0.01)
    if module is kill_recovery:
        monkeypatch.setattr(
            kill_recovery, "_probe_topic_on_victim", lambda ctx, d, v, p, f: ("probe", v[0])
        )
    run = RunWriter.create(tmp_path / "runs", {"synthetic": "test"})
    ctx = StepContext(
        run=run,
        run_id=run.run_id,
        scenario=scenario,
        step=step,
        infra=FakeInfra(tmp_path, broker),  # type: ignore[arg-type]
        settings=InfraSettings(brokers=("pulsar",)),
        progress=QuietProgress(),
        message_size=100,
        engine="python",
    )
    rec = module.run_step(ctx)
    run.write_step(rec)
    return rec, run, topics


@pytest.mark.parametrize("kind", ["topic-growth", "subscribe-frequency", "send-frequency"])
def test_every_kind_that_sends_records_what_the_broker_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    broker = FakeBroker()
    rec, run, topics = _run_step(tmp_path, monkeypatch, kind, broker, _fake_load(broker))
    assert rec["metrics"]["broker_messages_in"] == broker.total(topics) == 6 * 40
    run.finish()
    assert check_run(load_run(run.run_dir)) == []


class PulsarNamespaces(PulsarDriver):
    """The Pulsar driver's naming (a namespace per bundle count) over :class:`FakeBroker`, which
    keys what it stored by the full topic name."""

    def __init__(self, broker: FakeBroker) -> None:
        super().__init__(
            Endpoints(broker="pulsar", topology="standalone", admin_urls=("http://127.0.0.1:9",))
        )
        self.broker = broker

    def set_namespace_bundles(self, bundles: int) -> str | None:
        self.namespace = f"public/bench-b{bundles}"
        return self.namespace

    def create_topics(self, names: Sequence[str], concurrency: int = 16) -> Iterator[TopicResult]:
        for name in names:
            yield TopicResult(name, 1)

    def lookup(self, topic: str, timeout_s: float, method: LookupMethod = "admin") -> int:
        return 1

    def broker_stats(self, topics: Sequence[str]) -> dict[str, int]:
        return self.broker.stats([self.full_name(t) for t in topics])


def test_topic_growth_loads_the_topics_of_its_bundle_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers open drivers of their own, in the default namespace: the load must name the
    bundle namespace's topics in full (a real run's broker count said 0 stored on them)."""
    broker = FakeBroker()
    driver = PulsarNamespaces(broker)
    rec, _, topics = _run_step(
        tmp_path, monkeypatch, "topic-growth", broker, _fake_load(broker), driver
    )
    assert all(t.startswith("persistent://public/bench-b4/tg4-") for t in topics), topics
    assert rec["metrics"]["broker_messages_in"] == 6 * 40


def test_kill_9_stitches_the_count_the_restart_reset_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = FakeBroker(volatile=True)
    load = _fake_load(broker, per_tick=40, tick_s=0.02)
    rec, run, topics = _run_step(tmp_path, monkeypatch, "kill-9-recovery", broker, load)
    m = rec["metrics"]
    # Sent 40 a tick, 800 of them before the kill; the counter restarted from 0 after it.
    assert broker.total(topics) > 800
    assert sum(broker.counter[t] for t in topics) < 800
    assert m["broker_messages_in"] == broker.total(topics)
    assert m["counter_resets"] == 1
    run.finish()
    loaded = load_run(run.run_dir)
    # (The fake broker is back sooner than a JVM could be: the restart invariant says so.)
    assert [p for p in check_run(loaded) if p.invariant == "counters"] == []
    html_ctx = build_context([loaded])
    stored = html_ctx["steps_table"].rows[0][9]
    assert stored == f"at least {broker.total(topics):,} (stitched over 1 counter fall(s))"


def test_a_broker_down_after_the_drain_gives_null_and_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = FakeBroker()
    inner = _fake_load(broker)

    def load_then_die(*a: Any, **k: Any) -> LoadResult:
        out = inner(*a, **k)
        broker.kill()
        return out

    rec, run, _ = _run_step(tmp_path, monkeypatch, "subscribe-frequency", broker, load_then_die)
    assert "broker_messages_in" in rec["metrics"]
    assert rec["metrics"]["broker_messages_in"] is None
    run.finish()
    loaded = load_run(run.run_dir)
    warned = [
        e["detail"]
        for e in loaded.events.to_dict("records")
        if e["kind"] == "warning" and e["detail"].get("counter") == "broker_messages_in"
    ]
    assert len(warned) == 1 and "after the drain: connection refused" in warned[0]["message"]
    assert check_run(loaded) == []  # null is not checked
    row = build_context([loaded])["steps_table"].rows[0]
    assert row[8] == "240" and row[9].startswith("unknown: the broker's count could not be read")


# -- bench check: what "sent" means against "stored" --------------------------------------------


@pytest.mark.parametrize(
    ("stored", "kw", "want"),
    [
        (1000, {}, None),
        (1004, {}, None),  # within 0.5 %
        (990, {}, "client sent 1,000, broker stored 990: 10 fewer than the client had ack"),
        # 40 sends failed: each may or may not have been stored, so 960..1,000 is right.
        (960, {"acked": 960, "failed": 40}, None),
        (1000, {"acked": 960, "failed": 40}, None),
        (900, {"acked": 960, "failed": 40}, "(40 failed, 960 acknowledged), broker stored 900"),
        # A client that retried by itself stored a send twice: the consumers' duplicates
        # explain 20 extra, not 50.
        (1020, {"duplicated": 20}, None),
        (1050, {"duplicated": 20}, "50 more than sent: a send stored twice and counted once"),
        # ONEWAY: no acks; every send that did not fail is to be stored.
        (1000, {"acked": 0, "oneway": True}, None),
        (800, {"acked": 0, "oneway": True}, "200 ONEWAY sends that did not fail were never"),
        (990, {"acked": 0, "failed": 10, "oneway": True}, None),
        # A count stitched over a restart is a lower bound: short of the sends is no problem,
        # above them is.
        (950, {"resets": 1}, None),
        # A step that killed a broker: a reset the readings did not see; still a lower bound.
        (900, {"killed": True}, None),
        (1100, {"killed": True}, "100 more than sent"),
        (1100, {"resets": 1}, "100 more than sent"),
    ],
)
def test_the_counter_check_reads_sent_against_stored(
    stored: float, kw: Mapping[str, Any], want: str | None
) -> None:
    args = {"acked": 1000.0, "failed": 0.0, **kw}
    acked, failed = float(args.pop("acked")), float(args.pop("failed"))
    got = counter_problem(stored, 1000.0, acked, failed, **args)
    if want is None:
        assert got is None
    else:
        assert got is not None and want in got, got
