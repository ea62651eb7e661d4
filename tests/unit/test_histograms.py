"""Histograms: exact merge, lossless encoding, summaries in microseconds."""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram

from bench.metrics import histograms as H


def filled(values: list[int]) -> HdrHistogram:
    h = H.new_histogram()
    for v in values:
        assert H.record(h, v) is False
    return h


def test_encode_decode_round_trip() -> None:
    rng = random.Random(1)
    h = filled([rng.randint(1, 10_000_000) for _ in range(5000)])
    text = H.encode(h)
    assert isinstance(text, str)
    back = H.decode(text)
    assert H.summary(back) == H.summary(h)
    assert H.encode(back) == text
    assert back.get_total_count() == 5000


def test_merge_equals_histogram_of_all_values() -> None:
    rng = random.Random(2)
    a = [int(rng.lognormvariate(7, 2)) + 1 for _ in range(4000)]
    b = [int(rng.lognormvariate(9, 1)) + 1 for _ in range(3000)]
    a = [min(v, H.HIGHEST_US) for v in a]
    b = [min(v, H.HIGHEST_US) for v in b]
    ha, hb = filled(a), filled(b)
    whole = filled(a + b)
    merged = H.merge([ha, H.encode(hb)])  # histograms and encoded text mix
    assert H.encode(merged) == H.encode(whole)
    assert H.summary(merged) == H.summary(whole)
    # The inputs are untouched.
    assert ha.get_total_count() == len(a) and hb.get_total_count() == len(b)


def test_merge_with_empty_histograms_keeps_min() -> None:
    # The library's add() would set min to 0 when an empty histogram is added.
    h = filled([500, 700])
    merged = H.merge([H.new_histogram(), h, H.encode(H.new_histogram())])
    assert H.summary(merged)["min"] == 500
    assert H.summary(H.merge([]))["count"] == 0


def test_summary_values() -> None:
    # Below 2048 us a 3-digit histogram is exact, so the figures are known exactly.
    s = H.summary(filled(list(range(1, 1001))))
    assert s == {
        "count": 1000,
        "min": 1,
        "max": 1000,
        "mean": 500.5,
        "p50": 500,
        "p90": 900,
        "p99": 990,
        "p999": 999,
    }
    big = H.summary(filled([1_234_567]))
    assert big["p50"] is not None and abs(big["p50"] - 1_234_567) <= 1_234_567 / 1000


def test_summary_of_empty_histogram_is_none_not_zero() -> None:
    s = H.summary(H.new_histogram())
    assert s["count"] == 0
    assert all(v is None for k, v in s.items() if k != "count")


def test_record_clamps_out_of_range_values() -> None:
    h = H.new_histogram()
    assert H.record(h, 0) is True
    assert H.record(h, -5) is True
    assert H.record(h, H.HIGHEST_US + 1) is True
    assert H.record(h, H.HIGHEST_US) is False
    s = H.summary(h)
    assert s["count"] == 4
    assert s["min"] == 1
    assert s["max"] is not None and s["max"] >= H.HIGHEST_US


def test_decode_rejects_garbage_and_foreign_layouts() -> None:
    with pytest.raises(ValueError):
        H.decode("not a histogram")
    other = HdrHistogram(1, 60_000_000, 2)
    other.record_value(10)
    with pytest.raises(ValueError, match="layout"):
        H.decode(other.encode().decode())


def test_record_many_fills_exactly_the_buckets_record_would() -> None:
    rng = random.Random(7)
    values = [rng.randrange(1, 10**k) for k in range(1, 11) for _ in range(2000)]
    values += [0, -5, 1, 2047, 2048, 4095, 4096, H.HIGHEST_US, H.HIGHEST_US + 1, 10**12]
    one_by_one, in_bulk = H.new_histogram(), H.new_histogram()
    clamped = sum(H.record(one_by_one, v) for v in values)
    assert H.record_many(in_bulk, values) == clamped > 4  # 10**10 > 1 h: clamped too
    assert list(in_bulk.counts) == list(one_by_one.counts)
    assert in_bulk.get_total_count() == one_by_one.get_total_count() == len(values)
    assert (in_bulk.get_min_value(), in_bulk.get_max_value()) == (
        one_by_one.get_min_value(),
        one_by_one.get_max_value(),
    )
    assert H.encode(in_bulk) == H.encode(one_by_one)
