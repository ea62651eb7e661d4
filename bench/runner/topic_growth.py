"""topic-growth: what happens to creation, lookups and TPS as topics accumulate
(DESIGN.md section 3.1).

Topics accumulate within a step group (one group per Pulsar bundle count): each step creates
the topics that take the total to its ``topic_count``, samples lookups over every topic so far,
and measures a steady load on the first ``active_topics``. In ``create_under_load`` mode the
load runs while the topics are created (the seed's "topics added while the broker runs").
``broker_messages_in`` is what the broker stored on the active topics between the load's
start and the drain's end.
"""

from __future__ import annotations

import random
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from bench import clock
from bench.drivers.base import Driver, OperationTimeout, Unsupported
from bench.errors import DriverError
from bench.metrics import histograms
from bench.runner.broker_count import BrokerCount
from bench.runner.common import (
    Creation,
    base_spec,
    create_topics,
    finish,
    load_plan,
    open_step_driver,
    start_meter,
    topic_names,
)
from bench.runner.load import run_load
from bench.runner.measure import latency
from bench.runner.record import loss_totals, skipped_record, step_record
from bench.scenarios.model import TopicGrowthProfile

if TYPE_CHECKING:
    from bench.runner.api import StepContext

# Topics created so far per (run id, group): later steps of the group add to them.
_created: dict[tuple[str, str], int] = {}
# Groups whose topic creation broke off: (run id, group) -> why. Their later steps are skipped
# (a broker brought up fresh has none of the group's topics).
_broken: dict[tuple[str, str], str] = {}
CREATE_JOIN_S = 3600.0
"""How long a step waits, after its load, for its topic creation and lookups to finish."""


def _lookups(driver: Driver, names: list[str], sample: int, timeout_s: float) -> dict[str, Any]:
    """Admin lookups (Pulsar HTTP, RocketMQ name-server route) over a uniform sample."""
    rng = random.Random(len(names))  # reproducible sample for a given topic count
    chosen = rng.sample(names, min(sample, len(names)))
    hist = histograms.new_histogram()
    timeouts = errors = 0
    deadline = time.monotonic() + max(60.0, timeout_s * 4)
    for topic in chosen:
        if time.monotonic() > deadline:
            break
        try:
            histograms.record(hist, max(1, driver.lookup(topic, timeout_s, method="admin")))
        except OperationTimeout:
            timeouts += 1
        except DriverError:
            errors += 1
    return {"hist": hist, "timeouts": timeouts, "errors": errors}


def run_step(ctx: StepContext) -> dict[str, Any]:
    try:
        return _run_step(ctx)
    except Exception as exc:
        # A step that failed outright (the broker died under load...) leaves the group's topic
        # count unknown: its later steps are not run on a broker that may have none of them.
        _broken.setdefault((ctx.run_id, ctx.step.group), f"an earlier step failed: {exc}")
        raise


