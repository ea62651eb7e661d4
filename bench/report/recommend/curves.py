"""Curve features found the same way for the charts and the criteria: the knee of a topic-growth
curve and the saturation point of a rate sweep (rules in the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast


@dataclass(frozen=True)
class Knee:
    """The last point that held TPS (``x``, ``y``) and the first that fell (``drop_x``)."""

    x: float
    y: float
    drop_x: float
    drop_y: float


def find_knee(x: Sequence[float], y: Sequence[float | None], drop_pct: float = 10.0) -> Knee | None:
    """Return the knee of a TPS curve (see the module docstring), or None if TPS never falls.

    Points with a missing ``y`` are skipped; ``x`` need not be sorted.
    """
    pts = sorted((float(a), float(cast(float, b))) for a, b in zip(x, y, strict=True) if _num(b))
    best = -math.inf
    for i, (a, b) in enumerate(pts):
        floor = (1 - drop_pct / 100) * best
        # A fall counts only when TPS stays down: a later point back within drop_pct of the
        # best (a cold JVM's first steps, one slow step) is not a knee.
        if i > 0 and b < floor and all(later < floor for _, later in pts[i + 1 :]):
            px, py = pts[i - 1]
            return Knee(px, py, a, b)
        best = max(best, b)
    return None


@dataclass(frozen=True)
class Saturation:
    """Where the achieved rate stopped following the offered rate."""

    offered: float | None
    """The first offered rate not sustained (None: every offered rate was sustained)."""
    achieved: float | None
    max_achieved: float
    """The highest achieved publish TPS: the broker's limit as measured."""


def find_saturation(
    offered: Sequence[float],
    achieved: Sequence[float | None],
    flagged: Sequence[bool | None] | None = None,
    fraction: float = 0.9,
) -> Saturation | None:
    """Return the saturation point of an offered/achieved curve, or None without data."""
    flags = list(flagged) if flagged is not None else [None] * len(offered)
    pts = sorted(
        (float(o), float(cast(float, a)), f)
        for o, a, f in zip(offered, achieved, flags, strict=True)
        if _num(o) and _num(a)
    )
    if not pts:
        return None
    max_achieved = max(a for _, a, _ in pts)
    held = [f is not True and a >= fraction * o for o, a, f in pts]
    for i, (o, a, _) in enumerate(pts):
        # Saturated from here on: a higher offered rate sustained later (the first step on a
        # cold JVM, one slow step) means this one was not the limit.
        if not held[i] and not any(held[i + 1 :]):
            return Saturation(o, a, max_achieved)
    return Saturation(None, None, max_achieved)


def _num(v: Any) -> bool:
    return (
        v is not None
        and not isinstance(v, bool)
        and isinstance(v, int | float)
        and math.isfinite(float(v))
    )
