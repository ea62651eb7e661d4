"""``bench calibrate``: the command."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import click

from bench.drivers.base import open_driver
from bench.engines.protocol import ENGINES, Engine
from bench.errors import BenchError
from bench.infra.manager import Infra
from bench.infra.paths import bench_home
from bench.infra.topology import Broker, Endpoints, InfraSettings
from bench.metrics.resources import CpuMeter
from bench.runner.calibrate.native import BROKER
from bench.runner.calibrate.rows import CalibrationRow, _format_table, calibrate_broker


@click.command("calibrate")
@click.option(
    "--broker",
    type=click.Choice(["pulsar", "rocketmq", "all"]),
    default="all",
    show_default=True,
)
@click.option(
    "--engine",
    type=click.Choice([*ENGINES, "all"]),
    default="all",
    show_default=True,
    help="The load engine(s) to measure against the native tool.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
@click.option("--message-size", type=click.IntRange(64, 4 << 20), default=1024, show_default=True)
@click.option("--seconds", type=click.FloatRange(1, 3600), default=20.0, show_default=True)
@click.option(
    "--warmup", type=click.FloatRange(0, 600), default=3.0, show_default=True, help="Seconds."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes of each engine [default: as a run starts them: python 2, jvm 1].",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 10000),
    default=5000,
    show_default=True,
    help="Outstanding async sends per worker (pulsar-perf's own limit is memory-based).",
)
@click.option(
    "--infra-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Use the brokers already up in this infra directory instead of starting our own.",
)
@click.option(
    "--port-offset",
    type=click.IntRange(0, 40000),
    default=13000,
    show_default=True,
    help="Port offset of the brokers calibrate starts itself.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Alternate native and bench runs this many times; report the medians.",
)
@click.option(
    "--bare",
    is_flag=True,
    help="Pulsar: also time pulsar-client's own send loop alone, the library's ceiling here.",
)
@click.option(
    "--min-ratio",
    type=click.FloatRange(0, 10),
    default=None,
    help="Exit non-zero if any ratio is below this (for CI).",
)
def calibrate_cmd(
    broker: str,
    engine: str,
    as_json: bool,
    message_size: int,
    seconds: float,
    warmup: float,
    workers: int | None,
    max_in_flight: int,
    infra_dir: Path | None,
    port_offset: int,
    rounds: int,
    bare: bool,
    min_ratio: float | None,
) -> None:
    """Compare the native Java tools' maximum rate with our driver's, on the same broker."""
    brokers = cast(tuple[Broker, ...], ("pulsar", "rocketmq") if broker == "all" else (broker,))

    def progress(msg: str) -> None:
        click.echo(f"  {msg}", err=True)

    work = Path(tempfile.mkdtemp(prefix="calibrate-", dir=_work_root()))
    rows: list[CalibrationRow] = []
    try:
        for b in brokers:
            rows += _calibrate_one(
                b,
                infra_dir=infra_dir,
                port_offset=port_offset,
                size=message_size,
                seconds=seconds,
                warmup=warmup,
                workers=workers,
                max_in_flight=max_in_flight,
                work=work,
                progress=progress,
                rounds=rounds,
                bare=bare,
                engines=cast(tuple[Engine, ...], ENGINES if engine == "all" else (engine,)),
            )
    finally:
        if infra_dir is None:
            shutil.rmtree(work / "infra", ignore_errors=True)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        click.echo(_format_table(rows))
        click.echo(f"(logs of the native tools: {work})")
    if min_ratio is not None:
        low = [r for r in rows if r.ratio is None or r.ratio < min_ratio]
        if low:
            what = ", ".join(f"{r.broker}/{r.engine}/{r.path}/{r.send_mode}={r.ratio}" for r in low)
            raise BenchError(f"calibration ratio below {min_ratio}: {what}")


def _metered(broker: Broker, infra: Infra, kwargs: dict[str, Any]) -> list[CalibrationRow]:
    """:func:`calibrate_broker` with every live process of ``broker`` in ``infra`` (broker,
    name server, proxy...) metered as the broker side."""
    ep = infra.endpoints(broker)
    created: list[str] = []
    try:
        with CpuMeter() as cpu:
            for name, pid in infra.pids().items():
                if name.split("/", 1)[0] == broker:
                    cpu.watch(BROKER, pid)
            return calibrate_broker(broker, ep, cpu=cpu, created=created, **kwargs)
    finally:
        if broker == "pulsar" and created:
            # A subscription keeps every message it has not taken: on brokers calibrate did
            # not start, each round's data (~2 GB at 70,000 msg/s) would stay on their disk.
            # (RocketMQ's commit log is shared by all topics and expires by age.)
            _delete_pulsar_topics(ep, created, kwargs["progress"])


def _delete_pulsar_topics(
    ep: Endpoints, topics: list[str], progress: Callable[[str], None]
) -> None:
    """Delete calibrate's topics and what they hold; a failure is said, never raised."""
    from bench.drivers.pulsar import PulsarDriver

    try:
        with open_driver("pulsar", ep, path="direct") as admin:
            failed = cast(PulsarDriver, admin).delete_topics(topics)
    except BenchError as exc:
        failed = [str(exc)]
    if failed:
        progress(f"could not delete {len(failed)} calibration topic(s): {failed[0]}")


def _work_root() -> Path:
    root = bench_home() / "calibrate"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _calibrate_one(
    broker: Broker,
    *,
    infra_dir: Path | None,
    port_offset: int,
    size: int,
    seconds: float,
    warmup: float,
    workers: int | None,
    max_in_flight: int,
    work: Path,
    progress: Callable[[str], None],
    rounds: int,
    bare: bool = False,
    engines: Sequence[Engine] = ("python",),
) -> list[CalibrationRow]:
    kwargs: dict[str, Any] = {
        "rounds": rounds,
        "bare": bare,
        "engines": engines,
        "size": size,
        "seconds": seconds,
        "warmup": warmup,
        "workers": workers,
        "max_in_flight": max_in_flight,
        "work": work,
        "progress": progress,
    }
    if infra_dir is not None:
        return _metered(broker, Infra(infra_dir), kwargs)
    infra = Infra(work / "infra" / broker)
    progress(f"starting {broker} (port offset {port_offset}) in {infra.root}")
    try:
        infra.up(InfraSettings(brokers=(broker,), port_offset=port_offset), progress=progress)
        return _metered(broker, infra, kwargs)
    finally:
        progress(f"stopping {broker}")
        try:
            infra.down(graceful=False)  # its own temporary brokers: nothing to keep
        except BenchError as exc:
            progress(f"stopping {broker}: {exc}")
