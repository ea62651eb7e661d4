"""The runner's step loop: a failed step leaves the next one a broker brought up fresh."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from bench.infra.topology import InfraSettings
from bench.results.store import RunWriter, load_run
from bench.runner.api import BrokerSession, StepContext, _failed_record, _run_one, run_metadata
from bench.runner.progress import QuietProgress
from bench.scenarios.loader import load_scenario
from bench.scenarios.steps import expand_steps

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "kill-9-recovery.yaml"


class FakeSession:
    """Stands in for BrokerSession: counts bring-ups instead of starting JVMs."""

    def __init__(self) -> None:
        self.healthy = False
        self.settings: InfraSettings | None = None
        self.bring_ups = 0
        self.infra = None

        self.warmups: list[tuple[float, str]] = []

    def ensure(self, settings: InfraSettings, warmup_s: float = 0.0, engine: str = "jvm") -> None:
        self.warmups.append((warmup_s, engine))
        if self.settings == settings and self.healthy:
            return
        self.bring_ups += 1
        self.settings, self.healthy = settings, True


def test_a_failed_step_makes_the_next_one_start_on_a_fresh_broker(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO)
    steps = [s for s in expand_steps(scenario, "full") if s.broker == "pulsar"][:3]
    outcomes = iter(["failed", "ok", "ok"])

    def executor(ctx: StepContext) -> dict[str, Any]:
        return _failed_record(ctx.step, time.time(), "HTTP 500", status=next(outcomes))

    run = RunWriter.create(tmp_path, run_metadata([(SCENARIO, scenario)], "full", ["pulsar"]))
    session = FakeSession()
    with run:
        for step in steps:
            _run_one(
                run,
                cast(BrokerSession, session),
                scenario,
                step,
                {"kill-9-recovery": executor},
                QuietProgress(),
                0,
            )
    # Step 1 brings the broker up; its failure makes step 2 bring it up again; step 2 passing
    # lets step 3 keep it.
    assert session.bring_ups == 2
    # The profile's broker warm-up and the step's engine reach the session.
    want = scenario.profile("full").broker_warmup_s
    assert session.warmups == [(want, "jvm")] * 3
    assert [r["status"] for r in load_run(run.run_dir).step_records] == ["failed", "ok", "ok"]


def test_a_broker_warm_up_is_recorded_and_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unmeasured load from the step's engine after a bring-up: its rates, or its error, go to
    events.jsonl; the first step then meets the broker as it is."""
    import contextlib

    import bench.runner.calibrate.rates as rates
    import bench.runner.session as session_mod
    from bench.infra.topology import Endpoints

    class Admin:
        def create_topics(self, names: list[str], partitions: int) -> list[Any]:
            created.extend(names)
            return [type("R", (), {"ok": True, "name": n, "error": None})() for n in names]

    created: list[str] = []
    calls: list[dict[str, Any]] = []

    def fake_rate(broker: str, ep: Any, **kw: Any) -> Any:
        calls.append(kw)
        if len(calls) > 1:
            raise RuntimeError("broker went away")
        return rates.BenchRate(900.0, 910.0, None, 880.0, {}, {}, (0.0, 1.0))

    monkeypatch.setattr(rates, "bench_rate", fake_rate)
    monkeypatch.setattr(session_mod, "open_driver", lambda *a, **k: contextlib.nullcontext(Admin()))
    run = RunWriter.create(
        tmp_path, run_metadata([(SCENARIO, load_scenario(SCENARIO))], "full", ["pulsar"])
    )
    session = BrokerSession(tmp_path / "infra", run, QuietProgress())
    ep = Endpoints(broker="pulsar", topology="standalone", service_url="pulsar://127.0.0.1:9")
    monkeypatch.setattr(session.infra, "endpoints", lambda broker: ep)
    with run:
        session._warm_up("pulsar", 2.0, "python")
        session._warm_up("pulsar", 2.0, "python")  # fails: recorded, not raised
    assert calls[0]["seconds"] == 2.0 and calls[0]["engine"] == "python"
    assert calls[0]["subscriptions"] == 1 and calls[0]["warmup"] == 0.0
    assert created and all(t.startswith("bench-warmup-") and t.endswith("-w0") for t in created)
    events = load_run(run.run_dir).events.to_dict("records")
    e1, e2 = [e for e in events if e["kind"] == "broker_warmup"]
    assert e1["broker"] == e2["broker"] == "pulsar"
    assert e1["detail"]["acked_per_s"] == 900.0 and e1["detail"]["received_per_s"] == 880.0
    assert "error" not in e1["detail"]
    assert e2["detail"]["error"] == "broker went away"
