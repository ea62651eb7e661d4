"""kill-9-recovery: SIGKILL a broker under a steady sequenced load and measure what clients
see, how it comes back, and what was lost (DESIGN.md section 3.4).

Timeline of a step: warm-up, steady load, ``kill -9`` of the broker process at
``kill_after_s``, restart (``manual`` after ``manual_restart_after_s``; ``supervised`` at once,
by a supervisor standing in for a liveness probe; ``none``: never, in the cluster topology the
other broker takes over), ``observe_after_restart_s`` more seconds of load (and longer, up to
``RESTART_CAP_S`` after the kill, until the probe's topic takes a send again, and up to
``CLIENTS_BACK_CAP_S`` after the restart until the workers' clients send, receive and carry 90%
of the pre-kill rate again), then a drain and
an exact reconciliation of the loss ledger. An outage that outlasts even that is recorded as a
lower bound, ``unavailability_at_least_s``.

Besides the workers' per-second series, a probe in this process sends one message every 50 ms
on the same path and records when each send completed and how; the unavailability window (kill
to the first acknowledged publish sent after the kill) and the time to the first client error
come from it, at 50 ms resolution rather than a second. Beside it, a thread of the probe's reads
the broker's own count of what the step's topics stored once a second (and the step reads it
just before the kill), so a counter that restarts from 0 with the broker is stitched rather
than read as a drop: ``broker_messages_in`` over the step's edges, and ``counter_resets``, the
readings at which it fell (:class:`~bench.runner.broker_count.BrokerCount`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from bench import clock
from bench.drivers.base import Driver
from bench.drivers.rocketmq.acl import remoting_client
from bench.engines.spec import CONSUMER_RESTARTS
from bench.errors import DriverError
from bench.infra.health import http_get_json
from bench.runner.broker_count import BrokerCount
from bench.runner.common import (
    base_spec,
    create_topics,
    finish,
    load_plan,
    open_step_driver,
    start_meter,
    step_topic_names,
    topic_names,
)
from bench.runner.load import run_load
from bench.runner.measure import StepMeter
from bench.runner.record import loss_totals
from bench.scenarios.model import KillRecoveryProfile

if TYPE_CHECKING:
    from bench.infra.manager import Infra
    from bench.runner.api import StepContext
    from bench.targets.session import TargetInfra

PROBE_INTERVAL_S = 0.05
RESTART_CAP_S = 300.0
KILL_DRAIN_STALL_S = 30.0  # a drain with no message arriving for this long ends early
# Longer than a Pulsar client's reconnect backoff after a restart-length outage (it doubles
# from 100 ms, capped at 60 s by default, 30 s for producers).
CLIENTS_BACK_CAP_S = 60.0
RECOVERED_SHARE = 0.9  # TPS is back once a second carries this share of the pre-kill mean


def _pre_kill_tps(meter: StepMeter, killed: float) -> float:
    pre = [
        meter.tps(t) for t in meter.ticks if t.phase == "measure" and t.stats.end_ns / 1e9 <= killed
    ]
    return sum(pre) / len(pre) if pre else 0.0


def _on_wall(state: dict[str, Any], t: float) -> float:
    """Monotonic instant ``t`` of a step on the workers' (wall) clock, through the kill's pair
    of readings: intervals carry wall times, and the wall clock may step during a run."""
    return float(state["killed_wall"]) + (t - float(state["killed_at"]))


def _clients_back(meter: StepMeter, killed: float, resumed: float) -> bool:
    """The workers' producers and consumers both work again since ``resumed``, and a second
    carried RECOVERED_SHARE of the pre-kill TPS: what the step's recovery figures need."""
    back = [t for t in meter.ticks if t.stats.end_ns / 1e9 > resumed and t.phase != "drain"]
    pre_tps = _pre_kill_tps(meter, killed)
    return (
        any(t.stats.counters.get("acked", 0) > 0 for t in back)
        and any(t.stats.counters.get("received", 0) > 0 for t in back)
        and any(pre_tps and meter.tps(t) >= RECOVERED_SHARE * pre_tps for t in back)
    )


