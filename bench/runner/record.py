"""Building the step record the results store keeps (bench.results.schema.StepRecord)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench import clock
from bench.metrics.ledger import LedgerBook

if TYPE_CHECKING:
    from bench.runner.api import StepContext
    from bench.scenarios.steps import Step

LOSS_KEYS = ("acked", "received", "lost", "duplicated", "received_not_acked", "reordered")


def loss_totals(book: LedgerBook | None) -> dict[str, int] | None:
    """Loss counts summed over every (topic, subscription) of a run's ledgers."""
    if book is None:
        return None
    reports = book.reconcile()
    if not reports:
        return None
    totals = dict.fromkeys(LOSS_KEYS, 0)
    for rep in reports:
        d = rep.to_dict()
        for k in LOSS_KEYS:
            totals[k] += int(d.get(k, 0))
    return totals


def base_record(
    step: Step,
    *,
    started_at: float,
    status: str,
    error: str | None,
    params: dict[str, Any],
    metrics: dict[str, Any],
    window: dict[str, float],
    loss: dict[str, int] | None,
) -> dict[str, Any]:
    """The record of one finished step, in the shape bench.results.schema validates."""
    return {
        "step_id": step.step_id,
        "scenario": step.scenario,
        "kind": step.kind,
        "profile": step.profile,
        "broker": step.broker,
        "topology": step.topology,
        "index": step.index,
        "group": step.group,
        "params": params,
        "status": status,
        "error": error,
        "started_at": started_at,
        "ended_at": clock.now(),
        "window": window,
        "metrics": metrics,
        "loss": loss,
    }


def step_record(
    ctx: StepContext,
    *,
    started_at: float,
    metrics: dict[str, Any],
    window: dict[str, float],
    loss: dict[str, int] | None = None,
    status: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A finished step. ``status`` defaults to ``errors`` when any send failed, else ``ok``."""
    if status is None:
        status = "errors" if metrics.get("send_errors") else "ok"
    return base_record(
        ctx.step,
        started_at=started_at,
        status=status,
        error=error,
        params={**ctx.step.params, "infra": ctx.settings.to_json()},
        metrics=metrics,
        window=window,
        loss=loss,
    )


def skipped_record(ctx: StepContext, metrics: dict[str, Any], why: str) -> dict[str, Any]:
    """A step not run (its group already saturated or broke off), saying why."""
    now = clock.now()
    return step_record(
        ctx,
        started_at=now,
        metrics=metrics,
        window={"start": now, "end": now},
        status="skipped",
        error=why,
    )
