"""The results store's contract: what a run directory holds, line by line, and how it is checked.

A run directory (see :mod:`bench.results.store`) holds::

    run.json              schema_version, run_id, status, started_at, ended_at, metadata
    steps.jsonl           one STEP RECORD per finished step (appended and fsynced at once)
    series.jsonl          per-second rows of a step (SERIES ROW)
    resources.jsonl       per-second resource rows (RESOURCE ROW)
    events.jsonl          faults, restarts, errors, warnings (EVENT)
    histograms/<scenario>/<step_id>.json   encoded HdrHistograms of one step, by name

Every ``.jsonl`` line and every histogram file carries ``schema_version`` and ``run_id``
(stamped by the writer), and a series, resource or histogram line names its ``scenario``,
``step_id`` and ``broker``, so a line read alone still says what it is. Step ids are unique
only within one scenario (two ``kill-9-recovery`` files expand to the same ids), so a step is
identified by ``(scenario, step_id)``.

Times are epoch seconds (float), latencies integer microseconds, rates per second. A metric
that was not measured is absent or ``None``; never 0 (0 is a measurement).

This module only imports :mod:`bench.errors`: the store sits below the runner and the scenario
model (STYLE.md "Shape"), so the broker and kind names are repeated here and a unit test checks
they match :mod:`bench.scenarios.model`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from bench.errors import BenchError

RAMP_STOPPED = "ramp stopped: saturated at"
"""How the error of a ramp step skipped after its ramp had saturated starts: such a skip is how
a ramp is meant to end (:func:`bench.results.clean.ramp_stopped`)."""

SCHEMA_VERSION = 1
"""The version this build writes."""
SCHEMA_VERSIONS: tuple[int, ...] = (1,)
"""The versions this build reads."""

RUN_FILE = "run.json"
STEPS_FILE = "steps.jsonl"
SERIES_FILE = "series.jsonl"
RESOURCES_FILE = "resources.jsonl"
EVENTS_FILE = "events.jsonl"
HISTOGRAMS_DIR = "histograms"

RunStatus = Literal["running", "complete", "partial", "failed"]
RUN_STATUSES: tuple[str, ...] = ("running", "complete", "partial", "failed")
"""``running`` while the writer is open (a run left ``running`` crashed without cleanup);
``complete`` when every step was attempted; ``partial`` when interrupted (Ctrl-C, SIGTERM);
``failed`` when the runner itself crashed."""

StepStatus = Literal["ok", "failed", "skipped", "errors"]
STEP_STATUSES: tuple[str, ...] = ("ok", "failed", "skipped", "errors")
"""``errors``: the step finished but some sends failed, so its figures are not clean."""

KINDS: tuple[str, ...] = (
    "topic-growth",
    "send-frequency",
    "subscribe-frequency",
    "kill-9-recovery",
)
BROKERS: tuple[str, ...] = ("pulsar", "rocketmq")
TOPOLOGIES: tuple[str, ...] = ("standalone", "cluster")
PROFILES: tuple[str, ...] = ("quick", "full")

PHASES: tuple[str, ...] = ("warmup", "measure", "fault", "drain")
EVENT_KINDS: tuple[str, ...] = (
    "kill",
    "restart",
    "supervisor_restart",
    "error",
    "warning",
    "step_failed",
    "interrupted",
    "infra_up",
    "infra_down",
    "broker_warmup",
)
"""``infra_up``/``infra_down``: the runner brought a broker's processes up (fresh) or down;
``broker_warmup``: the unmeasured load after a bring-up (its rates, or its error)."""

LATENCY_KEYS: tuple[str, ...] = ("p50", "p90", "p99", "p999", "max", "count")
"""Keys every latency summary has (microseconds; ``count`` values)."""
LATENCY_OPTIONAL_KEYS: tuple[str, ...] = ("min", "mean")
"""Keys a latency summary may also have (``bench.metrics.histograms.summary`` gives them)."""


class ResultsError(BenchError):
    """A run directory, or a record written to it, does not follow this contract."""


class LatencySummary(TypedDict):
    """A latency histogram's summary in microseconds (None when nothing was recorded)."""

    p50: int | None
    p90: int | None
    p99: int | None
    p999: int | None
    max: int | None
    count: int


class Window(TypedDict):
    """The measured window of a step (warm-up excluded), epoch seconds."""

    start: float
    end: float


class Loss(TypedDict):
    """The loss ledger's verdict for a step, summed over its subscriptions."""

    acked: int
    received: int
    lost: int
    duplicated: int
    received_not_acked: int
    reordered: int


