"""The runner's step loop: a failed step leaves the next one a broker brought up fresh."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from bench.infra.topology import InfraSettings
from bench.results.store import RunWriter, load_run
from bench.runner.api import BrokerSession, StepContext, _failed_record, _run_one, run_metadata
from bench.runner.progress import QuietProgress
from bench.scenarios.loader import load_scenario
from bench.scenarios.model import expand_steps

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "kill-9-recovery.yaml"


class FakeSession:
    """Stands in for BrokerSession: counts bring-ups instead of starting JVMs."""

    def __init__(self) -> None:
        self.healthy = False
        self.settings: InfraSettings | None = None
        self.bring_ups = 0
        self.infra = None

    def ensure(self, settings: InfraSettings) -> None:
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
    assert [r["status"] for r in load_run(run.run_dir).step_records] == ["failed", "ok", "ok"]
