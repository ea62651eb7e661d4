"""The scenario model: what a ``scenarios/*.yaml`` file may say, and how it expands into steps.

A scenario file names one of four kinds (DESIGN.md section 3) and holds two profiles, ``quick``
(minutes, for tests and nightly CI) and ``full`` (the real curve). Each profile carries the
kind's parameters; the lists in a profile are *sweeps*, which :mod:`bench.scenarios.steps`
expands into the steps the runner executes.

Validation is strict on purpose (STYLE.md, "Validate at the edge"): unknown keys, wrong types
(``"10"`` is not an integer, ``yes`` is not a rate) and impossible values are errors. Checks
that concern one key raise plain pydantic errors; checks that relate several keys raise
:class:`FieldProblem`, which names the key to blame so that the loader can point at its line.

Units are in the key names: ``_s`` seconds, ``_ms`` milliseconds, ``_per_s`` per second,
``message_size`` bytes. ``duration_s`` is the whole step *including* ``warmup_s``; the figures
cover only ``duration_s - warmup_s`` (DESIGN.md section 4: warm-up is measured, not reported).

Common knobs: ``warmup_s``, ``duration_s`` and ``message_size`` may be written once at the top
level and are then inherited by both profiles; a profile that sets one overrides it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.errors import ConfigError

SCHEMA_VERSIONS: tuple[int, ...] = (1,)
"""The ``schema_version`` values this build understands."""

Kind = Literal["topic-growth", "send-frequency", "subscribe-frequency", "kill-9-recovery"]
BrokerName = Literal["pulsar", "rocketmq"]
Topology = Literal["standalone", "cluster"]
ProfileName = Literal["quick", "full"]
TopicMode = Literal["precreate", "autocreate", "create_under_load"]
SendMode = Literal["sync", "async", "oneway"]
ConnectionMode = Literal["shared", "per_producer", "per_batch"]
RestartPolicy = Literal["manual", "supervised", "none"]
ClientPath = Literal["direct", "proxy"]

KINDS: tuple[str, ...] = get_args(Kind)
BROKERS: tuple[str, ...] = get_args(BrokerName)
PROFILES: tuple[str, ...] = get_args(ProfileName)

# Every payload carries run id, producer id, sequence number and send timestamp (DESIGN.md
# section 4), so smaller messages cannot hold the ledger's header.
MIN_MESSAGE_SIZE = 64
# RocketMQ's default maxMessageSize is 4 MiB (Pulsar's is 5 MB): larger payloads would measure a
# rejection, not a broker.
MAX_MESSAGE_SIZE = 4 * 1024 * 1024
# A ramp with a factor near 1 would expand into thousands of steps; this is a typo guard.
MAX_RAMP_STEPS = 64
COMMON_KNOBS: tuple[str, ...] = ("warmup_s", "duration_s", "message_size")

# Upper bounds: every count, rate and duration has one, with the reason a user is told.
MAX_TOPICS = 1_000_000
MAX_RATE_PER_S = 10_000_000.0
MAX_CLIENTS = 10_000
MAX_SECONDS = 86_400.0
MAX_SWEEP = 100
_WHY_TOPICS = (
    "100,000 topics already take a broker several GiB of heap; a million is the most this "
    "suite has reason to create"
)
_WHY_RATE = "ten times what either broker carries on one host; a typo guard"
_WHY_CLIENTS = (
    "each producer, subscription or in-flight slot is a client object in one of our workers"
)
_WHY_SECONDS = "a step or timeout longer than a day is a typo"
_BOUND_REASONS: dict[str, str] = {
    **dict.fromkeys(("topic_counts", "active_topics", "lookup_sample", "topics"), _WHY_TOPICS),
    **dict.fromkeys(
        ("rate_per_s", "rates_per_s", "publish_rate_per_s", "start_per_s", "max_per_s"),
        _WHY_RATE,
    ),
    **dict.fromkeys(
        (
            "producers",
            "fanout",
            "churn_per_s",
            "churn_base_fanout",
            "create_concurrency",
            "max_in_flight",
            "batch_size_for_per_batch",
            "rocketmq_create_batch",
            "pulsar_bundles",
        ),
        _WHY_CLIENTS,
    ),
    **dict.fromkeys(
        (
            "warmup_s",
            "duration_s",
            "kill_after_s",
            "manual_restart_after_s",
            "observe_after_restart_s",
            "drain_timeout_s",
            "lookup_timeout_s",
            "rocketmq_route_refresh_s",
            "pulsar_session_timeout_ms",
        ),
        _WHY_SECONDS,
    ),
}


def bound_reason(loc: Sequence[str | int]) -> str | None:
    """Why the key at ``loc`` has the upper bound it has (None if it has none)."""
    for part in reversed(loc):
        if isinstance(part, str):
            return _BOUND_REASONS.get(part)
    return None


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
TopicCount = Annotated[int, Field(gt=0, le=MAX_TOPICS)]
Rate = Annotated[float, Field(gt=0, le=MAX_RATE_PER_S)]
ClientCount = Annotated[int, Field(gt=0, le=MAX_CLIENTS)]
MessageSize = Annotated[int, Field(ge=MIN_MESSAGE_SIZE, le=MAX_MESSAGE_SIZE)]


class FieldProblem(ValueError):
    """A value error that names the key (relative to the validated model) it is about.

    Pydantic reports a model validator's error at the model itself; the loader appends
    ``keys`` to that location so the message points at the offending key's line.
    """

    def __init__(self, keys: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.keys: tuple[str | int, ...] = tuple(keys)


class _Strict(BaseModel):
    """Base of every scenario model: unknown keys are errors, no silent type coercion."""

    # Attribute docstrings become field descriptions: `bench new KIND` prints them.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    unknown_key_hints: ClassVar[dict[str, str]] = {}
    """Extra advice the loader adds when one of these keys is written here by mistake."""


def fmt_value(value: Any) -> str:
    """A value as it appears in step ids and messages: 1000.0 -> '1000', 0.5 -> '0.5'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_unique(values: Sequence[Any]) -> None:
    seen: set[Any] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise FieldProblem((i,), f"duplicate value {value!r}: each sweep point runs once")
        seen.add(value)


