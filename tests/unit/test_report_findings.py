"""Issue 12's findings, each built from the shape the committed full runs had; each test fails
on the code before the fix (SYNTHETIC records written through the real store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.metrics import histograms
from bench.report.html import build_context
from bench.report.recommend import Figure, Settings, decide, find_knee, find_saturation, recommend
from bench.results import frames
from bench.results.check import check_run
from bench.results.store import RunWriter, load_run

T0 = 1_795_000_000.0


def step(
    kind: str,
    broker: str,
    step_id: str,
    *,
    status: str = "ok",
    error: str | None = None,
    params: dict[str, Any] | None = None,
    loss: dict[str, int] | None = None,
    topology: str = "standalone",
    group: str | None = None,
    t: float = T0,
    window_s: float = 10.0,
    **metrics: Any,
) -> dict[str, Any]:
    return {
        "step_id": f"{broker}-{step_id}",
        "scenario": kind if topology == "standalone" else f"{kind}-cluster",
        "kind": kind,
        "profile": "full",
        "broker": broker,
        "topology": topology,
        "index": 0,
        "group": group or f"{broker}-{step_id}",
        "params": params or {},
        "status": status,
        "error": error,
        "started_at": t,
        "ended_at": t + window_s + 5,
        "window": {"start": t + 2, "end": t + 2 + window_s},
        "metrics": metrics,
        "loss": loss,
    }


def write(
    tmp: Path, records: list[dict[str, Any]], *, status: str = "complete", **meta: Any
) -> Path:
    w = RunWriter.create(tmp, {"synthetic": "test", **meta})
    for r in records:
        w.write_step(r)
    w.finish(status)
    return w.run_dir


def test_oneway_rate_is_read_from_the_broker_counter(tmp_path: Path) -> None:
    rec = step(
        "send-frequency",
        "rocketmq",
        "sweep-send=oneway-conn=shared-rate=20000",
        params={"send_mode": "oneway", "connection_mode": "shared", "duration_s": 13.0},
        offered_rate_per_s=20000.0,
        publish_tps=53.1,
        broker_messages_in=117_830,
        send_mode="oneway",
        saturated=True,
    )
    run = load_run(write(tmp_path, [rec]))
    got = run.step_records[0]
    assert abs(got["metrics"]["publish_tps"] - 117_830 / 13) < 1
    assert "the broker stored 117,830 messages" in got["notes"][0]
    assert run.raw_step_records[0]["metrics"]["publish_tps"] == 53.1


def _kill(broker: str, rep: int, topology: str, window_s: float = 10.0, **m: Any) -> dict[str, Any]:
    return step(
        "kill-9-recovery",
        broker,
        f"path=proxy-restart=supervised-rep={rep}",
        topology=topology,
        params={"path": "proxy", "restart_policy": "supervised", "repetition": rep},
        group=f"{broker}-path=proxy-restart=supervised",
        loss={
            "acked": 1000,
            "received": 1000,
            "lost": 0,
            "duplicated": 0,
            "received_not_acked": 0,
            "reordered": 0,
        },
        drain_complete=True,
        window_s=window_s,
        **m,
    )


def test_impossible_kill_figures_are_excluded_or_bounds(tmp_path: Path) -> None:
    kill = T0 + 5
    recs = [
        # restart 0.11 s after the kill; outage 78.56 s while the load ran 7 s after it
        _kill(
            "rocketmq",
            1,
            "cluster",
            killed_at=kill,
            restarted_at=kill + 0.11,
            unavailability_s=78.56,
            clients_recovered=True,
        ),
        _kill(
            "rocketmq",
            2,
            "cluster",
            killed_at=kill,
            restarted_at=kill + 9.0,
            unavailability_s=5.0,
            clients_recovered=True,
        ),
        # The load stops on the first one-second tick after the probe's first acknowledgement:
        # an outage ending 0.3 s past the window's end was observed, and is a value.
        _kill(
            "rocketmq",
            3,
            "cluster",
            killed_at=kill,
            restarted_at=kill + 4.0,
            unavailability_s=7.3,
            clients_recovered=True,
        ),
    ]
    run = load_run(write(tmp_path, recs))
    bad, good, edge = run.step_records
    assert "notes" not in edge and edge["metrics"]["unavailability_s"] == 7.3
    assert [p.line() for p in check_run(run) if "outage" in p.line()] == [
        f"{run.run_id} kill-9-recovery-cluster/{bad['step_id']}: outage: 78.6 s, but the load "
        "ran 7.0 s "
        "after the kill: a lower bound, not a value"
    ]
    # the restart time is unknown, not 0.11 s; the outage is a bound; the step stays
    assert bad["metrics"]["restarted_at"] is None and "sooner than a broker JVM" in bad["notes"][0]
    assert bad["metrics"]["unavailability_s"] is None
    assert abs(bad["metrics"]["unavailability_at_least_s"] - 7.0) < 1e-6
    assert "notes" not in good and good["metrics"]["unavailability_s"] == 5.0


def test_recovery_is_judged_per_topology_and_path(tmp_path: Path) -> None:
    recs = []
    for topo, p_out, r_out in (("standalone", 12.0, 8.0), ("cluster", 10.0, 60.0)):
        for rep in (1, 2, 3):
            for broker, out in (("pulsar", p_out), ("rocketmq", r_out)):
                recs.append(
                    _kill(
                        broker,
                        rep,
                        topo,
                        killed_at=T0 + 5,
                        restarted_at=T0 + 9,
                        unavailability_s=out * (1 + rep / 100),
                        clients_recovered=True,
                        window_s=100.0,
                    )
                )
    steps = load_run(write(tmp_path, recs)).steps
    rec = recommend(steps)
    dim = next(d for d in rec.dimensions if d.dimension == "recovery")
    by = {v.criterion: v for v in dim.verdicts}
    assert (
        by["unavailability, kill to first ack (standalone/proxy/supervised)"].winner == "rocketmq"
    )
    assert by["unavailability, kill to first ack (cluster/proxy/supervised)"].winner == "pulsar"


def _tg(broker: str, n: int, run_t: float, **m: Any) -> dict[str, Any]:
    bundles = m.pop("bundles", None)
    sid = f"mode=create_under_load-{'' if bundles is None else f'bundles={bundles}-'}topics={n}"
    group = f"{broker}-mode=create_under_load" + ("" if bundles is None else f"-bundles={bundles}")
    metrics = {
        "topic_count": n,
        "topics_created": n,
        "publish_tps": 2000.0,
        "send_errors": 0,
        "lookup_latency_us": {
            "p50": 1000,
            "p90": 2000,
            "p99": 3000,
            "p999": 4000,
            "max": 5000,
            "count": 100,
        },
    }
    if bundles is not None:
        metrics["pulsar_bundles"] = bundles
    metrics.update(m)
    return step(
        "topic-growth", broker, sid, params={"topic_count": n}, group=group, t=run_t, **metrics
    )


def test_topic_growth_reads_refusals_and_leaves_out_an_interrupted_run(tmp_path: Path) -> None:
    counts = (1000, 5000, 10000, 50000, 100000)
    pulsar = [_tg("pulsar", n, T0 + i, bundles=4) for i, n in enumerate(counts)]
    # Pulsar at 64 bundles (its best would flatter it): lookups 10x faster
    pulsar += [
        _tg(
            "pulsar",
            n,
            T0 + 10 + i,
            bundles=64,
            lookup_latency_us={
                "p50": 100,
                "p90": 200,
                "p99": 300,
                "p999": 400,
                "max": 500,
                "count": 100,
            },
        )
        for i, n in enumerate(counts)
    ]
    # RocketMQ: a handful of send errors in its first step, refused at 52,600, and the error
    # says so (the run predates create_stopped)
    rocket = [_tg("rocketmq", n, T0 + 20 + i) for i, n in enumerate(counts[:-1])]
    rocket[0] = {**rocket[0], "status": "errors"}
    rocket[0]["metrics"]["send_errors"] = 376
    last = _tg("rocketmq", 100000, T0 + 30, topics_created=52600)
    last["status"], last["error"] = (
        "failed",
        ("topic creation stopped at 52,600 of 100,000 topics: gave up after 200 failures"),
    )
    rocket.append(last)
    full = write(tmp_path / "a", pulsar + rocket)
    # an interrupted run of RocketMQ that stopped at 5,000 topics
    partial = write(
        tmp_path / "b",
        [_tg("rocketmq", n, T0 + 40 + i) for i, n in enumerate(counts[:2])],
        status="partial",
    )
    steps = frames.concat([load_run(full).steps, load_run(partial).steps])
    dim = next(d for d in recommend(steps).dimensions if d.dimension == "topic_growth")
    reach, lookup = dim.verdicts[0], dim.verdicts[1]
    assert (reach.winner, reach.shown("pulsar"), reach.shown("rocketmq")) == (
        "pulsar",
        "≥ 100,000",
        "52,600",
    )
    assert any("interrupted" in x for x in reach.figures["rocketmq"].left_out)
    assert "creation refused by the broker at 52,600" in reach.figures["rocketmq"].detail
    # Pulsar compared at its default 4 bundles: 3.0 ms, not its 64-bundle best of 0.3 ms
    assert lookup.shown("pulsar") == "3.0 ms" and "4 bundles" in lookup.figures["pulsar"].detail
    assert dim.outcome == "better" and dim.provisional


def test_a_bound_decides_only_when_it_cannot_reverse_the_order() -> None:
    s = Settings()
    exact = Figure("pulsar", [0.0, 0.0])
    upper = Figure("rocketmq", [105.0, 13693.0], bounds=["<=", "<="])
    v = decide("lost", "lower", exact, upper, s, fmt=lambda x: f"{x:,.0f}", zero_is_decisive=True)
    assert v.outcome == "undecided" and "upper bound" in v.reason
    assert v.shown("rocketmq").startswith("≤ ")
    longer = Figure("rocketmq", [60.0, 62.0, 61.0], bounds=[">=", ">=", ">="])
    v = decide("outage", "lower", Figure("pulsar", [10.0, 11.0, 10.5]), longer, s)
    assert v.winner == "pulsar"


def test_subscribe_summary_agrees_with_the_steps_histogram(tmp_path: Path) -> None:
    window = histograms.new_histogram()
    for v in (40_000, 45_000, 49_000):
        histograms.record(window, v)
    rec = step(
        "subscribe-frequency",
        "rocketmq",
        "churn=1",
        params={"sweep": "churn"},
        churn_per_s=1.0,
        subscribe_latency_us={
            "p50": 50_000,
            "p90": 200_000,
            "p99": 255_359,
            "p999": 255_359,
            "max": 255_359,
            "count": 64,
        },
    )
    w = RunWriter.create(tmp_path, {"synthetic": "test"})
    w.write_step(rec)
    w.write_histograms(rec["scenario"], rec["step_id"], {"subscribe": histograms.encode(window)})
    w.finish()
    got = load_run(w.run_dir).step_records[0]["metrics"]["subscribe_latency_us"]
    assert got["count"] == 3 and got["p99"] < 50_000


def test_gc_zero_is_not_measured_and_dirty_runs_are_flagged(tmp_path: Path) -> None:
    rec = step("send-frequency", "pulsar", "rate=1000", gc_pause_ms=0.0, publish_tps=1000.0)
    run = load_run(write(tmp_path, [rec], git={"commit": "ab" * 20, "dirty": True}))
    assert run.step_records[0]["metrics"]["gc_pause_ms"] is None
    texts = [w.text for w in build_context([run])["warnings"]]
    assert any("uncommitted code" in t for t in texts)


def test_a_cold_first_step_is_neither_a_knee_nor_a_saturation_point() -> None:
    # RocketMQ sync/shared: 847 msg/s at 1,000 offered on a cold JVM, then 1,507 at 1,500
    sat = find_saturation([1000, 1500, 3000], [847, 1507, 2254])
    assert sat is not None and sat.offered == 3000
    assert find_knee([1000, 5000, 10000], [2000, 1500, 1990]) is None
    assert find_knee([1000, 5000, 10000], [2000, 1500, 1400]) is not None


def test_first_step_of_each_broker_is_marked_cold(tmp_path: Path) -> None:
    recs = [
        step("send-frequency", "pulsar", f"rate={r}", t=T0 + i, publish_tps=float(r))
        for i, r in enumerate((1000, 2000))
    ]
    df: pd.DataFrame = load_run(write(tmp_path, recs)).steps
    assert list(df.sort_values("started_at")["cold_start"]) == [True, False]


def test_a_zero_gc_pause_beside_measured_ones_is_a_measurement(tmp_path: Path) -> None:
    recs = [
        step("send-frequency", "pulsar", "rate=100", gc_pause_ms=0.0, t=T0),
        step("send-frequency", "pulsar", "rate=1000", gc_pause_ms=78.7, t=T0 + 20),
    ]
    run = load_run(write(tmp_path, recs))
    assert [r["metrics"]["gc_pause_ms"] for r in run.step_records] == [0.0, 78.7]
