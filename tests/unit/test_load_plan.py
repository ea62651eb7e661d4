"""LoadPlan: how a step's load is dealt over worker processes of each engine."""

from __future__ import annotations

from bench.engines.spec import LoadSpec
from bench.infra.topology import Endpoints
from bench.runner.load import LoadPlan


def _base(sender_threads: int = 4) -> LoadSpec:
    ep = Endpoints(broker="pulsar", topology="standalone", service_url="pulsar://127.0.0.1:1")
    return LoadSpec(
        worker_id="w0",
        broker="pulsar",
        endpoints=LoadSpec.endpoints_text(ep),
        run_id="r",
        topics=("t0", "t1", "t2", "t3"),
        rate_per_s=4000.0,
        max_in_flight=1000,
        sender_threads=sender_threads,
        send_mode="sync",
    )


def _totals(specs: list[LoadSpec]) -> tuple[int, float, int, int, list[str]]:
    return (
        len(specs),
        sum(s.rate_per_s or 0.0 for s in specs),
        sum(s.sender_threads for s in specs),
        sum(s.max_in_flight for s in specs),
        sorted(t for s in specs for t in s.topics),
    )


def test_one_jvm_carries_what_two_python_workers_do() -> None:
    topics = ["t0", "t1", "t2", "t3"]
    python = LoadPlan(_base(), topics, engine="python").specs()
    jvm = LoadPlan(_base(), topics, engine="jvm").specs()
    assert _totals(python) == (2, 4000.0, 8, 2000, topics)
    assert _totals(jvm) == (1, 4000.0, 8, 2000, topics)
    assert jvm[0].sender_threads == 8 and jvm[0].max_in_flight == 2000


def test_an_explicit_count_and_a_single_topic_are_kept() -> None:
    assert _totals(LoadPlan(_base(), ["t0", "t1", "t2", "t3"], workers=2, engine="jvm").specs())[
        :4
    ] == (2, 4000.0, 8, 2000)
    # One topic: one worker of either engine, nothing scaled.
    for engine in ("python", "jvm"):
        assert _totals(LoadPlan(_base(), ["t0"], engine=engine).specs())[:4] == (
            1,
            4000.0,
            4,
            1000,
        )
