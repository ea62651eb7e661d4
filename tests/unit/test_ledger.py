"""The loss ledger is exact: injected loss, duplicates and reordering give exactly those counts."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from bench.metrics.ledger import (
    ConsumerLedger,
    IntervalSet,
    LedgerBook,
    PayloadError,
    PayloadHeader,
    ProducerLedger,
    decode_payload,
    encode_payload,
    header_length,
    reconcile,
)

RUN = "run-1"
TOPIC = "t0"


def as_set(s: IntervalSet) -> set[int]:
    return {n for a, b in s for n in range(a, b + 1)}


# --- IntervalSet ------------------------------------------------------------------------------


def test_interval_set_add_merges_adjacent_and_reports_new() -> None:
    s = IntervalSet()
    assert s.add(5) is True
    assert s.add(5) is False
    assert s.add(7) is True
    assert s.to_list() == [[5, 5], [7, 7]]
    assert s.add(6) is True  # fills the gap: one range again
    assert s.to_list() == [[5, 7]]
    assert s.add_range(0, 10) == 8
    assert s.add_range(2, 4) == 0
    assert len(s) == 11
    assert 0 in s and 10 in s and 11 not in s and -1 not in s
    assert s.contains(3)


def test_interval_set_memory_follows_gaps_not_messages() -> None:
    s = IntervalSet()
    order = list(range(100_000))
    # Out-of-order arrival inside small windows, as async acks come back.
    for i in range(0, len(order), 10):
        order[i : i + 10] = reversed(order[i : i + 10])
    for n in order:
        s.add(n)
    assert len(s) == 100_000
    assert s.num_ranges == 1
    s2 = IntervalSet(s)
    s2.add(200_000)
    assert s2.num_ranges == 2


def test_interval_set_operations_match_python_sets() -> None:
    rng = random.Random(7)
    for _ in range(300):
        a, b = IntervalSet(), IntervalSet()
        sa: set[int] = set()
        sb: set[int] = set()
        for s, ps in ((a, sa), (b, sb)):
            for _ in range(rng.randint(0, 12)):
                lo = rng.randint(-20, 80)
                hi = lo + rng.randint(0, 6)
                new = s.add_range(lo, hi)
                assert new == len(set(range(lo, hi + 1)) - ps)
                ps.update(range(lo, hi + 1))
        assert as_set(a) == sa and len(a) == len(sa)
        assert as_set(a.union(b)) == sa | sb
        assert as_set(a.intersection(b)) == sa & sb
        assert as_set(a.difference(b)) == sa - sb
        assert as_set(b.difference(a)) == sb - sa
        for s in (a.union(b), a.intersection(b), a.difference(b)):
            ranges = s.to_list()
            # Canonical: sorted, disjoint, non-adjacent, and counted right.
            assert all(r[1] + 1 < q[0] for r, q in itertools.pairwise(ranges))
            assert len(s) == sum(hi - lo + 1 for lo, hi in ranges)
        assert IntervalSet.from_list(json.loads(json.dumps(a.to_list()))) == a


@pytest.mark.parametrize(
    "bad",
    [[[3, 1]], [[1, 2], [3, 4]], [[5, 6], [1, 2]], [[1, 2, 3]], [["1", 2]], [[True, 2]], {}],
)
def test_interval_set_from_list_rejects_malformed(bad: object) -> None:
    with pytest.raises(ValueError):
        IntervalSet.from_list(bad)


# --- payload codec ----------------------------------------------------------------------------


def test_payload_round_trip_and_exact_size() -> None:
    size = header_length(RUN, "p-é")
    for n in (size, size + 1, 1024):
        data = encode_payload(RUN, "p-é", 2**64 - 1, 1_700_000_000_123_456_789, n)
        assert len(data) == n
        assert decode_payload(data) == PayloadHeader(
            RUN, "p-é", 2**64 - 1, 1_700_000_000_123_456_789
        )
    with pytest.raises(ValueError):
        encode_payload(RUN, "p-é", 0, 0, size - 1)
    with pytest.raises(ValueError):
        encode_payload(RUN, "p", -1, 0, 100)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world, not ours at all......",
        encode_payload(RUN, "p", 1, 2, 64)[:20],  # truncated fixed part
        encode_payload(RUN, "producer", 1, 2, 64)[:27],  # truncated inside the ids
        b"BLG1\x09" + bytes(60),  # unknown version
    ],
)
def test_decode_rejects_foreign_bytes(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_payload(data)


# --- reconciliation: known injections ---------------------------------------------------------


def deliver(c: ConsumerLedger, producer: str, seqs: list[int], run: str = RUN) -> None:
    for s in seqs:
        c.record_payload(encode_payload(run, producer, s, 0, 64))


def test_known_loss_duplicates_reordering_and_unacked() -> None:
    p = ProducerLedger("p1", TOPIC)
    for s in range(100):
        p.record_sent(s)
        if 50 <= s <= 54:
            p.record_failed(s)  # e.g. timed out; 53 and 54 were stored all the same
        else:
            p.record_acked(s)
    c = ConsumerLedger(RUN, TOPIC, "sub", "c1")
    order = [s for s in range(100) if not 10 <= s <= 14 and s not in (50, 51, 52, 30)]
    order.insert(order.index(31) + 1, 30)  # 30 arrives after 31: one reordering
    order += [20, 21, 21]  # three duplicate receipts
    deliver(c, "p1", order)
    deliver(c, "p1", [99], run="old-run")  # a backlog from another run
    assert c.record_payload(b"garbage") is None

    report = reconcile(TOPIC, "sub", [p], [c])
    assert report.acked == 95
    assert report.received == 100 - 5 - 3
    assert report.lost == 5
    assert report.per_producer["p1"].lost_ranges == [[10, 14]]
    assert report.duplicated == 3
    assert report.received_not_acked == 2
    assert report.reordered == 1
    assert report.foreign == 1
    assert report.undecodable == 1
    assert json.loads(json.dumps(report.to_dict()))["per_producer"]["p1"]["lost"] == 5


def test_redelivery_counts_as_duplicates_not_reordering() -> None:
    c = ConsumerLedger(RUN, TOPIC, "sub", "c1")
    deliver(c, "p1", [*range(10), *range(5, 10)])  # reconnect redelivers 5..9
    report = reconcile(TOPIC, "sub", [], [c])
    assert (report.duplicated, report.reordered) == (5, 0)
    assert report.received_not_acked == 10  # no producer ledger: nothing was acked


def test_loss_is_per_subscription() -> None:
    p = ProducerLedger("p1", TOPIC)
    for s in range(20):
        p.record_sent(s)
        p.record_acked(s)
    book = LedgerBook()
    book.producers["p1"] = p
    deliver(book.consumer(RUN, TOPIC, "a", "ca"), "p1", list(range(20)))
    deliver(
        book.consumer(RUN, TOPIC, "b", "cb"), "p1", [s for s in range(20) if s not in (3, 4, 9)]
    )
    book.consumer(RUN, TOPIC, "c", "cc")  # subscribed, received nothing
    reports = {r.subscription: r for r in book.reconcile()}
    assert {k: r.lost for k, r in reports.items()} == {"a": 0, "b": 3, "c": 20}
    assert reports["b"].per_producer["p1"].lost_ranges == [[3, 4], [9, 9]]
    with pytest.raises(ValueError):  # mixing subscriptions would hide b's loss behind a's
        reconcile(TOPIC, "a", [p], list(book.consumers.values()))
    with pytest.raises(ValueError):
        reconcile("other-topic", "a", [p], [])


def test_consumers_of_one_subscription_across_workers() -> None:
    # Two workers each run a consumer of the shared subscription "s" and a producer.
    w1, w2 = LedgerBook(), LedgerBook()
    for book, pid in ((w1, "p1"), (w2, "p2")):
        p = book.producer(pid, TOPIC)
        for s in range(10):
            p.record_sent(s)
            p.record_acked(s)
    deliver(w1.consumer(RUN, TOPIC, "s", "w1-c"), "p1", [0, 1, 2, 3, 4, 7])
    deliver(w2.consumer(RUN, TOPIC, "s", "w2-c"), "p1", [5, 6, 7, 8])  # 7 went to both
    deliver(w2.consumer(RUN, TOPIC, "s", "w2-c"), "p2", list(range(10)))

    merged = LedgerBook()
    for w in (w1, w2):
        merged.join(LedgerBook.from_dict(json.loads(json.dumps(w.to_dict()))))
    (report,) = merged.reconcile()
    assert report.per_producer["p1"].lost_ranges == [[9, 9]]
    assert (report.acked, report.received, report.lost, report.duplicated) == (20, 19, 1, 1)


def test_join_of_repeated_snapshots_is_idempotent() -> None:
    book = LedgerBook()
    p = book.producer("p1", TOPIC)
    c = book.consumer(RUN, TOPIC, "s", "c1")
    for s in range(5):
        p.record_sent(s)
        p.record_acked(s)
    deliver(c, "p1", [0, 1, 1])
    old = LedgerBook.from_dict(book.to_dict())
    for s in range(5, 8):
        p.record_sent(s)
        p.record_acked(s)
    deliver(c, "p1", [3, 2, 4, 4])
    new = LedgerBook.from_dict(book.to_dict())
    merged = LedgerBook()
    for snap in (new, old, new, old):  # any order, any repetition
        merged.join(snap)
    assert [r.to_dict() for r in merged.reconcile()] == [r.to_dict() for r in book.reconcile()]
    (r,) = merged.reconcile()
    assert (r.acked, r.received, r.lost, r.duplicated, r.reordered) == (8, 5, 3, 2, 1)


def test_ledgers_reject_mismatched_joins_and_bad_dicts() -> None:
    with pytest.raises(ValueError):
        ProducerLedger("p1", TOPIC).join(ProducerLedger("p2", TOPIC))
    with pytest.raises(ValueError):
        ConsumerLedger(RUN, TOPIC, "a", "c").join(ConsumerLedger(RUN, TOPIC, "b", "c"))
    with pytest.raises(ValueError):
        ProducerLedger.from_dict({"producer_id": "p1", "topic": TOPIC, "sent": []})
    with pytest.raises(ValueError):
        LedgerBook.from_dict({"producers": []})
    book = LedgerBook()
    book.producer("p1", TOPIC)
    with pytest.raises(ValueError):
        book.producer("p1", "another-topic")


# --- a big randomised case against a brute-force oracle -----------------------------------------


def test_randomised_against_set_oracle() -> None:
    rng = random.Random(20240611)
    topics = ["t0", "t1"]
    subs = {"t0": ["s0", "s1"], "t1": ["s0"]}
    producers = {f"p{i}": topics[i % 2] for i in range(6)}
    per_producer = 3000
    acked: dict[str, set[int]] = {}
    workers = [LedgerBook(), LedgerBook(), LedgerBook()]
    for i, (pid, topic) in enumerate(producers.items()):
        ledger = workers[i % 3].producer(pid, topic)
        acked[pid] = set()
        for s in range(per_producer):
            ledger.record_sent(s)
            r = rng.random()
            if r < 0.97:
                ledger.record_acked(s)
                acked[pid].add(s)
            elif r < 0.985:
                ledger.record_failed(s)

    # Per (topic, sub): several consumers, spread across workers, each with its receipt log.
    logs: dict[tuple[str, str, str], list[tuple[str, int]]] = {}
    for topic in topics:
        for sub in subs[topic]:
            consumer_ids = [f"{topic}-{sub}-c{k}" for k in range(3)]
            for pid, ptopic in producers.items():
                if ptopic != topic:
                    continue
                for s in range(per_producer):
                    if rng.random() < 0.01:
                        continue  # lost
                    copies = 1 + (rng.random() < 0.02) + (rng.random() < 0.01)
                    for _ in range(copies):
                        cid = rng.choice(consumer_ids)
                        logs.setdefault((topic, sub, cid), []).append((pid, s))
            for cid in consumer_ids:
                log = logs.setdefault((topic, sub, cid), [])
                # Local shuffles: reordering within small windows.
                for k in range(0, len(log) - 5, 50):
                    if rng.random() < 0.3:
                        window = log[k : k + 5]
                        rng.shuffle(window)
                        log[k : k + 5] = window
    for k, ((topic, sub, cid), log) in enumerate(logs.items()):
        consumer = workers[k % 3].consumer(RUN, topic, sub, cid)
        for pid, s in log:
            consumer.record(PayloadHeader(RUN, pid, s, 0))

    merged = LedgerBook()
    for w in workers:
        merged.join(LedgerBook.from_dict(json.loads(json.dumps(w.to_dict()))))
    reports = {(r.topic, r.subscription): r for r in merged.reconcile()}
    assert set(reports) == {(t, s) for t in topics for s in subs[t]}

    for (topic, sub), report in reports.items():
        for pid, ptopic in producers.items():
            if ptopic != topic:
                continue
            receipts = [
                s
                for (t, sb, _), log in logs.items()
                if (t, sb) == (topic, sub)
                for p, s in log
                if p == pid
            ]
            received = set(receipts)
            reordered = 0
            for (t, sb, _), log in logs.items():
                if (t, sb) != (topic, sub):
                    continue
                seen: set[int] = set()
                top = -1
                for p, s in log:
                    if p != pid or s in seen:
                        continue
                    seen.add(s)
                    reordered += s < top
                    top = max(top, s)
            row = report.per_producer[pid]
            assert row.acked == len(acked[pid])
            assert row.received == len(received)
            assert row.lost == len(acked[pid] - received)
            assert row.duplicated == len(receipts) - len(received)
            assert row.received_not_acked == len(received - acked[pid])
            assert row.reordered == reordered
            assert row.lost > 0 and row.duplicated > 0 and row.reordered > 0
        assert report.lost == sum(p.lost for p in report.per_producer.values())


def test_an_earlier_steps_messages_are_foreign_to_the_next_step() -> None:
    # Topics outlive a step, and a new RocketMQ group may start at the last stored message:
    # what step 0 sent must never fill a gap in step 1's ledger (that would hide a loss).
    from types import SimpleNamespace

    from bench.runner.common import step_payload_id

    run_id = "20261124-061020-4c4b3e"
    ids = [
        step_payload_id(SimpleNamespace(run_id=run_id, step=SimpleNamespace(index=i)))
        for i in (0, 1)
    ]  # type: ignore[arg-type]
    assert ids[0] != ids[1] and all(i.startswith(run_id) for i in ids)
    ledger = ConsumerLedger(ids[1], "t", "s", "c")
    assert not ledger.record(decode_payload(encode_payload(ids[0], "p0", 7, 1, 256)))
    assert ledger.foreign == 1 and ledger.by_producer == {}
    assert ledger.record(decode_payload(encode_payload(ids[1], "p0", 7, 1, 256)))
    assert ledger.by_producer["p0"].duplicates == 0


def test_a_payload_template_writes_exactly_what_encode_payload_does() -> None:
    from bench.metrics.ledger import PayloadTemplate

    template = PayloadTemplate("run-é1", "w0-p17", 300)
    for seq, send_ns in ((0, 0), (1, 1_796_000_000_123_456_789), (2**64 - 1, 2**64 - 1)):
        want = encode_payload("run-é1", "w0-p17", seq, send_ns, 300)
        assert template.encode(seq, send_ns) == want
        assert decode_payload(want).seq == seq
    with pytest.raises(ValueError, match="below"):
        PayloadTemplate("run", "w0-p0", 10)
