"""What a clean step is: the one definition that ``bench run``'s exit status, the report, ``bench
compare``, the history and ``bench nightly`` share.

A step is **clean** when its figures can be read as measured:

- it ran (not ``skipped``) and did not fail (``failed``);
- outside kill -9, no send failed (kill -9 steps measure send errors: they are the outage);
- a kill -9 restart did not fail;
- its drain finished (else ``loss.lost`` is only an upper bound);
- a step the runner marked ``errors`` for another reason is not clean.

A ramp step skipped because its ramp already saturated (:data:`RAMP_STOPPED`) has no figures,
so it is not clean either; but it is how a ramp is meant to end, so it does not make a *run* fail
(:func:`run_unclean`: ``bench run``'s exit status and ``bench nightly``).

A confirmed loss after a finished drain is a finding about the broker, not a flaw of the
measurement: that step is clean, and its loss counts.

Some figures come from the publish side only (sends, topic creation, lookups). For those
(``publish_side=True``) an unfinished drain does not matter, and a topic-growth step that
``failed`` because the broker refused further topics (``create_stopped``) was measured up to
where creation stopped, so it counts as well.

Functions take a step as stored (a ``steps.jsonl`` record, metrics nested) or as a frame row
(:func:`bench.results.frames.step_row`, metrics flattened); both give the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.results.schema import RAMP_STOPPED

KILL_KIND = "kill-9-recovery"
PUBLISH_SIDE_ERRORS: tuple[str, ...] = ("send_errors", "lookup_timeouts", "lookup_errors")
"""Counts that void a publish-side figure of a step when above 0 (outside kill -9)."""


def _flat(step: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(step.get("metrics"), Mapping):
        from bench.results.frames import step_row

        return step_row(step)
    return step


def _value(row: Mapping[str, Any], key: str) -> Any:
    v = row.get(key)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _count(row: Mapping[str, Any], key: str) -> int:
    v = _value(row, key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0
    return int(v)


def drain_unfinished(step: Mapping[str, Any]) -> bool:
    """True when the step's drain ended before every acknowledged message arrived (its
    ``loss.lost`` is an upper bound). Read from ``drain_complete``, or for runs made before
    that metric existed, from the step's error (``... an upper bound ...``)."""
    row = _flat(step)
    if _value(row, "drain_complete") is False:
        return True
    return "upper bound" in str(_value(row, "error") or "")


def why_not_clean(step: Mapping[str, Any], *, publish_side: bool = False) -> str | None:
    """Why ``step``'s figures cannot be read as measured (see the module docstring), or None
    when it is clean. ``publish_side``: judge it for a figure of sends, creation or lookups."""
    row = _flat(step)
    status = str(_value(row, "status") or "")
    error = str(_value(row, "error") or "")
    kill = _value(row, "kind") == KILL_KIND
    if status == "skipped":
        return f"skipped ({error})" if error else "skipped"
    if status == "failed":
        if publish_side and _value(row, "create_stopped"):
            pass  # measured up to where the broker stopped creating topics
        else:
            return f"failed: {error}" if error else "failed"
    if kill:
        if "restart failed" in error:
            return "the restart failed"
    else:
        counted = PUBLISH_SIDE_ERRORS if publish_side else ("send_errors",)
        errs = {k: _count(row, k) for k in counted if _count(row, k) > 0}
        if errs:
            return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in errs.items())
    if drain_unfinished(row):
        if publish_side:
            return None
        return "the drain did not finish: lost is an upper bound"
    if status == "errors" and not kill and not publish_side:
        return f"errors: {error}" if error else "errors"
    return None


def is_clean(step: Mapping[str, Any], *, publish_side: bool = False) -> bool:
    """True when :func:`why_not_clean` finds nothing."""
    return why_not_clean(step, publish_side=publish_side) is None


def unclean(steps: pd.DataFrame, *, publish_side: bool = False) -> pd.Series:
    """Per row of a steps frame: why it is not clean, or None."""
    if not len(steps):
        return pd.Series([], dtype=object)
    return pd.Series(
        [why_not_clean(r, publish_side=publish_side) for r in steps.to_dict("records")],
        index=steps.index,
        dtype=object,
    )


def clean_mask(steps: pd.DataFrame, *, publish_side: bool = False) -> pd.Series:
    """Per row of a steps frame: True where the step is clean."""
    if not len(steps):
        return pd.Series([], dtype=bool)
    return unclean(steps, publish_side=publish_side).isna()


def ramp_stopped(step: Mapping[str, Any]) -> bool:
    """True for a ramp step skipped because its ramp had already saturated: by design."""
    row = _flat(step)
    return _value(row, "status") == "skipped" and str(_value(row, "error") or "").startswith(
        RAMP_STOPPED
    )


def run_unclean(steps: pd.DataFrame) -> list[tuple[dict[str, Any], str]]:
    """The steps that make a run not clean, each with why: every step that is not clean but
    those a saturated ramp skipped (:func:`ramp_stopped`)."""
    records = steps.to_dict("records") if len(steps) else []
    return [
        (r, why)
        for r, why in zip(records, unclean(steps), strict=True)
        if why and not ramp_stopped(r)
    ]


def run_summary(run: Any) -> tuple[list[str], int]:
    """For ``bench run``'s summary (a :class:`bench.results.store.Run`): one line per step that
    is not clean, then one per broken invariant (:mod:`bench.results.check`), and how many
    steps are not clean (the exit status is 1 when any is)."""
    from bench.results.check import check_run

    lines = [
        f"{r['status']:<7} {r['scenario']} {r['step_id']}: {why}"
        for r, why in run_unclean(run.steps)
    ]
    unclean_count = len(lines)
    lines += [f"check: {p.line()}" for p in check_run(run)]
    return lines, unclean_count
