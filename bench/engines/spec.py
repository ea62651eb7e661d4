"""What a load worker is asked to do (:class:`LoadSpec`) and the names of what it measures.

Both engines take the same spec (``docs/worker-protocol.md``: the ``setup`` command carries
:meth:`LoadSpec.to_protocol`) and report under the same names, so the runner never knows which
engine measured a step beyond the name it records.

Names recorded: histograms ``publish``, ``publish_intended``, ``e2e``, ``subscribe``,
``unsubscribe``, ``first_message``, ``connect``; counters ``sent``, ``acked``, ``send_errors``,
``received``, ``duplicates``, ``foreign``, ``undecodable``, ``unsent``, ``subscribed``,
``unsubscribed``, ``churn.received``, ``consumer.restarts``, ``interval.warmup``,
``interval.setup``; errors ``<operation>.<kind>`` with kind one of
:data:`bench.drivers.base.ERROR_KINDS` (operations: ``send``, ``connect``, ``subscribe``,
``unsubscribe``, ``consume``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Final

from bench.drivers.base import CONNECTION_MODES, SEND_MODES
from bench.errors import ConfigError
from bench.infra.topology import Endpoints
from bench.metrics.intervals import IntervalStats
from bench.metrics.ledger import header_length

# Histogram names.
H_PUBLISH: Final = "publish"
H_PUBLISH_INTENDED: Final = "publish_intended"
H_E2E: Final = "e2e"
H_SUBSCRIBE: Final = "subscribe"
H_UNSUBSCRIBE: Final = "unsubscribe"
H_FIRST_MESSAGE: Final = "first_message"
H_CONNECT: Final = "connect"
# Counter names beyond bench.metrics.intervals' SENT, ACKED, SEND_ERRORS, RECEIVED.
DUPLICATES: Final = "duplicates"
FOREIGN: Final = "foreign"
UNDECODABLE: Final = "undecodable"
UNSENT: Final = "unsent"
SUBSCRIBED: Final = "subscribed"
UNSUBSCRIBED: Final = "unsubscribed"
CHURN_RECEIVED: Final = "churn.received"
WARMUP_COUNTER: Final = "interval.warmup"
"""Set to 1 in an interval that ended inside the warm-up (excluded from figures)."""
CONSUMER_RESTARTS: Final = "consumer.restarts"
"""Consumers the driver had to re-create in the interval (they did not recover by themselves)."""
SETUP_COUNTER: Final = "interval.setup"
"""Set to 1 (with :data:`WARMUP_COUNTER`) in each worker's first interval: from its start to
the "go", holding the set-up's ``subscribe`` and ``connect`` latencies."""


def is_warmup(stats: IntervalStats) -> bool:
    """True when ``stats`` ended inside a worker's warm-up (or is its set-up interval)."""
    return stats.counters.get(WARMUP_COUNTER, 0) > 0


def is_setup(stats: IntervalStats) -> bool:
    """True for a worker's set-up interval (start to "go")."""
    return stats.counters.get(SETUP_COUNTER, 0) > 0


