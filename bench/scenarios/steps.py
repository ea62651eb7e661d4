"""Steps: how a scenario profile expands into the ordered list of :class:`Step` objects the runner
executes (one per broker per sweep point), and how ``--only`` selects among them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError
from bench.scenarios.model import (
    BrokerName,
    KillRecoveryProfile,
    Kind,
    ProfileBase,
    ProfileName,
    Scenario,
    SendFrequencyProfile,
    SubscribeFrequencyProfile,
    TopicGrowthProfile,
    Topology,
    fmt_value,
)


@dataclass(frozen=True)
class Step:
    """One point of a sweep on one broker: the unit the runner executes and stores.

    ``step_id`` is unique within one scenario profile and deterministic: the same file and
    profile always give the same ids in the same order, so a run can be resumed and two runs
    compared step by step. It is built from the broker and the swept values only, using
    ``[a-z0-9_.=-]``, so it is safe as a file name.

    ``group``: consecutive steps with the same group build on each other and must run in order
    on the same broker state: a topic-growth group adds topics to the previous step's (each
    group starts from no topics, on a fresh namespace for each Pulsar bundle count); a
    send-frequency ramp group stops at its first step whose achieved rate is below
    ``params["stop_when_achieved_below"]`` times the offered rate. A step that stands alone has
    ``group == step_id``.

    ``params`` holds the profile's values for this point, each sweep list replaced by the
    single value of this point; every step has ``warmup_s`` and ``message_size``, and:

    - topic-growth: ``topic_count`` (total topics after this step), ``mode``,
      ``create_concurrency``, ``active_topics``, ``rate_per_s``, ``lookup_sample``,
      ``lookup_timeout_s``, ``duration_s``; ``pulsar_bundles`` (int) on Pulsar only.
    - send-frequency: ``phase`` (``"sweep"`` | ``"ramp"``), ``send_mode``, ``connection_mode``,
      ``rate_per_s`` (offered), ``producers``, ``topics``, ``max_in_flight``, ``duration_s``;
      ``batch_size_for_per_batch`` when the connection mode is ``per_batch``;
      ``stop_when_achieved_below`` on ramp steps.
    - subscribe-frequency: ``sweep`` (``"fanout"`` | ``"churn"``), ``fanout`` (subscriptions per
      topic), ``churn_per_s`` (0 in the fan-out sweep), ``publish_rate_per_s``, ``topics``,
      ``duration_s``.
    - kill-9-recovery: ``path``, ``restart_policy``, ``repetition`` (from 1), ``rate_per_s``,
      ``producers``, ``topics``, ``kill_after_s``, ``observe_after_restart_s``,
      ``drain_timeout_s``; ``manual_restart_after_s`` for policy ``manual``;
      ``pulsar_session_timeout_ms`` on Pulsar, ``rocketmq_route_refresh_s`` on RocketMQ.
    """

    scenario: str
    kind: Kind
    profile: ProfileName
    broker: BrokerName
    topology: Topology
    index: int
    """Position in the expansion, from 0."""
    step_id: str
    group: str
    params: dict[str, Any] = field(hash=False)


def _ident(broker: str, *parts: tuple[str, Any] | str) -> str:
    pieces = [broker]
    for part in parts:
        pieces.append(part if isinstance(part, str) else f"{part[0]}={fmt_value(part[1])}")
    return "-".join(pieces)


# Each _expand_* yields (step_id, group, params) for one broker, in run order.
_Point = tuple[str, str, dict[str, Any]]
_SWEEPS = {
    "topic_counts",
    "pulsar_bundles",
    "rates_per_s",
    "ramp",
    "send_modes",
    "connection_modes",
    "fanout",
    "churn_per_s",
    "churn_base_fanout",
    "restart_policy",
    "paths",
    "repetitions",
    "pulsar_session_timeout_ms",
    "rocketmq_route_refresh_s",
}


def _fixed(profile: ProfileBase) -> dict[str, Any]:
    """The profile's values that are the same at every point of its sweeps."""
    return {k: v for k, v in profile.model_dump().items() if k not in _SWEEPS and v is not None}