def _check_increasing(values: Sequence[float]) -> None:
    # Curves are read left to right and topic-growth adds topics to the previous step's, so a
    # load axis must be written in increasing order.
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise FieldProblem(
                (i,),
                f"must be strictly increasing: {fmt_value(values[i])} follows "
                f"{fmt_value(values[i - 1])}",
            )


class ProfileBase(_Strict):
    """Knobs every profile has; ``message_size`` may be inherited from the top level."""

    warmup_s: NonNegativeFloat = 3.0
    """Seconds at the start of each step that are measured but left out of every figure."""
    message_size: MessageSize = 1024
    """Bytes of every payload (the ledger's header, then zero padding)."""
    broker_heap_mb: Annotated[int, Field(ge=256, le=65536)] | None = None
    """JVM heap of the broker processes for this profile (default: infra's, 768 MiB, 1 GiB for
    the Pulsar standalone). A broker that runs out of heap is a finding about the heap it was
    given: size it for the load (e.g. 100,000 topics)."""
    engine: Literal["python", "jvm"] | None = None
    """The load engine for this profile's steps (default: ``bench run --engine``'s)."""
    broker_warmup_s: Annotated[float, Field(ge=0, le=300)] | None = None
    """Seconds of unmeasured load (closed loop, one consumer, a scratch topic) each time the
    suite brings a broker up, before the first step on it. A just-started broker JVM is still
    compiling its hot paths and the first step measures that (Pulsar, sync at 1,000 msg/s right
    after start: broker at 98% CPU, publish p99 from the intended time 0.5-1.1 s). Unset or 0:
    none. Recorded in each step's parameters, since it changes what the first step meets."""


class _TimedProfile(ProfileBase):
    """A profile whose steps run for a fixed time each."""

    duration_s: PositiveFloat = 13.0
    """Seconds each step runs, warm-up included."""

    @model_validator(mode="after")
    def _warmup_inside_duration(self) -> _TimedProfile:
        if self.warmup_s >= self.duration_s:
            raise FieldProblem(
                ("warmup_s",),
                f"warmup_s ({fmt_value(self.warmup_s)} s) must be shorter than duration_s "
                f"({fmt_value(self.duration_s)} s): warm-up is excluded, so nothing would be "
                "measured",
            )
        return self