@dataclass(frozen=True)
class LoadSpec:
    """Everything one worker process needs; picklable, no live objects.

    ``rate_per_s`` is this worker's total offered rate (split evenly across its producers) or
    None for a closed loop bounded by ``max_in_flight`` outstanding async sends (sync sends:
    ``sender_threads`` at a time). ``duration_s`` None produces until told
    (:meth:`WorkerPool.stop_producers`). ``deadline_s`` bounds the worker's whole life from its
    start, whatever happens.
    """

    worker_id: str
    broker: str
    endpoints: str
    """:meth:`Endpoints.to_json` as JSON text (see :meth:`LoadSpec.endpoints_text`)."""
    run_id: str
    topics: tuple[str, ...]
    path: str = "direct"
    producers_per_topic: int = 1
    rate_per_s: float | None = None
    max_in_flight: int = 1000
    send_mode: str = "async"
    connection_mode: str = "shared"
    batch_size: int = 100
    """Sends per client in ``connection_mode="per_batch"``."""
    message_size: int = 1024
    subscriptions_per_topic: int = 1
    subscription_prefix: str = "sub"
    warmup_s: float = 0.0
    duration_s: float | None = None
    deadline_s: float = 3600.0
    max_messages: int | None = None
    """Stop producing after this many sends (whole worker), if set."""
    sender_threads: int = 1
    stats_interval_s: float = 1.0
    ledger_interval_s: float = 5.0
    setup_timeout_s: float = 120.0
    driver_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.worker_id or "/" in self.worker_id:
            problems.append("worker_id must be non-empty and without '/'")
        if self.send_mode not in SEND_MODES:
            problems.append(f"send_mode {self.send_mode!r} not in {SEND_MODES}")
        if self.connection_mode not in CONNECTION_MODES:
            problems.append(f"connection_mode {self.connection_mode!r} not in {CONNECTION_MODES}")
        if self.producers_per_topic < 0 or self.subscriptions_per_topic < 0:
            problems.append("producers_per_topic and subscriptions_per_topic must be >= 0")
        if self.rate_per_s is not None and not (
            math.isfinite(self.rate_per_s) and self.rate_per_s > 0
        ):
            problems.append(f"rate_per_s must be positive or None, not {self.rate_per_s}")
        if self.max_in_flight < 1 or self.batch_size < 1 or self.sender_threads < 1:
            problems.append("max_in_flight, batch_size and sender_threads must be >= 1")
        if self.warmup_s < 0 or (self.duration_s is not None and self.duration_s <= 0):
            problems.append("warmup_s must be >= 0 and duration_s positive or None")
        if self.deadline_s <= 0 or self.stats_interval_s <= 0 or self.ledger_interval_s <= 0:
            problems.append("deadline_s, stats_interval_s and ledger_interval_s must be > 0")
        if self.max_messages is not None and self.max_messages < 0:
            problems.append("max_messages must be >= 0 or None")
        n_producers = len(self.topics) * self.producers_per_topic
        if n_producers:
            longest = header_length(self.run_id, self.producer_id(n_producers - 1))
            if self.message_size < longest:
                problems.append(f"message_size {self.message_size} is below the header {longest}")
        if problems:
            raise ConfigError(f"load spec {self.worker_id!r}: " + "; ".join(problems))

    @staticmethod
    def endpoints_text(endpoints: Endpoints) -> str:
        """``endpoints`` as the JSON text this spec carries."""
        return json.dumps(endpoints.to_json(), sort_keys=True)

    def producer_id(self, index: int) -> str:
        """The run-unique id of this worker's producer number ``index``."""
        return f"{self.worker_id}-p{index}"

    def subscription(self, index: int) -> str:
        """The name of subscription number ``index`` of every topic."""
        return f"{self.subscription_prefix}-{index}"

    def to_protocol(self) -> dict[str, Any]:
        """The spec as the ``setup`` command carries it (endpoints as an object)."""
        data = asdict(self)
        data["topics"] = list(self.topics)
        data["endpoints"] = json.loads(self.endpoints)
        return data

    @classmethod
    def from_protocol(cls, data: dict[str, Any]) -> LoadSpec:
        """Rebuild a spec from :meth:`to_protocol` output; :class:`ConfigError` if malformed."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"load spec: unknown field(s) {', '.join(unknown)}")
        values = dict(data)
        if "endpoints" in values and not isinstance(values["endpoints"], str):
            values["endpoints"] = json.dumps(values["endpoints"], sort_keys=True)
        values["topics"] = tuple(values.get("topics", ()))
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"load spec: {exc}") from None


def split_topics(topics: Sequence[str], workers: int) -> list[tuple[str, ...]]:
    """Deal ``topics`` round-robin into ``workers`` shards (some empty if topics are few)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    return [tuple(topics[i::workers]) for i in range(workers)]


def consistent_subscriptions(specs: Sequence[LoadSpec]) -> list[LoadSpec]:
    """``specs`` with a subscription name shared only by workers that hold the same topics.

    A subscription name is a RocketMQ consumer group, and RocketMQ requires every member of a
    group to subscribe the same topics: members with different topics overwrite the group's
    subscription on each heartbeat (the broker logs "subscription changed ... remove topic"),
    and push consumers share out a topic's queues among members that never read it. Workers
    whose topic shards differ therefore get prefixes of their own (``<prefix>-s<k>``, ``k`` the
    shard's order of first appearance); specs that agree on their topics keep theirs. Pulsar
    subscriptions belong to one topic each, so there only the names change.
    """
    shards: dict[str, list[tuple[str, ...]]] = {}
    for s in specs:
        seen = shards.setdefault(s.subscription_prefix, [])
        if s.topics not in seen:
            seen.append(s.topics)
    out: list[LoadSpec] = []
    for s in specs:
        seen = shards[s.subscription_prefix]
        if len(seen) > 1:
            s = replace(s, subscription_prefix=f"{s.subscription_prefix}-s{seen.index(s.topics)}")
        out.append(s)
    return out
