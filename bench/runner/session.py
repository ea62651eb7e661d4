"""The brokers a run's steps meet: brought up (and warmed up) by the suite, or a target the
user runs (:mod:`bench.targets`)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench.drivers.base import open_driver
from bench.engines.protocol import DEFAULT_ENGINE, Engine
from bench.errors import BenchError
from bench.infra.manager import Infra
from bench.infra.topology import Broker, InfraSettings
from bench.results.store import RunWriter
from bench.runner.progress import Progress
from bench.targets.session import TargetInfra, TargetSettings


class BrokerSession:
    """The infra of one (scenario, broker): brought up on first need, again when settings
    change or after a step left the broker unhealthy, and always brought down."""

    def __init__(self, root: Path, run: RunWriter, progress: Progress) -> None:
        self.infra = Infra(root)
        self.run = run
        self.progress = progress
        self.settings: InfraSettings | None = None
        self.healthy = False

    def ensure(
        self, settings: InfraSettings, warmup_s: float = 0.0, engine: Engine = DEFAULT_ENGINE
    ) -> None:
        """Brokers up as ``settings`` say; when brought up now, ``warmup_s`` seconds of load
        from ``engine`` first (see ``ProfileBase.broker_warmup_s``)."""
        if self.settings == settings and self.healthy:
            return
        self.down()
        broker = settings.brokers[0]
        self.progress.message(
            f"  bringing {broker} up ({settings.topology}"
            f"{', proxy' if settings.proxy else ''}) fresh"
        )
        timings = self.infra.up(settings, fresh=True, progress=lambda m: None)
        self.settings = settings
        self.healthy = True
        self.run.event(
            "infra_up",
            broker=broker,
            detail={
                "settings": settings.to_json(),
                "timings": timings[broker],
                "endpoints": self.infra.endpoints(broker).to_json(),
            },
        )
        if warmup_s > 0:
            self._warm_up(broker, warmup_s, engine)

    def _warm_up(self, broker: Broker, seconds: float, engine: Engine) -> None:
        """Closed-loop load with one consumer on a scratch topic, measured by nobody; recorded
        as an event. A failure here is the first step's to find, not the run's."""
        from bench.runner.calibrate.rates import bench_rate, worker_topic

        self.progress.message(f"  warming {broker} up: {seconds:g} s of unmeasured load")
        ep = self.infra.endpoints(broker)
        topic = f"bench-warmup-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        try:
            with open_driver(broker, ep, path="direct") as admin:
                for r in admin.create_topics([worker_topic(topic, 0)], 4):
                    if not r.ok:
                        raise BenchError(f"cannot create {r.name}: {r.error}")
            got = bench_rate(
                broker,
                ep,
                path="direct",
                send_mode="async",
                topic=topic,
                size=1024,
                seconds=seconds,
                warmup=0.0,
                workers=1,
                max_in_flight=1000,
                engine=engine,
                subscriptions=1,
            )
            detail: dict[str, Any] = {
                "seconds": seconds,
                "engine": engine,
                "acked_per_s": round(got.acked_rate, 1),
                "received_per_s": round(got.received_rate, 1),
            }
        except Exception as exc:  # recorded; the first step meets the broker
            detail = {"seconds": seconds, "engine": engine, "error": str(exc)[:500]}
        detail["took_s"] = round(time.monotonic() - started, 1)
        self.run.event("broker_warmup", broker=broker, detail=detail)

    def down(self) -> None:
        if self.settings is not None or self.infra.records():
            # Every scenario's brokers come up fresh: nothing of this data is kept.
            stopped = self.infra.down(graceful=False)
            if stopped:
                self.run.event("infra_down", detail={"stopped": stopped})
        self.settings = None
        self.healthy = False


class TargetSession:
    """A target of ``--targets`` in place of :class:`BrokerSession`: nothing to bring up or
    down; the step's settings record the target instead of an infra."""

    def __init__(self, target: Any) -> None:
        self.infra = TargetInfra(target)
        self.settings = TargetSettings(target.name, target.broker, target.topology)
        self.healthy = True

    def ensure(
        self, settings: InfraSettings, warmup_s: float = 0.0, engine: Engine = DEFAULT_ENGINE
    ) -> None:
        """Nothing to start: the target is up or the step fails on it (and is not warmed up:
        a broker someone else runs is measured as it is)."""

    def down(self) -> None:
        """Nothing to stop: the suite did not start the target."""