@dataclass
class Probe:
    """Sends a small message every 50 ms and keeps (sent_at, done_at, ok) for each; reads the
    broker's count of what ``stats_topics`` stored (``count``) once a second meanwhile."""

    driver: Driver
    topic: str
    stats_topics: list[str]
    results: list[tuple[float, float, bool]] = field(default_factory=list)
    stopped_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.count = BrokerCount(self.driver, self.stats_topics, stitch=True)

    def start(self) -> Probe:
        """Read the count's first edge, then start sending and reading."""
        self.count.start()
        self._thread = threading.Thread(target=self._run, name="kill9-probe", daemon=True)
        self._thread.start()
        self.count.sample_every(1.0)
        return self

    def stop(self) -> None:
        """Stop sending and reading (idempotent)."""
        if self.stopped_at is None:
            self.stopped_at = clock.now()
        self._stop.set()
        self.count.stop_sampling()
        self._thread.join(timeout=60)

    def _done(self, sent_at: float) -> Any:
        def callback(exc: BaseException | None) -> None:
            with self._lock:
                self.results.append((sent_at, clock.now(), exc is None))

        return callback

    def _run(self) -> None:
        client = self.driver.new_client()
        producer = self.driver.producer(self.topic, "async", client)
        try:
            for _ in range(int(3600 / PROBE_INTERVAL_S)):  # bounded: an hour at most
                if self._stop.is_set():
                    return
                now = clock.now()
                try:
                    producer.send_async(b"probe", self._done(now))
                except Exception:
                    with self._lock:
                        self.results.append((now, clock.now(), False))
                self._stop.wait(PROBE_INTERVAL_S)
        finally:
            try:
                producer.close()
                client.close()
            except Exception:
                pass

    def first_error_after(self, t: float) -> float | None:
        with self._lock:
            done = [d for s, d, ok in self.results if not ok and d >= t]
        return min(done) - t if done else None

    def first_ack_sent_after(self, t: float) -> float | None:
        with self._lock:
            done = [d for s, d, ok in self.results if ok and s >= t]
        return min(done) - t if done else None

    def outage(self, killed: float, dead: float | None) -> float | None:
        """From the kill to the first acknowledgement of a probe sent once the process had
        exited (``dead``); None while there is none. A probe sent between the signal and the
        exit can still be acknowledged by the dying broker (seen: an "outage" of 0.0 s with the
        broker back 8.4 s later): that is not the service back."""
        since = killed if dead is None else max(killed, dead)
        ack = self.first_ack_sent_after(since)
        return None if ack is None else ack + (since - killed)

    def unavailable_at_least(self, killed: float, dead: float | None) -> float | None:
        """When no :meth:`outage` ended before the probe stopped: how long after the kill it
        stopped (the outage lasted at least that long); else None."""
        if self.stopped_at is None or self.outage(killed, dead) is not None:
            return None
        return self.stopped_at - killed


class _Faults:
    """The kill, restart and supervision of a step's broker process: the suite's own infra
    (by recorded PID) or a target's (its commands or the Kubernetes API)."""

    def __init__(self, infra: Infra | TargetInfra) -> None:
        from bench.targets.session import TargetInfra

        self.infra = infra
        self.target = infra.faults if isinstance(infra, TargetInfra) else None
        self.watcher: Any = None
        self.watched = ""

    def serves(self, victims: list[str]) -> dict[str, str]:
        """Each victim's ``:port`` suffix of its broker service URL (to find topic owners)."""
        if self.target is not None:
            return {v: f":{s.rsplit(':', 1)[1]}" for v in victims if (s := self.target.serves(v))}
        specs = cast("Infra", self.infra).specs()
        return {
            v: f":{next(p for lb, p in specs[v].ports.items() if lb.startswith('pulsar broker'))}"
            for v in victims
        }

    def kill(self, name: str) -> tuple[float, dict[str, Any]]:
        """Kill ``name`` hard; (when, what the event records)."""
        if self.target is not None:
            at, took = self.target.kill9(name)
            how = "kubernetes API" if self.target.faults.kill is None else "command"
            return at, {"process": name, "signal": "SIGKILL", "via": how, "command_s": took}
        return cast("Infra", self.infra).kill9(name), {"process": name, "signal": "SIGKILL"}

    def restart(self, name: str) -> float:
        """Restart ``name`` and wait until it serves; when it did."""
        if self.target is not None:
            return self.target.restart(name)
        cast("Infra", self.infra).restart(name)
        return clock.now()

    def supervise(self, name: str) -> None:
        """Bring ``name`` back as soon as it dies: the suite's supervisor locally; on a target
        the platform itself (watched through ``is_up``), or its restart command at once."""
        self.watched = name
        if self.target is None:
            self.watcher = cast("Infra", self.infra).supervise(name, poll_s=0.1)
        elif self.target.faults.restarts_by_itself:
            self.watcher = self.target.watch(name)

    def after_kill(self, name: str) -> None:
        if self.target is not None and self.watcher is None and self.watched == name:
            # A target that does not restart by itself: the restart command is the supervisor.
            from bench.targets.faults import UpWatcher

            target = self.target
            self.watcher = UpWatcher(lambda: bool(target.restart(name)), poll_s=1.0).start(0.0)

    def restarted(self) -> tuple[float, int | None] | None:
        if self.watcher is None:
            return None
        done = [e for e in self.watcher.events if e.kind == "restarted"]
        return (done[0].at, done[0].pid) if done else None

    def stop(self) -> None:
        if self.watcher is None:
            return
        self.watcher.stop()
        if self.target is None:
            cast("Infra", self.infra)._set_record(self.watcher.record, self.watched)