class StepRecord(TypedDict):
    """One finished step: the unit the runner writes to ``steps.jsonl``.

    ``step_id``, ``scenario``, ``kind``, ``profile``, ``broker``, ``topology``, ``index``,
    ``group`` and ``params`` are the :class:`bench.scenarios.steps.Step`'s fields as they are;
    ``metrics`` keys are listed in :data:`COMMON_METRICS` and :data:`KIND_METRICS`.
    """

    step_id: str
    scenario: str
    kind: str
    profile: str
    broker: str
    topology: str
    index: int
    group: str
    params: dict[str, Any]
    status: StepStatus
    error: str | None
    started_at: float
    ended_at: float
    window: Window
    metrics: dict[str, Any]
    loss: Loss | None


class SeriesRow(TypedDict):
    """One second of one step, measured by the framework's own counters.

    Counters are per interval (not cumulative). ``phase`` says whether the second is inside the
    measured window.
    """

    scenario: str
    step_id: str
    broker: str
    t: float
    elapsed_s: float
    sent: int
    acked: int
    send_errors: int
    received: int
    publish_p50_us: int | None
    publish_p99_us: int | None
    e2e_p99_us: int | None
    phase: str


class EventRecord(TypedDict, total=False):
    """Something that happened at a point in time: a fault, a restart, an error."""

    t: float
    kind: str
    scenario: str
    step_id: str
    broker: str
    detail: dict[str, Any]


# -- metrics ------------------------------------------------------------------------------------

MetricType = Literal["number", "int", "bool", "str", "latency", "counts"]

COMMON_METRICS: dict[str, MetricType] = {
    "offered_rate_per_s": "number",
    "publish_tps": "number",
    "consume_tps": "number",
    "sent": "int",
    "acked": "int",
    "received": "int",
    "foreign_received": "int",
    "send_errors": "int",
    "errors_by_kind": "counts",
    "publish_latency_us": "latency",
    "publish_intended_latency_us": "latency",
    "e2e_latency_us": "latency",
    "broker_cpu_pct": "number",
    "client_cpu_pct": "number",
    "host_cpu_pct": "number",
    "client_bound": "bool",
    "broker_rss_bytes": "number",
    "broker_threads": "number",
    "broker_open_files": "number",
    "host_net_bytes_per_s": "number",
    "host_disk_write_bytes_per_s": "number",
    "gc_pause_ms": "number",
    "broker_messages_in": "int",
    "drain_complete": "bool",
    "engine": "str",
}
"""Metrics any step may carry. ``engine``: the load engine (``python`` or ``jvm``); runs made
before it existed had only the Python engine, and :func:`bench.results.frames.step_row`
fills that in on read. ``drain_complete`` (steps with a loss ledger): every
acknowledged message arrived before the drain ended; when False, ``loss.lost`` is an upper
bound and ``loss.duplicated`` a lower one (runs before it existed say so in ``error``).
``broker_cpu_pct`` and ``client_cpu_pct`` (our worker processes) are the window's means
(100 = one core), ``host_cpu_pct`` too (100 = every core); ``client_bound`` says the host was
CPU-saturated with a large share going to our workers; ``broker_rss_bytes``,
``broker_threads``, ``broker_open_files`` are the window's maxima."""

KIND_METRICS: dict[str, dict[str, MetricType]] = {
    "topic-growth": {
        "topic_count": "int",
        "topics_created": "int",
        "create_latency_us": "latency",
        "create_rate_per_s": "number",
        "create_errors": "int",
        "lookup_latency_us": "latency",
        "lookup_timeouts": "int",
        "lookup_errors": "int",
        "pulsar_bundles": "int",
        "create_batch_size": "int",
        "create_stopped": "str",
    },
    "send-frequency": {
        "send_mode": "str",
        "connection_mode": "str",
        "saturated": "bool",
    },
    "subscribe-frequency": {
        "fanout": "int",
        "churn_per_s": "number",
        "subscribe_latency_us": "latency",
        "first_message_latency_us": "latency",
        "subscribe_failures": "int",
        "churn_ops": "int",
    },
    "kill-9-recovery": {
        "path": "str",
        "restart_policy": "str",
        "repetition": "int",
        "killed_process": "str",
        "killed_at": "number",
        "restarted_at": "number",
        "time_to_first_error_s": "number",
        "unavailability_s": "number",
        # Set instead of unavailability_s when the outage outlasted the step: a lower bound.
        "unavailability_at_least_s": "number",
        "time_to_recover_tps_s": "number",
        "clients_recovered": "bool",
        "counter_resets": "int",
    },
}
"""Metrics particular to one scenario kind (on top of :data:`COMMON_METRICS`)."""