def _expand_topic_growth(p: TopicGrowthProfile, broker: str) -> Iterator[_Point]:
    # Bundles are a Pulsar namespace setting: RocketMQ runs the topic steps once.
    bundle_sweep: list[int | None] = list(p.pulsar_bundles) if broker == "pulsar" else [None]
    for bundles in bundle_sweep:
        group_parts: list[tuple[str, Any]] = [("mode", p.mode)]
        if bundles is not None:
            group_parts.append(("bundles", bundles))
        group = _ident(broker, *group_parts)
        for count in p.topic_counts:
            params = {**_fixed(p), "topic_count": count}
            if broker != "rocketmq":
                params.pop("rocketmq_create_batch", None)
            if bundles is not None:
                params["pulsar_bundles"] = bundles
            yield _ident(broker, *group_parts, ("topics", count)), group, params


def _expand_send_frequency(p: SendFrequencyProfile, broker: str) -> Iterator[_Point]:
    fixed = _fixed(p)
    fixed.pop("batch_size_for_per_batch", None)
    for send_mode in p.send_modes:
        if send_mode == "oneway" and broker != "rocketmq":
            continue  # Pulsar has no one-way send; the model lets it through only for RocketMQ.
        for conn in p.connection_modes:
            base = {**fixed, "send_mode": send_mode, "connection_mode": conn}
            if conn == "per_batch":
                base["batch_size_for_per_batch"] = p.batch_size_for_per_batch
            modes = (("send", send_mode), ("conn", conn))
            for rate in p.rates_per_s or []:
                step_id = _ident(broker, "sweep", *modes, ("rate", rate))
                yield step_id, step_id, {**base, "phase": "sweep", "rate_per_s": rate}
            if p.ramp is not None:
                group = _ident(broker, "ramp", *modes)
                for rate in p.ramp.rates():
                    params = {
                        **base,
                        "phase": "ramp",
                        "rate_per_s": rate,
                        "stop_when_achieved_below": p.ramp.stop_when_achieved_below,
                    }
                    yield _ident(broker, "ramp", *modes, ("rate", rate)), group, params


def _expand_subscribe_frequency(p: SubscribeFrequencyProfile, broker: str) -> Iterator[_Point]:
    fixed = _fixed(p)
    for fanout in p.fanout:
        step_id = _ident(broker, ("fanout", fanout))
        params = {**fixed, "sweep": "fanout", "fanout": fanout, "churn_per_s": 0.0}
        yield step_id, step_id, params
    for churn in p.churn_per_s:
        step_id = _ident(broker, ("churn", churn))
        params = {**fixed, "sweep": "churn", "fanout": p.churn_base_fanout, "churn_per_s": churn}
        yield step_id, step_id, params


def _expand_kill_recovery(p: KillRecoveryProfile, broker: str) -> Iterator[_Point]:
    # Each broker sweeps only its own recovery setting; the other's does not exist for it.
    fixed = _fixed(p)
    fixed.pop("manual_restart_after_s", None)
    if broker == "pulsar":
        key, short, values = (
            "pulsar_session_timeout_ms",
            "session_timeout_ms",
            p.pulsar_session_timeout_ms,
        )
    else:
        key, short, values = (
            "rocketmq_route_refresh_s",
            "route_refresh_s",
            p.rocketmq_route_refresh_s,
        )
    for path in p.paths:
        for policy in p.restart_policy:
            for value in values:
                for rep in range(1, p.repetitions + 1):
                    params = {**fixed, "path": path, "restart_policy": policy, key: value}
                    if policy == "manual":
                        params["manual_restart_after_s"] = p.manual_restart_after_s
                    params["repetition"] = rep
                    step_id = _ident(
                        broker, ("path", path), ("restart", policy), (short, value), ("rep", rep)
                    )
                    yield step_id, step_id, params