class TopicGrowthProfile(_TimedProfile):
    """Parameters of one ``topic-growth`` profile.

    Each step brings the topic count up to the next value of ``topic_counts`` (topics of earlier
    steps are kept), then runs the steady load on ``active_topics`` of them for ``duration_s``.
    """

    topic_counts: list[TopicCount] = Field(min_length=1, max_length=MAX_SWEEP)
    """Total topics at each step, strictly increasing."""
    mode: TopicMode
    """How topics come to exist: admin API first, on first use, or via the admin API while the
    steady load runs (the seed's "topics added while the broker is running")."""
    create_concurrency: ClientCount = 16
    """Topic-creation requests in flight at once."""
    active_topics: TopicCount = 20
    """How many of the topics carry the steady load at each step."""
    rate_per_s: Rate = 200.0
    """Steady publish rate, messages/s in total over the active topics."""
    lookup_sample: TopicCount = 20
    """Topics looked up (route/owner query) per step to measure lookup latency."""
    lookup_timeout_s: PositiveFloat = 30.0
    """A lookup slower than this counts as a lookup timeout (Pulsar's default is 30 s)."""
    pulsar_bundles: list[ClientCount] = Field(default=[4], min_length=1, max_length=MAX_SWEEP)
    """Pulsar namespace bundle counts to sweep; each value is a fresh namespace. Unused by
    RocketMQ."""
    rocketmq_create_batch: ClientCount = 1
    """Topics per RocketMQ creation request: 1 is one UPDATE_AND_CREATE_TOPIC per topic (what
    ``mqadmin updateTopic`` sends; each rewrites the broker's whole topic table, so the rate
    falls as topics accumulate), more uses UPDATE_AND_CREATE_TOPIC_LIST. Unused by Pulsar,
    whose admin API creates one topic per request."""

    @field_validator("topic_counts")
    @classmethod
    def _counts_increase(cls, v: list[int]) -> list[int]:
        _check_increasing(v)
        return v

    @field_validator("pulsar_bundles")
    @classmethod
    def _bundles_unique(cls, v: list[int]) -> list[int]:
        _check_unique(v)
        return v

    @model_validator(mode="after")
    def _fits_first_step(self) -> TopicGrowthProfile:
        first = self.topic_counts[0]
        for key in ("active_topics", "lookup_sample"):
            value = getattr(self, key)
            if value > first:
                raise FieldProblem(
                    (key,),
                    f"{key} ({value}) exceeds the first step's topic count ({first})",
                )
        return self


class Ramp(_Strict):
    """An automatic ramp to saturation: rates ``start_per_s * factor**k`` up to ``max_per_s``.

    The last rate is clamped to ``max_per_s``. At run time the ramp stops once the achieved
    publish rate falls below ``stop_when_achieved_below`` times the offered rate.
    """

    start_per_s: Rate
    factor: float = Field(gt=1)
    max_per_s: Rate
    stop_when_achieved_below: float = Field(gt=0, le=1)
    """Fraction of the offered rate; e.g. 0.9 stops when less than 90 % was achieved."""

    @model_validator(mode="after")
    def _sane_range(self) -> Ramp:
        if self.max_per_s < self.start_per_s:
            raise FieldProblem(
                ("max_per_s",),
                f"max_per_s ({fmt_value(self.max_per_s)}) is below start_per_s "
                f"({fmt_value(self.start_per_s)})",
            )
        if len(self.rates()) > MAX_RAMP_STEPS:
            raise FieldProblem(
                ("factor",),
                f"the ramp would take more than {MAX_RAMP_STEPS} steps; "
                "raise factor or lower max_per_s",
            )
        return self

    def rates(self) -> list[float]:
        """The offered rates of the ramp, increasing, the last one equal to ``max_per_s``."""
        rates: list[float] = []
        k = 0
        while True:
            # Six significant digits: step ids and charts show 3375, not 3375.0000000001, and
            # tiny start rates do not round to equal values.
            rate = float(f"{self.start_per_s * self.factor**k:.6g}")
            if rate >= self.max_per_s or len(rates) > MAX_RAMP_STEPS:
                rates.append(self.max_per_s)
                return rates
            rates.append(rate)
            k += 1