LOSS_KEYS: tuple[str, ...] = (
    "acked",
    "received",
    "lost",
    "duplicated",
    "received_not_acked",
    "reordered",
)

Direction = Literal["higher", "lower"]

HEADLINE_METRICS: dict[str, dict[str, Direction]] = {
    "topic-growth": {
        "publish_tps": "higher",
        "consume_tps": "higher",
        "publish_latency_us.p99": "lower",
        "lookup_latency_us.p99": "lower",
        "create_rate_per_s": "higher",
        "create_latency_us.p99": "lower",
    },
    "send-frequency": {
        "publish_tps": "higher",
        "consume_tps": "higher",
        "publish_latency_us.p99": "lower",
        "publish_intended_latency_us.p99": "lower",
        "e2e_latency_us.p99": "lower",
    },
    "subscribe-frequency": {
        "consume_tps": "higher",
        "subscribe_latency_us.p99": "lower",
        "first_message_latency_us.p99": "lower",
        "e2e_latency_us.p99": "lower",
        "publish_latency_us.p99": "lower",
    },
    "kill-9-recovery": {
        "unavailability_s": "lower",
        "time_to_recover_tps_s": "lower",
        "time_to_first_error_s": "higher",
        "loss.lost": "lower",
        "loss.duplicated": "lower",
    },
}
"""Per kind, the flattened step columns that compare, history and regression detection follow,
and which direction is better."""

# -- validation ---------------------------------------------------------------------------------

