"""What the four step executors share: opening a driver, creating topics, a base load spec,
and turning a :class:`StepMeter` into a written step record."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.drivers.base import Driver, open_driver
from bench.engines.spec import LoadSpec
from bench.errors import BrokerUnavailable
from bench.metrics import histograms
from bench.runner.load import LoadPlan
from bench.runner.measure import StepMeter, latency
from bench.runner.record import step_record

if TYPE_CHECKING:
    from bench.runner.api import StepContext


def topic_names(ctx: StepContext, prefix: str, n: int) -> list[str]:
    """Shard-aware, run-unique topic names (``<prefix>-<run>-<i>``)."""
    run = ctx.run_id.rsplit("-", 1)[-1]
    return [f"{prefix}-{run}-{i:06d}" for i in range(n)]


def step_topic_names(ctx: StepContext, prefix: str, n: int) -> list[str]:
    """Topics of this step alone (``<prefix><step index>-<run>-<i>``): a new consumer group on
    them has only this step's messages to read (RocketMQ starts a new group at offset 0 of a
    topic still in the page cache, so on a reused topic it would re-read every earlier step)."""
    return topic_names(ctx, f"{prefix}{ctx.step.index}", n)


def step_payload_id(ctx: StepContext) -> str:
    """The run id the step's payloads carry: the run's, plus the step's index."""
    return f"{ctx.run_id}.{ctx.step.index}"


def open_step_driver(
    ctx: StepContext, path: str = "direct", settings: dict[str, Any] | None = None
) -> Driver:
    return open_driver(ctx.broker, ctx.infra.endpoints(ctx.broker), path=path, settings=settings)


@dataclass
class Creation:
    """Topic creation figures (latency in a histogram, microseconds)."""

    created: int
    errors: int
    seconds: float
    hist: Any
    first_error: str | None = None
    stopped_early: str | None = None
    """Why creation ended before the last name (broker gone, too many failures in a row, the
    run interrupted); None when every name was tried."""

    @property
    def rate_per_s(self) -> float:
        return self.created / self.seconds if self.seconds > 0 else 0.0


MAX_CONSECUTIVE_CREATE_ERRORS = 200


def create_topics(
    driver: Driver,
    names: Sequence[str],
    concurrency: int,
    stop: threading.Event | None = None,
) -> Creation:
    """Create ``names``; failures are counted, not raised.

    Creation ends early, saying why in ``stopped_early``, when the broker stops answering
    (BrokerUnavailable), after :data:`MAX_CONSECUTIVE_CREATE_ERRORS` failures in a row (a broker
    that refuses everything), or once ``stop`` is set (the step is being abandoned)."""
    hist = histograms.new_histogram()
    created = errors = in_a_row = 0
    first_error = stopped = None
    started = time.monotonic()
    results = driver.create_topics(list(names), concurrency=concurrency)
    try:
        for res in results:
            if res.ok:
                created += 1
                in_a_row = 0
                histograms.record(hist, max(1, int(res.latency_us)))
            else:
                errors += 1
                in_a_row += 1
                first_error = first_error or str(res.error)
            if stop is not None and stop.is_set():
                stopped = f"stopped after {created + errors} of {len(names)}: step abandoned"
                break
            if in_a_row >= MAX_CONSECUTIVE_CREATE_ERRORS:
                stopped = f"gave up after {in_a_row} failures in a row, last: {res.error}"
                break
    except BrokerUnavailable as exc:
        errors += 1
        first_error = first_error or str(exc)
        stopped = f"the broker stopped answering: {exc}"
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
    return Creation(created, errors, time.monotonic() - started, hist, first_error, stopped)


def load_plan(ctx: StepContext, spec: LoadSpec, topics: Sequence[str]) -> LoadPlan:
    """The load of a step: ``spec`` over ``topics``, on the step's engine."""
    return LoadPlan(spec, topics, engine=ctx.engine, log_path=ctx.worker_log)