def _run_step(ctx: StepContext) -> dict[str, Any]:
    step = ctx.step
    prof = cast(TopicGrowthProfile, ctx.scenario.profile(step.profile))
    p = step.params
    started = clock.now()
    count = int(p["topic_count"])
    bundles = p.get("pulsar_bundles")
    key = (ctx.run_id, step.group)
    if key in _broken:
        return skipped_record(ctx, {"topic_count": count}, f"not run: {_broken[key]}")
    have = _created.get(key, 0)
    prefix = f"tg{bundles}" if bundles else "tg"
    names = topic_names(ctx, prefix, count)
    new = names[have:]
    # The load runs on topics that have carried none yet: the first step's first topics, then
    # the newest ones an earlier step created. A step's new consumer groups then have only its
    # own messages to read (RocketMQ starts a new group at offset 0 of a topic still in the page
    # cache, and would first re-read every earlier step's messages).
    a = prof.active_topics
    active = names[have - a : have] if have >= a else names[:a]
    batch = prof.rocketmq_create_batch if ctx.broker == "rocketmq" else 1
    settings = {"create_batch_size": batch} if batch > 1 else None
    with open_step_driver(ctx, settings=settings) as driver:
        loaded = active
        if bundles:
            driver.set_namespace_bundles(int(bundles))
            loaded = _qualified(driver, active)
        if prof.mode == "autocreate" and ctx.broker == "rocketmq":
            raise Unsupported(
                "RocketMQ's gRPC proxy does not auto-create topics (and the broker runs with "
                "autoCreateTopicEnable=false); use mode precreate or create_under_load"
            )
        if have == 0 and prof.mode == "create_under_load":
            # Under load, the load needs its topics first; the rest is created during it.
            first = create_topics(driver, active, prof.create_concurrency)
            if first.errors:
                raise DriverError(f"could not create the active topics: {first.first_error}")
            new = names[len(active) :]
            _created[key] = len(active)

        creation: dict[str, Creation] = {}
        lookups: dict[str, Any] = {}
        abandon = threading.Event()
        crashed: list[BaseException] = []

        def create_and_look_up() -> None:
            try:
                if prof.mode == "autocreate":
                    creation["c"] = _autocreate(driver, new, prof.lookup_timeout_s)
                else:
                    creation["c"] = create_topics(driver, new, prof.create_concurrency, abandon)
                if not abandon.is_set() and not creation["c"].stopped_early:
                    lookups.update(
                        _lookups(driver, names, prof.lookup_sample, prof.lookup_timeout_s)
                    )
            except Exception as exc:  # in a thread: handed to the step, never lost on stderr
                crashed.append(exc)

        meter = start_meter(ctx, prof.warmup_s)
        spec = base_spec(
            ctx,
            loaded,
            rate_per_s=prof.rate_per_s,
            warmup_s=prof.warmup_s,
            subscriptions_per_topic=1,
            producers_per_topic=1,
        )
        stored = BrokerCount(driver, loaded)
        if prof.mode == "create_under_load":
            worker = threading.Thread(target=create_and_look_up, name="topic-create", daemon=True)
            started_creating = {"t": 0.0}

            def on_tick(elapsed: float, pool: Any) -> None:
                if not started_creating["t"] and elapsed >= prof.warmup_s:
                    started_creating["t"] = elapsed
                    worker.start()

            try:
                stored.start()
                result = run_load(
                    load_plan(ctx, spec, loaded),
                    meter,
                    prof.duration_s,
                    on_tick=on_tick,
                    progress_tick=ctx.progress.tick,
                )
                if not started_creating["t"]:
                    worker.start()
                worker.join(timeout=CREATE_JOIN_S)
                # Nothing sends after the drain: read once creation no longer loads the broker.
                stored.end()
            finally:
                # Interrupted or failed: the creator stops at its next topic, not 100,000 later.
                abandon.set()
        else:
            create_and_look_up()
            stored.start()
            result = run_load(
                load_plan(ctx, spec, loaded),
                meter,
                prof.duration_s,
                progress_tick=ctx.progress.tick,
            )
            stored.end()
    if crashed:
        raise crashed[0]
    if "c" not in creation:
        raise DriverError(f"topic creation did not finish within {CREATE_JOIN_S:.0f} s")
    c = creation["c"]
    _created[key] = _created.get(key, 0) + c.created
    # Lookups run once creation finished; when it stopped early they were not measured.
    looked = "hist" in lookups
    extra: dict[str, Any] = {
        "topic_count": count,
        "topics_created": _created[key],
        "create_latency_us": latency(c.hist),
        "create_rate_per_s": c.rate_per_s,
        "create_errors": c.errors,
        "lookup_latency_us": latency(lookups["hist"]) if looked else None,
        "lookup_timeouts": lookups["timeouts"] if looked else None,
        "lookup_errors": lookups["errors"] if looked else None,
        "pulsar_bundles": int(bundles) if bundles else None,
        "create_batch_size": batch,
        "create_stopped": c.stopped_early,
        **stored.record(ctx),
    }
    if c.errors:
        ctx.event("warning", detail=f"{c.errors} topic creations failed, first: {c.first_error}")
    hists = {"create_topic": histograms.encode(c.hist)}
    if looked:
        hists["lookup"] = histograms.encode(lookups["hist"])
    status: str | None = "errors" if c.errors or (looked and lookups["timeouts"]) else None
    error = None
    if c.stopped_early:
        # Where and how the broker broke is the finding: the step says so, the run goes on.
        status = "failed"
        error = f"topic creation stopped at {_created[key]:,} of {count:,} topics: "
        error += c.stopped_early
        _broken[key] = error
    return finish(
        ctx,
        meter,
        drained=result.drained,
        drain_note=result.drain_note,
        started_at=started,
        offered_rate_per_s=prof.rate_per_s,
        extra=extra,
        loss=loss_totals(result.ledgers),
        extra_histograms=hists,
        status=status,
        error=error,
    )


def _qualified(driver: Driver, topics: list[str]) -> list[str]:
    """``topics`` as the load must name them: the workers open drivers of their own, in the
    broker's default namespace, so a Pulsar topic of the bundle namespace goes by its full name
    (by its short one the load ran on namesakes the broker created in ``public/default``, and the
    broker's count of the step's topics said 0 stored)."""
    from bench.drivers.pulsar import PulsarDriver

    return [driver.full_name(t) for t in topics] if isinstance(driver, PulsarDriver) else topics


def _autocreate(driver: Driver, names: list[str], timeout_s: float) -> Creation:
    """Topics created by first use: a client lookup (Pulsar creates the topic on it)."""
    hist = histograms.new_histogram()
    created = errors = 0
    first_error = None
    started = time.monotonic()
    for name in names:
        try:
            histograms.record(hist, max(1, driver.lookup(name, timeout_s, method="client")))
            created += 1
        except DriverError as exc:
            errors += 1
            first_error = first_error or str(exc)
    return Creation(created, errors, time.monotonic() - started, hist, first_error)


__all__ = ["run_step", "step_record"]