def _admin_json(driver: Driver, base_url: str, path: str) -> Any:
    """GET ``path`` of the Pulsar admin API at ``base_url`` (None on failure): through the
    driver when its endpoints carry a token or TLS, plain HTTP otherwise."""
    from bench.drivers.pulsar import PulsarDriver

    if isinstance(driver, PulsarDriver) and (
        driver.endpoints.auth_token_env or base_url.startswith("https://")
    ):
        with contextlib.suppress(DriverError, ValueError):
            status, body = driver.admin_request(base_url, "GET", path)
            if status == 200:
                return json.loads(body)
        return None
    return http_get_json(f"{base_url}{path}", 30.0)


def _probe_topic_on_victim(
    ctx: StepContext,
    driver: Driver,
    victims: list[str],
    prefix: str,
    faults: _Faults | None = None,
) -> tuple[str, str]:
    """A probe topic and the broker to kill: one that serves the probe topic, so the probe
    measures the outage of the topics the killed broker owns (in a cluster the others never
    stop). ``victims[0]`` when it owns one of the candidates, else whichever killable broker
    owns the first: after earlier kills every Pulsar bundle may sit on the other broker, and
    killing a broker that owns nothing measures nothing (a first full run did, in 4 of 6
    supervised steps)."""
    candidates = topic_names(ctx, prefix, 16)
    ep = ctx.infra.endpoints(ctx.broker)
    if ctx.broker == "rocketmq":
        # A topic that lives only on the victim: its queues have nowhere else to go.
        name = victims[0].split("/", 1)[1]
        addr = ep.broker_addrs.get(name) or next(iter(ep.broker_addrs.values()))
        client = remoting_client(ep, timeout=10.0, admin_timeout=30.0)
        try:
            client.create_topic(addr, candidates[0])
        finally:
            client.close()
        return candidates[0], victims[0]
    create = create_topics(driver, candidates, concurrency=8)
    if create.errors:
        raise DriverError(f"could not create the probe topics: {create.first_error}")
    if len(ep.admin_urls) == 1:
        return candidates[0], victims[0]
    ports = (faults or _Faults(ctx.infra)).serves(victims)
    first_owned: tuple[str, str] | None = None
    for topic in candidates:
        data = _admin_json(
            driver, ep.admin_urls[0], f"/lookup/v2/topic/persistent/public/default/{topic}"
        )
        url = str(data.get("brokerUrl", "")) if isinstance(data, dict) else ""
        owner = next((v for v, port in ports.items() if url.endswith(port)), None)
        if owner == victims[0]:
            return topic, owner
        if owner is not None and first_owned is None:
            first_owned = (topic, owner)
    if first_owned is not None:
        ctx.event(
            "warning",
            detail=f"no probe topic landed on {victims[0]}; killing {first_owned[1]}, "
            "which serves them",
        )
        return first_owned
    ctx.event(
        "warning", detail=f"no probe topic landed on {victims[0]}; the probe may not see the outage"
    )
    return candidates[0], victims[0]


