"""Running scenarios: the Runner's entry point.

``run_scenarios`` loads and validates the scenario files, expands them into steps, brings the
brokers up through :mod:`bench.infra` (fresh for each scenario and broker, and again whenever a
step needs other broker-level settings), runs each step with its kind's executor, and writes
each finished step to the results store at once. A step that fails is recorded as failed and the
run goes on; Ctrl-C or SIGTERM stops the load, stops the brokers the run started, and leaves a
``partial`` run with every finished step readable.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench import clock
from bench.drivers.base import CLIENT_LOG_ENV
from bench.engines.protocol import DEFAULT_ENGINE, Engine
from bench.errors import BenchError, ConfigError, RunInterrupted
from bench.infra.artifacts import pinned_version
from bench.infra.lock import InfraLock
from bench.infra.manager import Infra, stop_orphans
from bench.infra.paths import default_infra_dir
from bench.infra.topology import Broker, InfraSettings
from bench.metrics.meta import client_versions, git_revision, host_info
from bench.results.store import RunWriter
from bench.runner.progress import Progress, QuietProgress
from bench.runner.record import base_record
from bench.runner.session import BrokerSession, TargetSession
from bench.runner.summary import step_line
from bench.scenarios.loader import load_many, scenario_hash
from bench.scenarios.model import Scenario
from bench.scenarios.steps import Step, check_only_keys, expand_steps, select_steps
from bench.targets.session import TargetInfra, TargetSettings

StepRecord = dict[str, Any]


@dataclass
class StepContext:
    """Everything a kind's executor needs for one step."""

    run: RunWriter
    run_id: str
    scenario: Scenario
    step: Step
    infra: Infra | TargetInfra
    """The brokers: an infra the run started, or a target it did not (``--targets``)."""
    settings: InfraSettings | TargetSettings
    progress: Progress
    message_size: int
    engine: Engine = DEFAULT_ENGINE

    @property
    def worker_log(self) -> Path:
        """Where the step's load workers write their (and their client libraries') logs."""
        return self.run.run_dir / "logs" / f"workers-{self.broker}.log"

    @property
    def broker(self) -> Broker:
        return self.step.broker

    def event(self, kind: str, **detail: Any) -> None:
        self.run.event(
            kind,
            scenario=self.step.scenario,
            step_id=self.step.step_id,
            broker=self.step.broker,
            **detail,
        )


Executor = Callable[[StepContext], StepRecord]


def executors() -> dict[str, Executor]:
    """Kind -> executor. Imported lazily: each pulls in drivers and worker machinery."""
    from bench.runner.kill_recovery import run_step as kill_recovery
    from bench.runner.send_frequency import run_step as send_frequency
    from bench.runner.subscribe_frequency import run_step as subscribe_frequency
    from bench.runner.topic_growth import run_step as topic_growth

    return {
        "topic-growth": topic_growth,
        "send-frequency": send_frequency,
        "subscribe-frequency": subscribe_frequency,
        "kill-9-recovery": kill_recovery,
    }


def infra_settings_for(scenario: Scenario, step: Step, port_offset: int) -> InfraSettings:
    """The broker-level settings a step needs (a change means a fresh infra)."""
    params = step.params
    proxy = (
        step.broker == "pulsar"
        and scenario.kind == "kill-9-recovery"
        and params.get("path") == "proxy"
    )
    settings = InfraSettings(
        brokers=(step.broker,),
        topology=scenario.topology,
        proxy=proxy,
        port_offset=port_offset,
        pulsar_session_timeout_ms=int(params.get("pulsar_session_timeout_ms", 30000)),
        rocketmq_route_refresh_s=int(params.get("rocketmq_route_refresh_s", 20)),
        # Each bundle count of topic-growth gets a broker of its own, not the topics of the
        # last group on top (100,000 topics took 2.4 GB of live heap on the Pulsar standalone).
        pulsar_bundles=int(params.get("pulsar_bundles") or 4),
    )
    heap = scenario.profile(step.profile).broker_heap_mb
    return replace(settings, heap_mb=heap) if heap else settings


