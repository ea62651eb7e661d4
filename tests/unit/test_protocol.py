"""The worker protocol: every message both ways, and the errors a broken line gives."""

from __future__ import annotations

import json

import pytest

from bench.engines import protocol as p
from bench.engines.spec import LoadSpec
from bench.errors import ConfigError
from bench.infra.topology import Endpoints
from bench.metrics import histograms
from bench.metrics.intervals import IntervalStats
from bench.metrics.ledger import LedgerBook

COMMANDS: list[p.Command] = [
    p.Setup({"worker_id": "w0"}),
    p.Go(),
    p.SetRate(250.5),
    p.SetRate(None),
    p.AddSubscriptions(3, ["a", "b"]),
    p.AddSubscriptions(1),
    p.Churn(10.0, 2),
    p.StopProducers(),
    p.Drain(30.0, 15.0),
    p.Drain(30.0),
    p.LedgerRequest(),
    p.Stop(),
]


def _book() -> LedgerBook:
    book = LedgerBook()
    prod = book.producer("w0-p0", "t")
    for seq in range(10):
        prod.record_sent(seq)
        if seq != 4:
            prod.record_acked(seq)
    prod.record_failed(4)
    return book


EVENTS: list[p.Event] = [
    p.Ready("w0", "jvm", 2, 2, 1.25, {"batching": False}, {"name": "x", "version": "1"}),
    p.Stats(IntervalStats("w0", 1, 2, {"sent": 5}, {"send.timeout": 1}).to_dict()),
    p.Ledger(_book().to_dict()),
    p.ProducersDone(10),
    p.Drained(False, 3, 15.0, True, {}),
    p.Failed("broker down", "trace"),
    p.Exit(0),
]


@pytest.mark.parametrize("message", COMMANDS, ids=lambda m: type(m).__name__)
def test_every_command_round_trips(message: p.Command) -> None:
    line = p.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert p.decode_command(line) == message


@pytest.mark.parametrize("message", EVENTS, ids=lambda m: type(m).__name__)
def test_every_event_round_trips(message: p.Event) -> None:
    assert p.decode_event(p.encode(message)) == message


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"nope", r"not a JSON line: 'nope'"),
        (b"[1]", r"must be an object with 'cmd'"),
        (b'{"cmd": "fly"}', r"unknown cmd 'fly'; known: add_subscriptions, churn"),
        (b'{"cmd": "go", "now": true}', r"cmd 'go': unknown field 'now'"),
        (b'{"cmd": "drain"}', r"cmd 'drain': missing field 'timeout_s'"),
        (b'{"cmd": "churn", "ops_per_s": "5"}', r"ops_per_s is str, not int or float"),
        (b'{"cmd": "add_subscriptions", "n": true}', r"n is bool, not int"),
        (b'{"cmd": "set_rate", "rate_per_s": []}', r"rate_per_s is list, not int or float or null"),
    ],
)
def test_a_broken_command_line_names_what_is_wrong(line: bytes, error: str) -> None:
    with pytest.raises(p.ProtocolError, match=error):
        p.decode_command(line)


def test_every_problem_of_a_line_is_listed_at_once() -> None:
    line = b'{"event": "drained", "ok": 1, "extra": 0, "ledger": {}}'
    with pytest.raises(p.ProtocolError) as info:
        p.decode_event(line)
    text = str(info.value)
    for part in ("unknown field 'extra'", "ok is int, not bool", "missing field 'undelivered'"):
        assert part in text


def test_a_spec_crosses_the_protocol_unchanged() -> None:
    endpoints = Endpoints(broker="pulsar", topology="standalone", service_url="pulsar://x:1")
    spec = LoadSpec(
        worker_id="w1",
        broker="pulsar",
        endpoints=LoadSpec.endpoints_text(endpoints),
        run_id="r",
        topics=("a", "b"),
        rate_per_s=100.0,
        driver_settings={"batching": True},
    )
    wire = json.loads(p.encode(p.Setup(spec.to_protocol())))
    assert wire["spec"]["endpoints"]["service_url"] == "pulsar://x:1"  # an object, not text
    assert LoadSpec.from_protocol(wire["spec"]) == spec
    with pytest.raises(ConfigError, match=r"unknown field\(s\) colour"):
        LoadSpec.from_protocol({**wire["spec"], "colour": "red"})


def test_stats_with_histograms_and_ledger_cross_exactly() -> None:
    h = histograms.new_histogram()
    for v in (10, 20, 3000, 3_600_000_000):
        histograms.record(h, v)
    stats = IntervalStats("w0", 5, 9, {"acked": 4}, {}, {"publish": histograms.encode(h)})
    stats.ledger = _book().to_dict()
    got = p.decode_event(p.encode(p.Stats(stats.to_dict())))
    assert isinstance(got, p.Stats)
    back = IntervalStats.from_dict(got.stats)
    assert back.histogram("publish").get_total_count() == 4
    assert back.histogram("publish").get_value_at_percentile(100) == h.get_max_value()
    report = LedgerBook.from_dict(back.ledger).producers["w0-p0"]
    assert (len(report.sent), len(report.acked), len(report.failed)) == (10, 9, 1)