def base_spec(ctx: StepContext, topics: Sequence[str], **kw: Any) -> LoadSpec:
    """A LoadSpec for this step's broker and run; ``kw`` overrides the defaults."""
    values: dict[str, Any] = {
        "worker_id": "w0",
        "broker": ctx.broker,
        "endpoints": LoadSpec.endpoints_text(ctx.infra.endpoints(ctx.broker)),
        # Scoped to the step: a message an earlier step sent to the same topics (a backlog a
        # consumer group carries over) counts as foreign, never as received, duplicated or in
        # the end-to-end latency of this step.
        "run_id": step_payload_id(ctx),
        "topics": tuple(topics),
        "message_size": ctx.message_size,
        # RocketMQ group names allow only [A-Za-z0-9_-%|]; Pulsar's are laxer.
        "subscription_prefix": re.sub(r"[^A-Za-z0-9_-]", "_", ctx.step.step_id)[:40],
        "deadline_s": 1800.0,
    }
    values.update(kw)
    return LoadSpec(**values)


def broker_process_names(ctx: StepContext) -> list[str]:
    return [n for n in ctx.infra.pids() if n.startswith(ctx.broker + "/")]


def gc_logs(ctx: StepContext) -> list[Path]:
    # Each broker's JVMs log to <infra root>/<broker>/logs/<name>-gc-<pid>.log.
    root = ctx.infra.root
    return sorted([*(root / "logs").glob("*-gc-*.log"), *root.glob("*/logs/*-gc-*.log")])


def start_meter(ctx: StepContext, warmup_s: float) -> StepMeter:
    meter = StepMeter(ctx.step.scenario, ctx.step.step_id, ctx.broker, warmup_s)
    meter.start_resources(ctx.infra.pids(), lambda: gc_logs(ctx))
    return meter


def finish(
    ctx: StepContext,
    meter: StepMeter,
    *,
    started_at: float,
    offered_rate_per_s: float | None,
    extra: dict[str, Any],
    loss: dict[str, int] | None,
    extra_histograms: dict[str, str] | None = None,
    status: str | None = None,
    error: str | None = None,
    phases: Sequence[str] = ("measure",),
    drained: bool = True,
    drain_note: str = "",
) -> dict[str, Any]:
    """Write the step's series, resources and histograms; return its record.

    When the drain did not finish, "lost" only counts what had not arrived *yet*: the record
    says so (status ``errors``) instead of presenting an upper bound as a loss.
    """
    if not drained and loss is not None and loss.get("lost"):
        note = (
            f"{drain_note or 'the drain did not finish'}: "
            f"{loss['lost']} acknowledged messages had not arrived yet, so 'lost' is an "
            "upper bound, not a confirmed loss"
        )
        error = f"{error}; {note}" if error else note
        status = "failed" if status == "failed" else "errors"  # a failure stays one
    rows = meter.stop_resources()
    metrics, window = meter.metrics(offered_rate_per_s, phases)
    metrics.update(meter.resource_metrics(rows, window, broker_process_names(ctx)))
    metrics.update(extra)
    metrics["engine"] = ctx.engine
    if loss is not None:
        metrics["drain_complete"] = drained
    ctx.run.write_series(meter.series_rows())
    for row in rows:
        row.setdefault("step_id", ctx.step.step_id)
        row.setdefault("broker", ctx.broker)
    ctx.run.write_resources(rows)
    hists = meter.all_histograms(phases)
    hists.update(extra_histograms or {})
    if hists:
        ctx.run.write_histograms(ctx.step.scenario, ctx.step.step_id, hists)
    return step_record(
        ctx,
        started_at=started_at,
        metrics=metrics,
        window=window,
        loss=loss,
        status=status,
        error=error,
    )


def latency_of(encoded_or_hist: Any) -> dict[str, Any]:
    h = histograms.decode(encoded_or_hist) if isinstance(encoded_or_hist, str) else encoded_or_hist
    return latency(h)