_STEP_KEYS: dict[str, tuple[type, ...]] = {
    "step_id": (str,),
    "scenario": (str,),
    "kind": (str,),
    "profile": (str,),
    "broker": (str,),
    "topology": (str,),
    "index": (int,),
    "group": (str,),
    "params": (dict,),
    "status": (str,),
    "error": (str, type(None)),
    "started_at": (int, float),
    "ended_at": (int, float),
    "window": (dict,),
    "metrics": (dict,),
    "loss": (dict, type(None)),
}
SERIES_KEYS: dict[str, tuple[type, ...]] = {
    "scenario": (str,),
    "step_id": (str,),
    "broker": (str,),
    "t": (int, float),
    "elapsed_s": (int, float),
    "sent": (int,),
    "acked": (int,),
    "send_errors": (int,),
    "received": (int,),
    "publish_p50_us": (int, float, type(None)),
    "publish_p99_us": (int, float, type(None)),
    "e2e_p99_us": (int, float, type(None)),
    "phase": (str,),
}
_EVENT_REQUIRED: dict[str, tuple[type, ...]] = {"t": (int, float), "kind": (str,)}
_EVENT_OPTIONAL: dict[str, tuple[type, ...]] = {
    "scenario": (str,),
    "step_id": (str,),
    "broker": (str,),
    "detail": (dict,),
}
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]{0,199}$")
"""A scenario or step id that may be used as a file name."""


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int subclass; a True where a count is expected is a bug, not a count.
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _check_keys(what: str, record: Mapping[str, Any], spec: Mapping[str, tuple[type, ...]]) -> None:
    missing = [k for k in spec if k not in record]
    if missing:
        raise ResultsError(f"{what}: missing key(s) {', '.join(missing)}")
    for key, types in spec.items():
        if not _type_ok(record[key], types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ResultsError(
                f"{what}: {key} must be {names}, not {type(record[key]).__name__} "
                f"({record[key]!r:.60})"
            )


def _check_choice(what: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ResultsError(f"{what}: {key} {value!r} is not one of {', '.join(choices)}")


def _check_number(what: str, value: Any, *, integer: bool = False) -> None:
    types: tuple[type, ...] = (int,) if integer else (int, float)
    if value is None:
        return
    if not _type_ok(value, types) or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a finite number"
        raise ResultsError(f"{what} must be {kind} or null, not {value!r:.60}")


def validate_metric(kind: str, name: str, value: Any, what: str = "metric") -> None:
    """Check one metric against :data:`COMMON_METRICS` / :data:`KIND_METRICS`.

    Raises :class:`ResultsError` for an unknown name or a value of the wrong shape.
    """
    spec = COMMON_METRICS.get(name) or KIND_METRICS.get(kind, {}).get(name)
    where = f"{what} {name}"
    if spec is None:
        known = sorted([*COMMON_METRICS, *KIND_METRICS.get(kind, {})])
        raise ResultsError(
            f"{where}: unknown metric for kind {kind!r}; known: {', '.join(known)} "
            "(add it to bench/results/schema.py first)"
        )
    if value is None:
        return
    if spec == "number":
        _check_number(where, value)
    elif spec == "int":
        _check_number(where, value, integer=True)
    elif spec == "bool":
        if not isinstance(value, bool):
            raise ResultsError(f"{where} must be true/false or null, not {value!r:.60}")
    elif spec == "str":
        if not isinstance(value, str):
            raise ResultsError(f"{where} must be a string or null, not {value!r:.60}")
    elif spec == "counts":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and _type_ok(v, (int,)) for k, v in value.items()
        ):
            raise ResultsError(f"{where} must map error kinds to integer counts")
    elif spec == "latency":
        if not isinstance(value, dict):
            raise ResultsError(f"{where} must be a latency summary dict, not {value!r:.60}")
        missing = [k for k in LATENCY_KEYS if k not in value]
        extra = [k for k in value if k not in LATENCY_KEYS + LATENCY_OPTIONAL_KEYS]
        if missing or extra:
            raise ResultsError(
                f"{where}: latency summary needs exactly {', '.join(LATENCY_KEYS)} "
                f"(optionally {', '.join(LATENCY_OPTIONAL_KEYS)}); "
                f"missing {missing}, unexpected {extra}"
            )
        for k, v in value.items():
            _check_number(f"{where}.{k}", v, integer=(k == "count"))


def validate_step(record: Mapping[str, Any]) -> None:
    """Check a step record against :class:`StepRecord`; raise :class:`ResultsError` if not.

    Checks keys and types, the choice fields, the window, every metric's name and shape and
    the loss dict. ``params`` is free-form (it is the scenario's, validated by its model).
    """
    sid = record.get("step_id", "?")
    what = f"step {record.get('scenario', '?')}/{sid}"
    extra = [k for k in record if k not in _STEP_KEYS and k not in ("schema_version", "run_id")]
    if extra:
        raise ResultsError(f"{what}: unexpected key(s) {', '.join(extra)}")
    _check_keys(what, record, _STEP_KEYS)
    _check_choice(what, "status", record["status"], STEP_STATUSES)
    _check_choice(what, "kind", record["kind"], KINDS)
    _check_choice(what, "broker", record["broker"], BROKERS)
    _check_choice(what, "topology", record["topology"], TOPOLOGIES)
    _check_choice(what, "profile", record["profile"], PROFILES)
    if record["status"] == "failed" and not record["error"]:
        raise ResultsError(f"{what}: a failed step must say why in 'error'")
    window = record["window"]
    _check_keys(f"{what} window", window, {"start": (int, float), "end": (int, float)})
    if window["end"] < window["start"]:
        raise ResultsError(f"{what}: window ends ({window['end']}) before it starts")
    if record["ended_at"] < record["started_at"]:
        raise ResultsError(f"{what}: ended_at is before started_at")
    for name, value in record["metrics"].items():
        validate_metric(record["kind"], name, value, what=f"{what}: metric")
    loss = record["loss"]
    if loss is not None:
        _check_keys(f"{what} loss", loss, {k: (int,) for k in LOSS_KEYS})
        unexpected = [k for k in loss if k not in LOSS_KEYS]
        if unexpected:
            raise ResultsError(f"{what} loss: unexpected key(s) {', '.join(unexpected)}")


def validate_series_row(row: Mapping[str, Any]) -> None:
    """Check one series row against :class:`SeriesRow`; raise :class:`ResultsError` if not."""
    what = f"series row {row.get('scenario', '?')}/{row.get('step_id', '?')} t={row.get('t')}"
    _check_keys(what, row, SERIES_KEYS)
    _check_choice(what, "phase", row["phase"], PHASES)
    _check_choice(what, "broker", row["broker"], BROKERS)


def validate_event(event: Mapping[str, Any]) -> None:
    """Check one event against :class:`EventRecord`; raise :class:`ResultsError` if not."""
    what = f"event {event.get('kind', '?')} t={event.get('t')}"
    _check_keys(what, event, _EVENT_REQUIRED)
    _check_choice(what, "kind", event["kind"], EVENT_KINDS)
    for key, types in _EVENT_OPTIONAL.items():
        if key in event and event[key] is not None and not _type_ok(event[key], types):
            raise ResultsError(f"{what}: {key} has the wrong type")


def check_schema_version(value: Any, where: str) -> None:
    """Raise :class:`ResultsError` naming ``where`` unless ``value`` is a version we read."""
    if value not in SCHEMA_VERSIONS or isinstance(value, bool):
        understood = ", ".join(str(v) for v in SCHEMA_VERSIONS)
        raise ResultsError(
            f"{where}: schema_version {value!r} is not understood; this build reads "
            f"{understood} (use the bench version that wrote it, or upgrade)"
        )
