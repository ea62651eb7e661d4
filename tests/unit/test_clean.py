"""The one definition of a clean step and the one noise rule (bench.results.clean, .noise)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.results import clean
from bench.results.frames import step_row
from bench.results.noise import beyond_noise


def record(kind: str = "send-frequency", status: str = "ok", **metrics: Any) -> dict[str, Any]:
    return {
        "step_id": "s",
        "scenario": kind,
        "kind": kind,
        "status": status,
        "error": metrics.pop("error", None),
        "params": {},
        "window": {"start": 0.0, "end": 1.0},
        "metrics": metrics,
        "loss": None,
    }


@pytest.mark.parametrize(
    ("rec", "full", "publish"),
    [
        (record(), None, None),
        (record(send_errors=3), "3 send errors", "3 send errors"),
        (record(status="skipped", error="saturated"), "skipped (saturated)", "skipped (saturated)"),
        (record(status="failed", error="boom"), "failed: boom", "failed: boom"),
        # kill -9 measures send errors; a finished drain with a loss is a finding, not a flaw
        (record("kill-9-recovery", send_errors=900, drain_complete=True), None, None),
        (
            record("kill-9-recovery", status="errors", drain_complete=False),
            "the drain did not finish: lost is an upper bound",
            None,
        ),
        # runs before drain_complete existed said it in the error
        (
            record("kill-9-recovery", status="errors", error="x: so 'lost' is an upper bound"),
            "the drain did not finish: lost is an upper bound",
            None,
        ),
        (
            record("kill-9-recovery", status="errors", error="restart failed: no"),
            "the restart failed",
            "the restart failed",
        ),
        (
            record("topic-growth", status="failed", error="stopped", create_stopped="refused"),
            "failed: stopped",
            None,
        ),
        (record("topic-growth", lookup_timeouts=2), None, "2 lookup timeouts"),
    ],
)
def test_why_not_clean(rec: dict[str, Any], full: str | None, publish: str | None) -> None:
    assert clean.why_not_clean(rec) == full
    assert clean.why_not_clean(rec, publish_side=True) == publish
    # a frame row (metrics flattened) gets the same answer as the stored record
    assert clean.why_not_clean(step_row(rec)) == full


def test_noise_rule_per_sample_size() -> None:
    rng = random.Random(7)
    same = [1000 * (1 + rng.gauss(0, 0.03)) for _ in range(10)]
    other = [1000 * (1 + rng.gauss(0, 0.03)) for _ in range(10)]
    assert not beyond_noise(same, other).beyond
    assert beyond_noise(same, [v * 0.8 for v in other]).beyond
    assert beyond_noise(same, [800.0], alpha=0.01).method.startswith("prediction")
    assert beyond_noise(same, [800.0], alpha=0.01).beyond
    assert not beyond_noise(same, [1010.0], alpha=0.01).beyond
    one = beyond_noise([100.0], [109.0], threshold_pct=10)
    assert (one.beyond, one.method) == (False, "threshold 10%")
    assert beyond_noise([100.0], [111.0], threshold_pct=10).beyond
    # a change under min_change_pct is never beyond, however significant
    assert not beyond_noise([100.0, 100.0], [101.0, 101.0], min_change_pct=5).beyond
    with pytest.raises(ValueError):
        beyond_noise([], [1.0])


def test_a_ramp_that_stopped_does_not_fail_the_run() -> None:
    """A ramp step skipped after its ramp saturated is not clean (no figures), but it is how a
    ramp ends: neither `bench run`'s exit status nor the nightly job counts it. A skip for another
    reason (a group that broke off) and a step with send errors still do."""
    import pandas as pd

    from bench.results.schema import RAMP_STOPPED

    stopped = record(status="skipped", error=f"{RAMP_STOPPED} 6000 msg/s offered")
    broke = record(status="skipped", error="not run: creation broke off at 5,000 topics")
    errors = record(send_errors=2)
    steps = pd.DataFrame([step_row(r) for r in (record(), stopped, broke, errors)])
    assert clean.why_not_clean(stopped) is not None
    assert clean.ramp_stopped(stopped) and not clean.ramp_stopped(broke)
    whys = [why for _, why in clean.run_unclean(steps)]
    assert whys == [f"skipped ({broke['error']})", "2 send errors"]
    only_ramp = pd.DataFrame([step_row(r) for r in (record(), stopped)])
    assert clean.run_unclean(only_ramp) == []
