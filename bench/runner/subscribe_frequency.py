"""subscribe-frequency: fan-out (subscriptions per topic) and churn (subscribe/unsubscribe
operations per second) under a fixed publish load (DESIGN.md section 3.3). The broker's own count
of what the step's topics stored, from the load's start to the drain's end, is
``broker_messages_in`` (subscriptions do not change it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from bench import clock
from bench.engines.spec import H_FIRST_MESSAGE, H_SUBSCRIBE, SUBSCRIBED, UNSUBSCRIBED
from bench.errors import DriverError
from bench.metrics.intervals import merge
from bench.runner.broker_count import BrokerCount
from bench.runner.common import (
    base_spec,
    create_topics,
    finish,
    latency_of,
    load_plan,
    open_step_driver,
    start_meter,
    step_topic_names,
)
from bench.runner.load import run_load
from bench.runner.record import loss_totals
from bench.scenarios.model import SubscribeFrequencyProfile

if TYPE_CHECKING:
    from bench.runner.api import StepContext


def run_step(ctx: StepContext) -> dict[str, Any]:
    step = ctx.step
    prof = cast(SubscribeFrequencyProfile, ctx.scenario.profile(step.profile))
    p = step.params
    started = clock.now()
    sweep = str(p["sweep"])
    fanout = int(p["fanout"])
    churn = float(p.get("churn_per_s") or 0.0)
    topics = step_topic_names(ctx, "sub", prof.topics)
    with open_step_driver(ctx) as driver:
        creation = create_topics(driver, topics, concurrency=8)
        if creation.errors:
            raise DriverError(f"could not create the topics: {creation.first_error}")
        meter = start_meter(ctx, prof.warmup_s)
        # Fan-out: `fanout` subscriptions per topic, all reconciled by the ledger. Churn: the
        # base fan-out stays, and subscriptions come and go at `churn` operations per second.
        subs = fanout if sweep == "fanout" else prof.churn_base_fanout
        spec = base_spec(
            ctx,
            topics,
            rate_per_s=prof.publish_rate_per_s,
            subscriptions_per_topic=subs,
            warmup_s=prof.warmup_s,
            producers_per_topic=1,
        )
        churning = {"on": False}

        def on_tick(elapsed: float, pool: Any) -> None:
            if churn and not churning["on"] and elapsed >= prof.warmup_s:
                churning["on"] = True
                pool.churn(churn)

        count = BrokerCount(driver, topics)
        count.start()
        result = run_load(
            load_plan(ctx, spec, topics),
            meter,
            prof.duration_s,
            on_tick=on_tick if churn else None,
            progress_tick=ctx.progress.tick,
        )
        count.end()
    everything = merge([t.stats for t in meter.ticks]) if meter.ticks else None
    measured, _ = meter.window()
    c_win = measured.counters if measured else {}
    errors = everything.errors if everything else {}
    # Fan-out subscribes before the load starts, so its subscribe figures come from every
    # phase; churn's from the measured window, where its operations are counted (every phase
    # would add the subscriptions made before the load). The step's histogram file holds what
    # the summaries were made from.
    source = measured if churn else everything
    own: dict[str, str] = {
        name: source.histograms[name]
        for name in (H_SUBSCRIBE, H_FIRST_MESSAGE)
        if source is not None and name in source.histograms
    }
    extra: dict[str, Any] = {
        "fanout": fanout,
        "churn_per_s": churn,
        "subscribe_latency_us": latency_of(source.histogram(H_SUBSCRIBE)) if source else None,
        "first_message_latency_us": latency_of(source.histogram(H_FIRST_MESSAGE))
        if source
        else None,
        "subscribe_failures": sum(v for k, v in errors.items() if k.startswith("subscribe.")),
        "churn_ops": c_win.get(SUBSCRIBED, 0) + c_win.get(UNSUBSCRIBED, 0) if churn else 0,
        **count.record(ctx),
    }
    if result.hook_results.get("worker_failures"):
        ctx.event("error", detail={"worker_failures": result.hook_results["worker_failures"]})
    # consume_tps counts every subscription's receipts: fan-out N delivers N copies.
    return finish(
        ctx,
        meter,
        drained=result.drained,
        drain_note=result.drain_note,
        started_at=started,
        offered_rate_per_s=prof.publish_rate_per_s,
        extra=extra,
        loss=loss_totals(result.ledgers),
        extra_histograms=own,
    )