def run_step(ctx: StepContext) -> dict[str, Any]:
    step = ctx.step
    prof = cast(KillRecoveryProfile, ctx.scenario.profile(step.profile))
    p = step.params
    started = clock.now()
    path, policy = str(p["path"]), str(p["restart_policy"])
    victims = ctx.infra.killable(ctx.broker)
    if not victims:
        raise DriverError(f"no {ctx.broker} broker process to kill in this infra")
    topics = step_topic_names(ctx, "k9r", prof.topics)
    driver = open_step_driver(ctx, path)
    # Times are bench.clock readings: their differences are durations whatever the wall clock
    # does meanwhile. "killed_wall" is the kill on the wall clock of that moment, the frame
    # of the workers' interval times that the tick-based figures compare with it.
    state: dict[str, Any] = {
        "killed_at": None,
        "killed_wall": None,
        "dead_at": None,
        "restarted_at": None,
        "restart_error": None,
    }
    faults = _Faults(ctx.infra)
    restarter: threading.Thread | None = None
    started_probes: list[Probe] = []  # stopped whatever happens
    try:
        creation = create_topics(driver, topics, concurrency=8)
        if creation.errors:
            raise DriverError(f"could not create the topics: {creation.first_error}")
        probe_topic, target = _probe_topic_on_victim(
            ctx, driver, victims, f"k9p{step.index}", faults
        )
        probe = Probe(driver, probe_topic, topics).start()
        started_probes.append(probe)
        meter = start_meter(ctx, prof.warmup_s)
        spec = base_spec(
            ctx,
            topics,
            rate_per_s=prof.rate_per_s,
            path=path,
            producers_per_topic=max(1, prof.producers // prof.topics),
            warmup_s=prof.warmup_s,
            subscriptions_per_topic=1,
        )

        def restart() -> None:
            try:
                state["restarted_at"] = faults.restart(target)
                probe.count.sample_soon()
                ctx.event("restart", detail={"process": target, "policy": "manual"})
            except Exception as exc:
                state["restart_error"] = str(exc)

        def on_tick(elapsed: float, pool: Any) -> None:
            nonlocal restarter
            if state["killed_at"] is None and elapsed >= prof.kill_after_s:
                if policy == "supervised":
                    faults.supervise(target)
                # What the broker stored up to the kill: a counter that restarts from 0 loses
                # what it counted since its last reading.
                probe.count.sample()
                at, detail = faults.kill(target)
                state["killed_at"], state["killed_wall"] = at, clock.to_wall(at)
                state["dead_at"] = clock.now()  # the kill returns once the process has exited
                ctx.event("kill", detail=detail)
                if policy == "supervised":
                    faults.after_kill(target)
            killed = state["killed_at"]
            if killed is None:
                return
            if (
                policy == "manual"
                and restarter is None
                and (clock.now() >= killed + (prof.manual_restart_after_s or 0.0))
            ):
                restarter = threading.Thread(target=restart, name="kill9-restart", daemon=True)
                restarter.start()
            if policy == "supervised" and state["restarted_at"] is None:
                back = faults.restarted()
                if back is not None:
                    state["restarted_at"] = back[0]
                    probe.count.sample_soon()
                    ctx.event("supervisor_restart", detail={"process": target, "pid": back[1]})

        def until(elapsed: float) -> bool:
            if state["restart_error"]:
                return True
            killed = state["killed_at"]
            if killed is None:
                return False
            now = clock.now()
            # The step also waits for the probe topic to take a send again (up to
            # RESTART_CAP_S after the kill), so a long outage is measured, not cut short.
            probe_back = probe.outage(killed, state["dead_at"]) is not None
            if not probe_back and now < killed + RESTART_CAP_S:
                return False
            resumed = killed if policy == "none" else state["restarted_at"]
            if resumed is None or now < resumed + prof.observe_after_restart_s:
                return False
            # Observed long enough; and longer, up to CLIENTS_BACK_CAP_S after the broker came
            # back, while the workers' clients are still reconnecting (their backoff grows with
            # the outage), so a slow recovery is measured rather than cut short and reported as
            # none.
            if now >= resumed + CLIENTS_BACK_CAP_S:
                return True
            return _clients_back(meter, state["killed_wall"], _on_wall(state, resumed))

        def phase_of(elapsed: float) -> str | None:
            if state["killed_at"] is None:
                return None  # warm-up, then measure (the worker flags the warm-up)
            return "fault" if state["restarted_at"] is None else "measure"

        cap = (
            prof.kill_after_s
            + (prof.manual_restart_after_s or 0)
            + RESTART_CAP_S
            + max(prof.observe_after_restart_s, CLIENTS_BACK_CAP_S)
        )
        result = run_load(
            load_plan(ctx, spec, topics),
            meter,
            cap,
            on_tick=on_tick,
            until=until,
            phase_of=phase_of,
            drain_timeout_s=prof.drain_timeout_s,
            # Longer than the 15 s a consumer may sit after a kill before it is re-created.
            drain_stall_s=KILL_DRAIN_STALL_S,
            progress_tick=ctx.progress.tick,
        )
        probe.stop()
        probe.count.end()
    finally:
        for running in started_probes:
            running.stop()  # already stopped, unless the load failed
        faults.stop()
        if restarter is not None:
            restarter.join(timeout=RESTART_CAP_S)
        driver.close()

    killed, restarted = state["killed_at"], state["restarted_at"]
    # On the workers' (wall) clock, for what is read from their intervals.
    killed_w = state["killed_wall"]
    restarted_w = None if restarted is None else _on_wall(state, restarted)
    pre_tps = _pre_kill_tps(meter, killed_w) if killed_w is not None else 0.0
    recover = None
    after_ticks = [
        t
        for t in meter.ticks
        if killed_w is not None and t.stats.end_ns / 1e9 > killed_w and t.phase != "drain"
    ]
    for t in after_ticks:
        if pre_tps and meter.tps(t) >= RECOVERED_SHARE * pre_tps:
            recover = t.stats.end_ns / 1e9 - killed_w
            break
    series_first_error = next(
        (
            t.stats.end_ns / 1e9 - killed_w
            for t in after_ticks
            if t.stats.counters.get("send_errors", 0)
        ),
        None,
    )
    probe_first_error = probe.first_error_after(killed) if killed else None
    first_error = min(
        (x for x in (probe_first_error, series_first_error) if x is not None), default=None
    )
    resumed_after = restarted_w if restarted_w is not None else killed_w
    # Recovered = the same client objects (no restart of theirs) both publish and consume
    # again after the broker came back.
    back = [
        t for t in after_ticks if resumed_after is not None and t.stats.end_ns / 1e9 > resumed_after
    ]
    producers_back = any(t.stats.counters.get("acked", 0) > 0 for t in back)
    consumers_back = any(t.stats.counters.get("received", 0) > 0 for t in back)
    consumer_restarts = sum(t.stats.counters.get(CONSUMER_RESTARTS, 0) for t in meter.ticks)
    clients_recovered = producers_back and consumers_back and not consumer_restarts
    if consumer_restarts:
        ctx.event(
            "warning",
            detail=f"{consumer_restarts} consumer(s) did not recover by "
            "themselves and were re-created by the driver (so the drain can count)",
        )
    if not consumers_back:
        ctx.event("warning", detail="consumers received nothing after the broker came back")
    # An outage longer than the step observed: its length is only known to be at least this.
    window = probe.outage(killed, state["dead_at"]) if killed else None
    at_least = probe.unavailable_at_least(killed, state["dead_at"]) if killed else None
    if at_least is not None:
        ctx.event(
            "warning",
            detail=f"the probe topic on {target} acknowledged nothing sent after the kill in "
            f"the {at_least:.1f} s observed: unavailable at least that long",
        )
    extra: dict[str, Any] = {
        "path": path,
        "restart_policy": policy,
        "repetition": int(p["repetition"]),
        "killed_process": target,
        "killed_at": killed_w,
        "restarted_at": restarted_w,
        "time_to_first_error_s": first_error,
        "unavailability_s": window,
        "unavailability_at_least_s": at_least,
        "time_to_recover_tps_s": recover,
        "clients_recovered": clients_recovered,
        **probe.count.record(ctx),
        # None with the count: an edge was not read, so a fall may have gone unseen.
        "counter_resets": None if probe.count.stored is None else probe.count.falls,
    }
    loss = loss_totals(result.ledgers)
    problems = []
    if state["restart_error"]:
        problems.append(f"restart failed: {state['restart_error']}")
    if loss and loss.get("lost") and result.drained:
        problems.append(f"{loss['lost']} acknowledged messages were never consumed")
    elif loss and loss.get("lost") and policy == "none":
        problems.append(
            "the killed broker was not restarted: messages stored on it cannot be "
            "consumed until it is"
        )
    return finish(
        ctx,
        meter,
        started_at=started,
        offered_rate_per_s=prof.rate_per_s,
        extra=extra,
        loss=loss,
        phases=("measure", "fault"),
        status="errors" if problems else "ok",
        error="; ".join(problems) or None,
        drained=result.drained,
        drain_note=result.drain_note,
    )
