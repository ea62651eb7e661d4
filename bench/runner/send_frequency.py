"""send-frequency: achieved TPS and latency against the offered rate, by send mode and
connection mode, plus a ramp that stops at saturation (DESIGN.md section 3.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from bench import clock
from bench.results.schema import RAMP_STOPPED
from bench.runner.broker_count import BrokerCount
from bench.runner.common import (
    base_spec,
    create_topics,
    finish,
    load_plan,
    open_step_driver,
    start_meter,
    step_topic_names,
)
from bench.runner.load import DRAIN_CAP_S, run_load
from bench.runner.record import loss_totals, skipped_record, step_record
from bench.scenarios.model import SendFrequencyProfile

if TYPE_CHECKING:
    from bench.runner.api import StepContext

# Ramp groups that already saturated in this process: (run id, group) -> the offered rate.
_saturated: dict[tuple[str, str], float] = {}


def run_step(ctx: StepContext) -> dict[str, Any]:
    step = ctx.step
    prof = cast(SendFrequencyProfile, ctx.scenario.profile(step.profile))
    p = step.params
    started = clock.now()
    rate = float(p["rate_per_s"])
    key = (ctx.run_id, step.group)
    if p.get("phase") == "ramp" and key in _saturated:
        return skipped_record(
            ctx,
            {"offered_rate_per_s": rate},
            # Saturated says what was reached, not who limited it: client_bound on the step
            # that saturated tells broker from client.
            f"{RAMP_STOPPED} {_saturated[key]:.0f} msg/s offered",
        )
    send_mode, conn_mode = str(p["send_mode"]), str(p["connection_mode"])
    topics = step_topic_names(ctx, "sf", prof.topics)
    with open_step_driver(ctx) as driver:
        driver.check_send_mode(send_mode)
        creation = create_topics(driver, topics, concurrency=8)
        if creation.errors:
            raise_for = creation.first_error or "unknown error"
            return step_record(
                ctx,
                started_at=started,
                metrics={},
                window={"start": started, "end": started},
                status="failed",
                error=f"could not create the topics: {raise_for}",
            )
        count = BrokerCount(driver, topics)
        count.start()
        meter = start_meter(ctx, prof.warmup_s)
        spec = base_spec(
            ctx,
            topics,
            rate_per_s=rate,
            send_mode=send_mode,
            connection_mode=conn_mode,
            producers_per_topic=max(1, prof.producers // prof.topics),
            max_in_flight=prof.max_in_flight,
            batch_size=prof.batch_size_for_per_batch or 100,
            warmup_s=prof.warmup_s,
            subscriptions_per_topic=1,
            sender_threads=4 if send_mode == "sync" else 1,
        )
        result = run_load(
            load_plan(ctx, spec, topics),
            meter,
            prof.duration_s,
            progress_tick=ctx.progress.tick,
            # ONEWAY has no acknowledgements, so no loss to settle: no drain to wait for.
            drain_timeout_s=0.0 if send_mode == "oneway" else DRAIN_CAP_S,
        )
        count.end()
    merged, window = meter.window()
    secs = max(1e-3, window["end"] - window["start"])
    achieved = (merged.counters.get("acked", 0) / secs) if merged else 0.0
    stored = count.stored
    extra: dict[str, Any] = {
        "send_mode": send_mode,
        "connection_mode": conn_mode,
        **count.record(ctx),
    }
    if send_mode == "oneway":
        # No ack comes back, so the broker's own count of what it stored, over the send time
        # (duration_s, warm-up included), is the achieved rate. Not the consumers' receipts:
        # they are consume_tps, and RocketMQ's 5.x Python consumer tops out far below what
        # ONEWAY puts (a first full run stopped its ramp at 3,000/s, offered and stored in
        # full, because only 1,218/s had been consumed).
        if stored is not None:
            achieved = stored / prof.duration_s
        else:  # the broker's count is unknown: the consumers' receipts, a lower bound
            achieved = (merged.counters.get("received", 0) / secs) if merged else 0.0
        extra["publish_tps"] = achieved
    threshold = 0.9
    if p.get("phase") == "ramp" and prof.ramp is not None:
        threshold = prof.ramp.stop_when_achieved_below
    saturated = achieved < threshold * rate
    extra["saturated"] = saturated
    if saturated and p.get("phase") == "ramp":
        _saturated[key] = rate
        ctx.event(
            "warning", detail=f"saturated: {achieved:.0f} msg/s achieved of {rate:.0f} offered"
        )
    loss = None if send_mode == "oneway" else loss_totals(result.ledgers)
    if result.hook_results.get("worker_failures"):
        ctx.event("error", detail={"worker_failures": result.hook_results["worker_failures"]})
    return finish(
        ctx,
        meter,
        drained=result.drained,
        drain_note=result.drain_note,
        started_at=started,
        offered_rate_per_s=rate,
        extra=extra,
        loss=loss,
    )