@contextmanager
def _client_log(path: Path) -> Iterator[None]:
    """Client libraries' log lines go to ``path`` for the run, not to the terminal."""
    before = os.environ.get(CLIENT_LOG_ENV)
    os.environ[CLIENT_LOG_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CLIENT_LOG_ENV, None)
        else:
            os.environ[CLIENT_LOG_ENV] = before


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while a run is in progress (CI timeouts send SIGTERM)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def engine_for(scenario: Scenario, step: Step, explicit: Engine | None) -> Engine:
    """The engine of ``step``: the one asked for, else its profile's, else the default."""
    if explicit is not None:
        return explicit
    return scenario.profile(step.profile).engine or DEFAULT_ENGINE


def run_metadata(
    scenarios: Sequence[tuple[Path, Scenario]],
    profile: str,
    brokers: Sequence[str],
    only: Mapping[str, Sequence[str]] | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """What makes this run comparable with another (DESIGN.md section 4)."""
    return {
        "profile": profile,
        # The load engine asked for; each step records the one it ran with (a profile may
        # name its own).
        "engine": engine or DEFAULT_ENGINE,
        "brokers": list(brokers),
        # A run of part of the profiles (``bench run --only``): {key: [values]}, empty for all.
        "only": {k: list(v) for k, v in (only or {}).items()},
        "scenarios": [
            {
                "path": str(path),
                "name": sc.name,
                "kind": sc.kind,
                "topology": sc.topology,
                "sha256": scenario_hash(path),
            }
            for path, sc in scenarios
        ],
        "broker_versions": {
            "rocketmq": pinned_version("rocketmq"),
            "pulsar": pinned_version("pulsar"),
        },
        "client_versions": client_versions(),
        "host": host_info(),
        "git": git_revision(),
        "durability": "async (RocketMQ ASYNC_FLUSH; bookie journalSyncData=false)",
        "quorums": "Pulsar ensemble/write/ack 1/1/1; RocketMQ single master per broker name",
    }


def _failed_record(step: Step, started: float, error: str, status: str = "failed") -> StepRecord:
    return base_record(
        step,
        started_at=started,
        status=status,
        error=error,
        params=dict(step.params),
        metrics={},
        window={"start": started, "end": started},
        loss=None,
    )


def run_scenarios(
    paths: Sequence[str | Path],
    *,
    brokers: Sequence[str] | None = None,
    profile: str = "quick",
    out_dir: str | Path = "reports/runs",
    progress: Progress | None = None,
    infra_root: str | Path | None = None,
    port_offset: int = 0,
    only: Mapping[str, Sequence[str]] | None = None,
    engine: Engine | None = None,
    targets: str | Path | None = None,
    workers: Sequence[str] | None = None,
) -> Path:
    """Run every step of ``paths`` on ``brokers``; return the run directory.

    ``targets`` (a targets file) runs on brokers the suite did not start, instead of bringing
    them up through :mod:`bench.infra`: each is checked (credentials, versions, what the steps
    need) before the run starts, and its identity goes into run.json. ``workers`` (``bench
    worker`` addresses) places the load workers on those servers instead of local processes.

    ``engine`` generates the load (a profile's ``engine`` key wins over the default, an
    explicit ``engine`` over both).

    ``only`` ({step parameter: [values]}) keeps the steps that match it (see
    :func:`~bench.scenarios.steps.select_steps`).

    Raises :class:`ConfigError` for bad files before anything starts, and
    :class:`RunInterrupted` after Ctrl-C/SIGTERM (the run is then ``partial``).
    """
    progress = progress or QuietProgress()
    loaded = load_many(paths)
    pairs = list(zip((Path(p) for p in paths), loaded, strict=True))
    wanted = list(brokers) if brokers else ["pulsar", "rocketmq"]
    for b in wanted:
        if b not in ("pulsar", "rocketmq"):
            raise ConfigError(f"--broker: unknown broker {b!r}; known: pulsar, rocketmq")
    plan: list[tuple[Scenario, str, list[Step]]] = []
    expanded = [(str(path), expand_steps(sc, profile)) for path, sc in pairs]
    if only:
        check_only_keys(expanded, only)
    for (_, sc), (_, all_steps) in zip(pairs, expanded, strict=True):
        steps = select_steps(all_steps, only or {})
        for b in [b for b in sc.brokers if b in wanted]:
            plan.append((sc, b, [s for s in steps if s.broker == b]))
    total = sum(len(steps) for _, _, steps in plan)
    if total == 0:
        what = f"brokers {', '.join(wanted)}"
        if only:
            what += " matching " + " ".join(f"--only {k}={v}" for k, vs in only.items() for v in vs)
        raise ConfigError(f"nothing to run: no steps for {what}")
    progress.steps_total = total
    if any(engine_for(sc, s, engine) == "jvm" for sc, _, steps in plan for s in steps):
        # Built (or found built) before any broker starts, so no step's set-up waits on Maven.
        from bench.engines.jvm import ensure_built

        ensure_built(progress.message)
    root = Path(infra_root) if infra_root else default_infra_dir() / "run"
    table = executors()
    metadata = run_metadata(pairs, profile, wanted, only, engine)
    on_targets = None
    if targets is not None:
        from bench.targets.run import prepare_targets

        on_targets = prepare_targets(targets, plan, engine, progress.message)
        metadata["targets"] = on_targets.identities
        metadata["broker_versions"] = on_targets.versions
        metadata["durability"] = metadata["quorums"] = "as configured on the target"
    placement: Any = nullcontext()
    if workers:
        from bench.engines.pool import remote_workers
        from bench.engines.remote import probe_workers

        metadata["workers"] = probe_workers(workers, progress.message)
        placement = remote_workers(workers)
    # One run per infra directory, taken before the run directory: a refused run leaves none.
    # A run on targets starts no broker and holds no infra directory.
    with InfraLock(root) if on_targets is None else nullcontext():
        if on_targets is None:
            stop_orphans(root, progress.message)
        run = RunWriter.create(out_dir, metadata)
        progress.message(f"run {run.run_id}: {total} steps -> {run.run_dir}")
        try:
            with (
                run,
                placement,
                _sigterm_as_interrupt(),
                _client_log(run.run_dir / "logs" / "clients.log"),
            ):
                for scenario, broker, steps in plan:
                    session: BrokerSession | TargetSession = (
                        BrokerSession(root / broker, run, progress)
                        if on_targets is None
                        else TargetSession(on_targets.file.for_broker(broker))
                    )
                    try:
                        for step in steps:
                            _run_one(
                                run, session, scenario, step, table, progress, port_offset, engine
                            )
                    finally:
                        session.down()
        except KeyboardInterrupt:
            run.event("interrupted", detail={"steps_done": progress.steps_done})
            raise RunInterrupted(
                f"interrupted after {progress.steps_done}/{total} steps; the brokers were "
                f"stopped and the finished steps are kept in {run.run_dir} (run marked partial)"
            ) from None
    return run.run_dir


def _run_one(
    run: RunWriter,
    session: BrokerSession | TargetSession,
    scenario: Scenario,
    step: Step,
    table: dict[str, Executor],
    progress: Progress,
    port_offset: int,
    engine: Engine | None = None,
) -> None:
    started = clock.now()
    settings = infra_settings_for(scenario, step, port_offset)
    try:
        session.ensure(
            settings,
            scenario.profile(step.profile).broker_warmup_s or 0.0,
            engine_for(scenario, step, engine),
        )
        progress.start_step(f"{step.scenario} {step.step_id}", _expected_s(scenario, step))
        ctx = StepContext(
            run,
            run.run_id,
            scenario,
            step,
            session.infra,
            session.settings if isinstance(session, TargetSession) else settings,
            progress,
            scenario.profile(step.profile).message_size,
            engine_for(scenario, step, engine),
        )
        record = table[scenario.kind](ctx)
    except KeyboardInterrupt:
        raise
    except BenchError as exc:
        # A broker that stopped answering fails this step; the next one starts it fresh.
        session.healthy = False
        record = _failed_record(step, started, str(exc))
        run.event(
            "step_failed",
            scenario=step.scenario,
            step_id=step.step_id,
            broker=step.broker,
            detail=str(exc),
        )
    except Exception as exc:  # a bug: keep the traceback in the events, go on with the run
        session.healthy = False
        record = _failed_record(step, started, f"{type(exc).__name__}: {exc}")
        run.event(
            "step_failed", step_id=step.step_id, broker=step.broker, detail=traceback.format_exc()
        )
    if record["status"] == "failed":
        # Whatever failed it (a broker answering HTTP 500 after its second kill -9 and restart,
        # measured), the next step gets a broker brought up fresh, not the same broken one.
        session.healthy = False
    run.write_step(record)
    progress.end_step(step_line(record))


def _expected_s(scenario: Scenario, step: Step) -> float | None:
    prof = scenario.profile(step.profile)
    duration = getattr(prof, "duration_s", None)
    return float(duration) if duration else None