class SendFrequencyProfile(_TimedProfile):
    """Parameters of one ``send-frequency`` profile.

    Every (send mode, connection mode) pair runs the ``rates_per_s`` sweep and then the ``ramp``;
    at least one of the two must be given. ``oneway`` steps run on RocketMQ only: Pulsar has no
    one-way send.
    """

    rates_per_s: list[Rate] | None = Field(default=None, min_length=1, max_length=MAX_SWEEP)
    """Offered rates, messages/s in total, strictly increasing."""
    ramp: Ramp | None = None
    send_modes: list[SendMode] = Field(default=["async"], min_length=1)
    connection_modes: list[ConnectionMode] = Field(default=["shared"], min_length=1)
    """``shared``: one client for all producers; ``per_producer``: one client each;
    ``per_batch``: a new connection for every ``batch_size_for_per_batch`` sends."""
    producers: ClientCount = 4
    """Producers in all, dealt round-robin over the topics."""
    topics: TopicCount = 4
    """Topics each step sends to (fresh ones for every step)."""
    batch_size_for_per_batch: ClientCount | None = None
    """Sends per connection in ``per_batch`` mode; required exactly when that mode is swept."""
    max_in_flight: ClientCount = 1000
    """Unacknowledged async sends allowed in each of the two shares a step's load is dealt into
    (two Python workers, or one JVM worker carrying both): twice this in all, once with a single
    topic."""

    @field_validator("rates_per_s")
    @classmethod
    def _rates_increase(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            _check_increasing(v)
        return v

    @field_validator("send_modes", "connection_modes")
    @classmethod
    def _modes_unique(cls, v: list[str]) -> list[str]:
        _check_unique(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SendFrequencyProfile:
        if self.rates_per_s is None and self.ramp is None:
            raise FieldProblem(
                ("rates_per_s",),
                "missing required key: give rates_per_s (a sweep), ramp, or both",
            )
        has_per_batch = "per_batch" in self.connection_modes
        if has_per_batch and self.batch_size_for_per_batch is None:
            raise FieldProblem(
                ("batch_size_for_per_batch",),
                "missing required key: connection_modes includes per_batch",
            )
        if not has_per_batch and self.batch_size_for_per_batch is not None:
            raise FieldProblem(
                ("batch_size_for_per_batch",),
                "is set but connection_modes has no per_batch, so it would be ignored",
            )
        return self


class SubscribeFrequencyProfile(_TimedProfile):
    """Parameters of one ``subscribe-frequency`` profile.

    Two sweeps under a fixed publish load: the fan-out sweep (``fanout`` subscriptions per
    topic, no churn), then the churn sweep (``churn_per_s`` subscribe/unsubscribe operations per
    second on short-lived subscriptions, on top of ``churn_base_fanout`` steady ones per topic).
    """

    publish_rate_per_s: Rate = 200.0
    """Fixed publish rate, messages/s in total over all topics."""
    topics: TopicCount = 4
    """Topics each step publishes to and subscribes on."""
    fanout: list[ClientCount] = Field(min_length=1, max_length=MAX_SWEEP)
    """Subscriptions per topic, strictly increasing."""
    churn_per_s: list[Annotated[float, Field(gt=0, le=MAX_CLIENTS)]] = Field(
        min_length=1, max_length=MAX_SWEEP
    )
    """Subscribe plus unsubscribe operations per second in total, strictly increasing."""
    churn_base_fanout: ClientCount = 1
    """Steady subscriptions per topic during the churn sweep (their consumers are measured)."""

    @field_validator("fanout", "churn_per_s")
    @classmethod
    def _sweep_increases(cls, v: list[float]) -> list[float]:
        _check_increasing(v)
        return v


_NO_DURATION = (
    "a kill-9-recovery step has no fixed duration: it lasts kill_after_s, the restart, "
    "observe_after_restart_s and the drain"
)


class KillRecoveryProfile(ProfileBase):
    """Parameters of one ``kill-9-recovery`` profile.

    A step: sequenced load at ``rate_per_s``; ``warmup_s`` in, the pre-kill baseline starts;
    at ``kill_after_s`` the broker gets SIGKILL; it is restarted per the policy; the load runs
    ``observe_after_restart_s`` more (after the kill, for policy ``none``), and on, up to 60 s
    after the restart, while the clients are still reconnecting; then the consumers
    drain while messages keep arriving, for up to ``drain_timeout_s`` (30 s with none arriving
    ends it), and the loss ledger is settled.
    """

    unknown_key_hints: ClassVar[dict[str, str]] = {"duration_s": _NO_DURATION}

    rate_per_s: Rate = 200.0
    """Steady publish rate, messages/s in total."""
    producers: ClientCount = 2
    """Producers in all, dealt round-robin over the topics."""
    topics: TopicCount = 4
    """Topics under the steady load."""
    kill_after_s: PositiveFloat = 20.0
    """Seconds from the step's start to the SIGKILL."""
    restart_policy: list[RestartPolicy] = Field(default=["supervised"], min_length=1)
    """Policies to sweep: ``manual`` (restart after ``manual_restart_after_s``), ``supervised``
    (restart as soon as the process is seen dead), ``none`` (cluster only: fail over)."""
    manual_restart_after_s: PositiveFloat | None = None
    """Seconds from the kill to the restart; required exactly when ``manual`` is swept."""
    paths: list[ClientPath] = Field(default=["direct"], min_length=1)
    """Client paths to sweep: straight to the broker, or through the broker's proxy."""
    repetitions: int = Field(default=1, ge=1, le=100)
    """Times each (policy, path, setting) point is repeated."""
    observe_after_restart_s: PositiveFloat = 20.0
    """Seconds of load after the restart (or failover), to see TPS come back."""
    drain_timeout_s: PositiveFloat = 120.0
    """At most this long to receive every acknowledged message after the load stops."""
    pulsar_session_timeout_ms: list[Annotated[int, Field(gt=0, le=int(MAX_SECONDS * 1000))]] = (
        Field(default=[30000], min_length=1, max_length=MAX_SWEEP)
    )
    """Pulsar ``metadataStoreSessionTimeoutMillis`` values to sweep (governs failover)."""
    rocketmq_route_refresh_s: list[Annotated[int, Field(gt=0, le=int(MAX_SECONDS))]] = Field(
        default=[20], min_length=1, max_length=MAX_SWEEP
    )
    """RocketMQ proxy ``topicRouteServiceCacheRefreshSeconds`` values to sweep."""

    @field_validator(
        "restart_policy", "paths", "pulsar_session_timeout_ms", "rocketmq_route_refresh_s"
    )
    @classmethod
    def _sweep_unique(cls, v: list[Any]) -> list[Any]:
        _check_unique(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> KillRecoveryProfile:
        if self.warmup_s >= self.kill_after_s:
            raise FieldProblem(
                ("warmup_s",),
                f"warmup_s ({fmt_value(self.warmup_s)} s) must be shorter than kill_after_s "
                f"({fmt_value(self.kill_after_s)} s): the pre-kill baseline would be empty",
            )
        manual = "manual" in self.restart_policy
        if manual and self.manual_restart_after_s is None:
            raise FieldProblem(
                ("manual_restart_after_s",),
                "missing required key: restart_policy includes manual",
            )
        if not manual and self.manual_restart_after_s is not None:
            raise FieldProblem(
                ("manual_restart_after_s",),
                "is set but restart_policy has no manual, so it would be ignored",
            )
        return self


P = TypeVar("P", bound=ProfileBase)


class Profiles(_Strict, Generic[P]):
    """A scenario's profiles: one of them, or both."""

    quick: P | None = None
    """Minutes per broker: for tests and nightly CI."""
    full: P | None = None
    """The real curve."""

    @field_validator("quick", "full", mode="before")
    @classmethod
    def _no_empty_profile(cls, value: Any) -> Any:
        # "full:" with nothing under it is a mistake, not a profile left out.
        if value is None:
            raise ValueError("empty profile: give it its keys, or leave it out")
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> Profiles[P]:
        if self.quick is None and self.full is None:
            raise ValueError("define a quick profile, a full profile, or both")
        return self

    def defined(self) -> list[tuple[str, P]]:
        """``(name, profile)`` of each profile the file defines."""
        return [(n, p) for n in PROFILES if (p := getattr(self, n)) is not None]


class ScenarioBase(_Strict):
    """Keys common to every scenario file."""

    profile_model: ClassVar[type[ProfileBase]]

    schema_version: int
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=80)
    """Short identifier, used in run directories and reports."""
    # Each kind narrows this to its own literal.
    kind: Kind
    description: str = Field(min_length=1, max_length=200)
    """One line for ``bench list``."""
    brokers: list[BrokerName] = Field(default=["pulsar", "rocketmq"], min_length=1)
    """Brokers to run, in this order; each runs every step of the profile."""
    topology: Topology
    warmup_s: NonNegativeFloat | None = None
    """Default ``warmup_s`` for both profiles."""
    message_size: MessageSize | None = None
    """Default payload size in bytes for both profiles."""
    # Each kind narrows this to its own profile model.
    profiles: Profiles[Any]

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v not in SCHEMA_VERSIONS:
            understood = ", ".join(str(s) for s in SCHEMA_VERSIONS)
            raise ValueError(
                f"version {v} is not understood; this build reads schema_version {understood}"
            )
        return v

    @field_validator("description")
    @classmethod
    def _one_line(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be blank")
        if "\n" in v:
            raise ValueError("must be one line (it is what `bench list` shows)")
        return v

    @field_validator("brokers")
    @classmethod
    def _brokers_unique(cls, v: list[str]) -> list[str]:
        _check_unique(v)
        return v

    @model_validator(mode="before")
    @classmethod
    def _inherit_common_knobs(cls, data: Any) -> Any:
        # Copy top-level defaults into each profile that lacks them, before validation, so a
        # validated profile is complete and the runner never has to look two places.
        if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
            return data
        known = cls.profile_model.model_fields
        inherited = {k: data[k] for k in COMMON_KNOBS if k in data and k in known}
        if not inherited:
            return data
        profiles = {
            name: {**inherited, **prof} if isinstance(prof, dict) else prof
            for name, prof in data["profiles"].items()
        }
        return {**data, "profiles": profiles}

    def profile(self, name: str) -> ProfileBase:
        """The profile called ``name`` (``quick`` or ``full``)."""
        if name not in PROFILES:
            raise ConfigError(
                f"{self.name}: unknown profile {name!r}; choose one of: {', '.join(PROFILES)}"
            )
        profile: ProfileBase | None = getattr(self.profiles, name)
        if profile is None:
            have = ", ".join(n for n, _ in self.profiles.defined())
            raise ConfigError(f"{self.name}: has no {name} profile (it defines: {have})")
        return profile


class _TimedScenario(ScenarioBase):
    duration_s: PositiveFloat | None = None
    """Default ``duration_s`` (per step, warm-up included) for both profiles."""


class TopicGrowthScenario(_TimedScenario):
    """``kind: topic-growth``: TPS, creation and lookup latency as the topic count grows."""

    profile_model: ClassVar[type[ProfileBase]] = TopicGrowthProfile
    kind: Literal["topic-growth"]
    profiles: Profiles[TopicGrowthProfile]


class SendFrequencyScenario(_TimedScenario):
    """``kind: send-frequency``: TPS and latency against the offered send rate."""

    profile_model: ClassVar[type[ProfileBase]] = SendFrequencyProfile
    kind: Literal["send-frequency"]
    profiles: Profiles[SendFrequencyProfile]

    @model_validator(mode="after")
    def _oneway_needs_rocketmq(self) -> SendFrequencyScenario:
        if "rocketmq" in self.brokers:
            return self
        for name, prof in self.profiles.defined():
            modes = prof.send_modes
            if "oneway" in modes:
                raise FieldProblem(
                    ("profiles", name, "send_modes", modes.index("oneway")),
                    "oneway needs rocketmq in brokers: Pulsar has no one-way send "
                    f"(brokers is [{', '.join(self.brokers)}])",
                )
        return self


class SubscribeFrequencyScenario(_TimedScenario):
    """``kind: subscribe-frequency``: fan-out and subscribe churn under a fixed publish load."""

    profile_model: ClassVar[type[ProfileBase]] = SubscribeFrequencyProfile
    kind: Literal["subscribe-frequency"]
    profiles: Profiles[SubscribeFrequencyProfile]


class KillRecoveryScenario(ScenarioBase):
    """``kind: kill-9-recovery``: outage, client recovery and loss after a broker's SIGKILL."""

    profile_model: ClassVar[type[ProfileBase]] = KillRecoveryProfile
    unknown_key_hints: ClassVar[dict[str, str]] = {"duration_s": _NO_DURATION}
    kind: Literal["kill-9-recovery"]
    profiles: Profiles[KillRecoveryProfile]

    @model_validator(mode="after")
    def _none_needs_cluster(self) -> KillRecoveryScenario:
        if self.topology == "cluster":
            return self
        for name, prof in self.profiles.defined():
            policies = prof.restart_policy
            if "none" in policies:
                raise FieldProblem(
                    ("profiles", name, "restart_policy", policies.index("none")),
                    "restart policy none needs topology: cluster; in standalone nothing is "
                    "left to fail over to and the ledger could never drain",
                )
        return self


Scenario = (
    TopicGrowthScenario | SendFrequencyScenario | SubscribeFrequencyScenario | KillRecoveryScenario
)
"""A validated scenario of any kind."""

SCENARIO_MODELS: dict[str, type[ScenarioBase]] = {
    "topic-growth": TopicGrowthScenario,
    "send-frequency": SendFrequencyScenario,
    "subscribe-frequency": SubscribeFrequencyScenario,
    "kill-9-recovery": KillRecoveryScenario,
}
"""The model for each ``kind``."""
