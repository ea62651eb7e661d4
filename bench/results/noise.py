"""Is a difference beyond the noise? The one rule that ``bench compare``, the recommendation and
the nightly regression check share.

``beyond_noise(a, b)`` compares the values of one figure on side ``a`` (before, a baseline, or
one broker) with side ``b``:

- **both sides have 2+ values**: Welch's t-test (two-sided), beyond when ``p < alpha``; two
  sides without any spread differ beyond the noise exactly when their means differ;
- **one side has 2+ values, the other one**: a prediction-interval t-test of the single value
  against the other side, ``t = (x - mean) / (sd * sqrt(1 + 1/n))``, ``n - 1`` degrees of
  freedom, one-sided in the direction it moved; a side without spread leaves it to the change;
- **one value each**: their spread is unknown, so only a relative change of at least
  ``threshold_pct`` counts.

In every case a change smaller than ``min_change_pct`` is not beyond the noise (a real but
operationally meaningless shift). The relative change is ``(mean(b) - mean(a)) / |mean(a)|``.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Noise:
    """The verdict of :func:`beyond_noise`."""

    beyond: bool
    change_pct: float
    """Relative change of ``b``'s mean from ``a``'s, in % (inf when ``a``'s mean is 0)."""
    method: str
    """How it was decided: ``welch p=0.003 (n=3/3)``, ``prediction p=... (n=20)``,
    ``threshold 10%``."""
    p_value: float | None = None


def change_pct(a: Sequence[float], b: Sequence[float]) -> float:
    """``(mean(b) - mean(a)) / |mean(a)|`` in %; inf (or 0 when both are 0) for a zero base."""
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    if ma == 0:
        return 0.0 if mb == 0 else math.inf
    return 100 * (mb - ma) / abs(ma)


def _prediction_p(sample: Sequence[float], x: float) -> float:
    n = len(sample)
    mean, sd = statistics.fmean(sample), statistics.stdev(sample)
    if sd == 0:
        return 0.0 if x != mean else 1.0
    t = (x - mean) / (sd * math.sqrt(1 + 1 / n))
    return float(stats.t.sf(abs(t), df=n - 1))


def beyond_noise(
    a: Sequence[float],
    b: Sequence[float],
    *,
    alpha: float = 0.05,
    threshold_pct: float = 10.0,
    min_change_pct: float = 0.0,
) -> Noise:
    """Judge whether ``b`` differs from ``a`` beyond the noise (rules in the module docstring).

    Both sides must hold at least one value (a ``ValueError`` otherwise).
    """
    if not a or not b:
        raise ValueError("beyond_noise needs at least one value on each side")
    change = change_pct(a, b)
    big_enough = abs(change) >= min_change_pct
    if len(a) >= 2 and len(b) >= 2:
        if statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0:
            p = 0.0 if statistics.fmean(a) != statistics.fmean(b) else 1.0
        else:
            with warnings.catch_warnings():
                # Nearly identical values: scipy warns of lost precision; the test still holds.
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_ind(list(a), list(b), equal_var=False).pvalue)
            if math.isnan(p):
                p = 0.0 if statistics.fmean(a) != statistics.fmean(b) else 1.0
        return Noise(p < alpha and big_enough, change, f"welch p={p:.2g} (n={len(a)}/{len(b)})", p)
    if len(a) >= 2 or len(b) >= 2:
        sample, x = (a, b[0]) if len(a) >= 2 else (b, a[0])
        p = _prediction_p(sample, x)
        return Noise(p < alpha and big_enough, change, f"prediction p={p:.2g} (n={len(sample)})", p)
    beyond = abs(change) >= max(threshold_pct, min_change_pct)
    return Noise(beyond, change, f"threshold {threshold_pct:g}%")
