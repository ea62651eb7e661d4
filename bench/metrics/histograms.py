"""Latency histograms: one layout for the whole suite, so every histogram merges exactly.

All latencies are integer microseconds in an HdrHistogram tracking 1 us .. 1 hour with 3
significant digits (DESIGN.md section 4). Workers ship histograms as the library's compressed
base64 text (``encode``); the Runner decodes and merges them (``merge``). Merging adds bucket
counts, so a merged histogram equals the histogram of all the values recorded, and percentiles
are never averaged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3


def new_histogram() -> HdrHistogram:
    """Return an empty histogram with the suite's layout (us, 1 us .. 1 h, 3 digits)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record(h: HdrHistogram, value_us: int) -> bool:
    """Record ``value_us`` into ``h``, clamping it into 1 us .. 1 h.

    Returns True when the value was clamped, so the caller can count clamps: a latency below
    1 us (e.g. a wall clock stepping back) or above an hour is still counted, at the edge,
    rather than dropped or silently recorded at a wrong bucket.
    """
    value = int(value_us)
    if value < LOWEST_US:
        h.record_value(LOWEST_US)
        return True
    if value > HIGHEST_US:
        h.record_value(HIGHEST_US)
        return True
    h.record_value(value)
    return False


_POW2 = np.array([1 << k for k in range(63)], dtype=np.int64)


def record_many(h: HdrHistogram, values_us: Sequence[int]) -> int:
    """Record every value of ``values_us`` into ``h``, exactly as :func:`record` would one by
    one (same buckets, clamped into 1 us .. 1 h); return how many were clamped.

    The per-value cost of ``hdrh``'s pure-Python ``record_value`` (~3 us) is the largest part of
    a worker's own cost per message; computed for a whole interval's values at once it is a
    fraction of that. The bucket arithmetic is the library's own (bucket = highest set bit above
    the sub-bucket range, sub-bucket = value shifted by it), on integers only.
    """
    if len(values_us) == 0:
        return 0
    raw = np.asarray(values_us, dtype=np.int64)
    v = np.clip(raw, LOWEST_US, HIGHEST_US)
    clamped = int(np.count_nonzero(v != raw))
    # 64 - clz(v | mask) is the bit length of (v | mask): the number of powers of two <= it.
    bit_length = np.searchsorted(_POW2, v | h.sub_bucket_mask, side="right")
    bucket = bit_length - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = v >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket
    index -= h.sub_bucket_half_count
    slots, counts = np.unique(index, return_counts=True)
    for slot, n in zip(slots.tolist(), counts.tolist(), strict=True):
        h.counts[slot] += n
    h.total_count += len(v)
    h.min_value = min(h.min_value, int(v.min()))
    h.max_value = max(h.max_value, int(v.max()))
    return clamped


def encode(h: HdrHistogram) -> str:
    """Return ``h`` as the library's compressed, base64 V2 text (JSON-safe)."""
    return bytes(h.encode()).decode("ascii")


def decode(s: str) -> HdrHistogram:
    """Decode text made by :func:`encode`.

    Raises ValueError if the text is not an encoded histogram, or if its layout differs from
    the suite's: a different layout could only be merged approximately.
    """
    try:
        h = HdrHistogram.decode(s.encode("ascii"))
    except Exception as exc:  # the library raises several unrelated types on bad input
        raise ValueError(f"not an encoded HdrHistogram: {exc}") from exc
    layout = (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures)
    if layout != (LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES):
        raise ValueError(
            f"histogram layout {layout} is not the suite's "
            f"{(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)}; it cannot be merged exactly"
        )
    return h


def merge(items: Iterable[HdrHistogram | str]) -> HdrHistogram:
    """Return a new histogram holding the sum of ``items`` (histograms or encoded text).

    The inputs are not modified. An empty input gives an empty histogram.
    """
    total = new_histogram()
    for item in items:
        h = decode(item) if isinstance(item, str) else item
        if h.get_total_count() == 0:
            # HdrHistogram.add sets the minimum to 0 when the added histogram is empty
            # (it takes min() with the empty one's get_min_value() == 0); skip empties.
            continue
        total.add(h)
    return total


def summary(h: HdrHistogram) -> dict[str, int | float | None]:
    """Return count, min, max, mean, p50, p90, p99 and p999 in microseconds.

    Values are at the histogram's resolution (3 significant digits). An empty histogram gives
    ``count == 0`` and None for every other key, so no one mistakes "no data" for "0 us".
    """
    count = int(h.get_total_count())
    if count == 0:
        return {
            "count": 0,
            "min": None,
            "max": None,
            "mean": None,
            "p50": None,
            "p90": None,
            "p99": None,
            "p999": None,
        }
    return {
        "count": count,
        "min": int(h.get_min_value()),
        "max": int(h.get_max_value()),
        "mean": float(h.get_mean_value()),
        "p50": int(h.get_value_at_percentile(50.0)),
        "p90": int(h.get_value_at_percentile(90.0)),
        "p99": int(h.get_value_at_percentile(99.0)),
        "p999": int(h.get_value_at_percentile(99.9)),
    }