def expand_steps(scenario: Scenario, profile: str) -> list[Step]:
    """Expand one profile of ``scenario`` into the ordered steps the runner executes.

    The broker is the *outermost* loop, in the order of ``scenario.brokers``: each broker runs
    all its steps before the next one starts, so only one broker needs to be up at a time (the
    two never compete for the machine's cores) and topic-growth state accumulates on one broker.
    Within a broker the sweeps nest in the order the kind documents, the load axis innermost.

    Raises ``ConfigError`` for an unknown profile name.
    """
    prof = scenario.profile(profile)
    steps: list[Step] = []
    for broker in scenario.brokers:
        points: Iterator[_Point]
        if isinstance(prof, TopicGrowthProfile):
            points = _expand_topic_growth(prof, broker)
        elif isinstance(prof, SendFrequencyProfile):
            points = _expand_send_frequency(prof, broker)
        elif isinstance(prof, SubscribeFrequencyProfile):
            points = _expand_subscribe_frequency(prof, broker)
        elif isinstance(prof, KillRecoveryProfile):
            points = _expand_kill_recovery(prof, broker)
        else:  # pragma: no cover - a new kind without an expansion is a bug
            raise TypeError(f"no expansion for {type(prof).__name__}")
        for step_id, group, params in points:
            steps.append(
                Step(
                    scenario=scenario.name,
                    kind=scenario.kind,
                    profile=profile,  # type: ignore[arg-type]  # checked by scenario.profile()
                    broker=broker,
                    topology=scenario.topology,
                    index=len(steps),
                    step_id=step_id,
                    group=group,
                    params=params,
                )
            )
    ids = [s.step_id for s in steps]
    # The model's uniqueness checks should make this impossible; a clash would make the runner
    # overwrite a finished step, so fail loudly rather than lose data.
    if len(set(ids)) != len(ids):
        raise AssertionError(f"duplicate step ids in {scenario.name}/{profile}: {ids}")
    return steps


def parse_only(specs: Sequence[str]) -> dict[str, list[str]]:
    """``--only KEY=VALUE`` options as ``{key: [values]}`` (a key given twice: either value).

    Raises ``ConfigError`` for a spec without ``=`` or with an empty key or value."""
    only: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"--only {spec!r}: expected KEY=VALUE, e.g. restart_policy=manual")
        only.setdefault(key, []).append(value)
    return only


def select_steps(steps: Sequence[Step], only: Mapping[str, Sequence[str]]) -> list[Step]:
    """The steps whose parameters match every key of ``only``.

    A key is a step parameter (see :class:`Step`), ``step_id`` or ``broker``; values compare as
    they appear in step ids (``1000`` matches 1000.0). A step that builds on the earlier steps of
    its group (topic-growth, a send-frequency ramp) brings those steps along, so what it measures
    is what the whole profile would have measured. Steps keep their ``index`` (and so their topic
    names and payload ids). A scenario whose steps lack a key has no step selected; whether some
    scenario has it is for the caller to check (:func:`check_only_keys`).
    """
    if not only:
        return list(steps)

    def matches(fields: dict[str, Any]) -> bool:
        return all(k in fields and fmt_value(fields[k]) in vals for k, vals in only.items())

    chosen = [i for i, s in enumerate(steps) if matches(_selectable(s))]
    last_chosen = {steps[i].group: i for i in chosen}  # the last chosen step of each group
    picked = set(chosen)
    return [
        s
        for i, s in enumerate(steps)
        if i in picked or (s.group != s.step_id and i < last_chosen.get(s.group, -1))
    ]


def _selectable(step: Step) -> dict[str, Any]:
    """What ``--only`` can select a step by: its parameters, ``step_id`` and ``broker``."""
    return {**step.params, "step_id": step.step_id, "broker": step.broker}


def check_only_keys(
    expanded: Sequence[tuple[str, Sequence[Step]]], only: Mapping[str, Sequence[str]]
) -> None:
    """Raise ``ConfigError`` when an ``--only`` key or value matches no step of any scenario.

    ``expanded``: (scenario file, its steps) pairs. The message names what does exist."""
    for key, values in only.items():
        seen: set[str] = set()
        for _, steps in expanded:
            for s in steps:
                fields = _selectable(s)
                if key in fields:
                    seen.add(fmt_value(fields[key]))
        files = ", ".join(f for f, _ in expanded)
        if not seen:
            keys = sorted({k for _, steps in expanded for s in steps for k in s.params})
            raise ConfigError(
                f"--only {key}=...: no step of {files} has a parameter {key!r}; "
                f"known: step_id, broker, {', '.join(keys)}"
            )
        missing = [v for v in values if v not in seen]
        if missing:
            raise ConfigError(
                f"--only {key}={missing[0]}: no step of {files} has that value; "
                f"its values: {', '.join(sorted(seen))}"
            )
