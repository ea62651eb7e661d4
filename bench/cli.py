"""The ``bench`` command line.

Every expected failure is a :class:`~bench.errors.BenchError`; :func:`main` catches it in one
place, prints one line (``bench: error: ...``) and exits non-zero. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, cast

import click

from bench.errors import BenchError


def _echo_progress(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bench")
def cli() -> None:
    """Benchmark Apache RocketMQ against Apache Pulsar on this machine."""


# -- infra -----------------------------------------------------------------------------------
@cli.group()
@click.option(
    "--dir",
    "--infra-dir",
    "infra_dir",
    envvar="BENCH_INFRA_DIR",
    type=click.Path(file_okay=False),
    default=None,
    help="Infra state/data/log directory [env BENCH_INFRA_DIR; default ~/.cache/bench/infra].",
)
@click.pass_context
def infra(ctx: click.Context, infra_dir: str | None) -> None:
    """Start, inspect and stop the brokers (real JVMs on 127.0.0.1)."""
    from bench.drivers.base import CLIENT_LOG_ENV
    from bench.infra.manager import Infra

    ctx.obj = Infra(infra_dir)
    # Health checks run real clients; their own log lines belong beside the brokers' logs.
    os.environ.setdefault(CLIENT_LOG_ENV, str(ctx.obj.root / "logs" / "clients.log"))


BROKER_CHOICE = click.Choice(["rocketmq", "pulsar", "all"])


@infra.command("up")
@click.argument("broker", type=BROKER_CHOICE, default="all")
@click.option(
    "--topology",
    type=click.Choice(["standalone", "cluster"]),
    default="standalone",
    show_default=True,
)
@click.option("--proxy", is_flag=True, help="Run the Pulsar proxy in front of Pulsar.")
@click.option("--fresh", is_flag=True, help="Wipe the brokers' data, configs and logs first.")
@click.option(
    "--port-offset",
    type=int,
    default=0,
    show_default=True,
    help="Add N to every port (to run beside another infra).",
)
@click.option(
    "--durability",
    type=click.Choice(["async", "sync"]),
    default="async",
    show_default=True,
    help="async: ASYNC_FLUSH / no journal fsync; sync: fsync.",
)
@click.option("--json", "as_json", is_flag=True, help="Print endpoints and timings as JSON.")
@click.option(
    "--pulsar-token-secret-env",
    default="",
    metavar="NAME",
    help="Switch Pulsar token authentication on; variable NAME holds the HS256 secret key "
    "(base64). A wrong token is refused; no token at all keeps an anonymous role.",
)
@click.option(
    "--rocketmq-acl-env",
    default="",
    metavar="ACCESS:SECRET",
    help="Switch RocketMQ ACL (authentication) on; variables ACCESS and SECRET hold the "
    "account's access key and secret key. Every request must then be signed by it.",
)
@click.pass_obj
def infra_up(
    infra_obj: object,
    broker: str,
    topology: str,
    proxy: bool,
    fresh: bool,
    port_offset: int,
    durability: str,
    as_json: bool,
    pulsar_token_secret_env: str = "",
    rocketmq_acl_env: str = "",
) -> None:
    """Bring BROKER up and wait until a real produce/consume round trip succeeds."""
    from bench.infra.manager import Infra
    from bench.infra.topology import BROKERS, Broker, InfraSettings, Topology

    assert isinstance(infra_obj, Infra)
    _stop_run_orphans(infra_obj.root)
    brokers = cast("tuple[Broker, ...]", BROKERS if broker == "all" else (broker,))
    settings = InfraSettings(
        brokers=brokers,
        topology=cast("Topology", topology),
        proxy=proxy,
        port_offset=port_offset,
        durability=cast("Literal['async', 'sync']", durability),
        pulsar_token_secret_env=pulsar_token_secret_env,
        rocketmq_acl_env=rocketmq_acl_env,
    )
    timings = infra_obj.up(settings, fresh=fresh, progress=_echo_progress)
    eps = {b: infra_obj.endpoints(b).to_json() for b in brokers}
    if as_json:
        click.echo(json.dumps({"endpoints": eps, "timings": timings}, indent=2))
        return
    for b in brokers:
        t = timings[b]
        click.echo(
            f"{b}: healthy ({topology}) in {t['start_to_healthy_s']:.1f} s "
            f"(+{t['resolve_s']:.1f} s resolving jars)"
        )
        for key, value in eps[b].items():
            if value and key not in ("broker", "topology"):
                click.echo(f"  {key}: {value}")


@infra.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def infra_status(infra_obj: object, as_json: bool) -> None:
    """Per process: PID, alive, ports (accepting?), data directory."""
    from bench.infra.manager import Infra

    assert isinstance(infra_obj, Infra)
    rows = infra_obj.status()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"nothing is up in {infra_obj.root}")
        return
    for row in rows:
        state = "ready" if row["ready"] else ("alive" if row["alive"] else "DOWN")
        ports = ", ".join(
            f"{p['port']}{'' if p['accepting'] else '(closed)'}" for p in row["ports"].values()
        )
        click.echo(f"{row['name']:<22} pid {row['pid'] or '-':<8} {state:<6} ports {ports}")
        click.echo(f"{'':<22} data {row['data_dir']}")
        if row["exposed"]:
            click.echo(f"{'':<22} WARNING: listening beyond loopback: {', '.join(row['exposed'])}")


@infra.command("logs")
@click.argument("name")
@click.option("-n", "--lines", type=int, default=40, show_default=True)
@click.pass_obj
def infra_logs(infra_obj: object, name: str, lines: int) -> None:
    """Show the last lines of process NAME's log (e.g. pulsar/standalone, broker-a)."""
    from bench.infra.manager import Infra
    from bench.infra.process import tail

    assert isinstance(infra_obj, Infra)
    path = infra_obj.log_path(name)
    click.echo(f"==> {path} <==")
    click.echo(tail(path, lines))


@infra.command("down")
@click.pass_obj
def infra_down(infra_obj: object) -> None:
    """Stop exactly the processes `up` started (by PID) and wait until their ports are free."""
    from bench.infra.manager import Infra

    assert isinstance(infra_obj, Infra)
    _stop_run_orphans(infra_obj.root)
    stopped = infra_obj.down()
    click.echo(
        f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else "")
    )


def _stop_run_orphans(infra_root: Path) -> None:
    """Stop brokers a killed `bench run` left behind: on the default run directory, and on
    ``infra_root`` (a `bench run --infra-dir`). Only where no run is live: a live run holds its
    directory's lock, and its brokers are its own."""
    from bench.infra.lock import InfraInUse, InfraLock
    from bench.infra.manager import stop_orphans
    from bench.infra.paths import default_infra_dir

    for root in dict.fromkeys([default_infra_dir() / "run", infra_root]):
        if not root.is_dir():
            continue
        try:
            with InfraLock(root):
                stop_orphans(root, _echo_progress)
        except InfraInUse:
            continue


@infra.command("kill")
@click.argument("name")
@click.pass_obj
def infra_kill(infra_obj: object, name: str) -> None:
    """kill -9 process NAME (by its recorded PID)."""
    from bench.infra.manager import Infra

    assert isinstance(infra_obj, Infra)
    at = infra_obj.kill9(name)
    click.echo(f"killed {name} at {at:.3f}")


@infra.command("restart")
@click.argument("name")
@click.pass_obj
def infra_restart(infra_obj: object, name: str) -> None:
    """Start a killed process NAME again on the same data directories."""
    from bench.infra.manager import Infra

    assert isinstance(infra_obj, Infra)
    rec = infra_obj.restart(name)
    click.echo(f"restarted {rec.name} as pid {rec.pid}")


@infra.command("fetch")
def infra_fetch() -> None:
    """Resolve every broker runtime's jars from Maven Central into the cache (once), and build
    the JVM load worker."""
    from bench.engines.jvm import ensure_built
    from bench.infra.artifacts import cache_size_bytes, ensure_classpaths, pinned_version
    from bench.infra.java import find_java

    rt = find_java()
    click.echo(f"java: {rt.executable} ({rt.version})")
    started = time.monotonic()
    for cp in ensure_classpaths():
        how = f"resolved in {cp.resolve_seconds:.1f} s" if cp.resolve_seconds else "cached"
        click.echo(f"{cp.runtime} {pinned_version(cp.runtime)}: {len(cp.jars)} jars, {how}")
    click.echo(
        f"cache: {cache_size_bytes() / 2**20:.0f} MiB; "
        f"{time.monotonic() - started:.1f} s (runtimes resolved in parallel)"
    )
    built = time.monotonic()
    ensure_built(_echo_progress)
    click.echo(f"JVM worker: ready in {time.monotonic() - built:.1f} s")


@infra.command("smoke")
@click.option("--messages", type=int, default=1000, show_default=True)
@click.option(
    "--topology",
    type=click.Choice(["standalone", "cluster"]),
    default="standalone",
    show_default=True,
)
@click.option("--port-offset", type=int, default=0, show_default=True)
@click.pass_obj
def infra_smoke(infra_obj: object, messages: int, topology: str, port_offset: int) -> None:
    """Bring both brokers up fresh, send MESSAGES sequenced messages through each and consume
    them all, report, and bring everything down again (whatever happens)."""
    from bench.infra.manager import Infra
    from bench.infra.topology import BROKERS, InfraSettings, Topology

    assert isinstance(infra_obj, Infra)
    settings = InfraSettings(
        brokers=BROKERS, topology=cast("Topology", topology), port_offset=port_offset
    )
    try:
        timings = infra_obj.up(settings, fresh=True, progress=_echo_progress)
        for b in BROKERS:
            click.echo(f"{b}: up ({topology}) in {timings[b]['start_to_healthy_s']:.1f} s")
            for trip in infra_obj.check_health(b, messages=messages):
                rate = trip.sent / trip.seconds if trip.seconds else 0.0
                click.echo(
                    f"  round trip: sent {trip.sent}, acked {trip.acked}, "
                    f"received {trip.received} distinct, {trip.duplicates} duplicates, "
                    f"{trip.seconds:.1f} s ({rate:.0f} msg/s end to end)"
                )
    finally:
        stopped = infra_obj.down()
        click.echo(f"stopped {len(stopped)} process(es)")


# -- scenarios -------------------------------------------------------------------------------
@cli.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True))
def validate_cmd(files: tuple[str, ...]) -> None:
    """Check scenario FILES strictly; one line per file, the first problem named exactly."""
    from bench.errors import ConfigError
    from bench.scenarios.loader import load_scenario
    from bench.scenarios.steps import expand_steps

    bad = 0
    for f in files:
        try:
            sc = load_scenario(f)
            counts = ", ".join(
                f"{len(expand_steps(sc, name))} {name}" for name, _ in sc.profiles.defined()
            )
            click.echo(f"{f}: ok ({sc.kind}, {sc.topology}, steps: {counts})")
        except ConfigError as exc:
            bad += 1
            click.echo(f"bench: error: {exc}", err=True)
    if bad:
        raise SystemExit(2)


@cli.command("list")
@click.option(
    "--dir", "directory", default="scenarios", show_default=True, type=click.Path(file_okay=False)
)
def list_cmd(directory: str) -> None:
    """The scenario files in DIR, with a one-line description each."""
    from bench.scenarios.loader import discover

    for info in discover(directory):
        click.echo(f"{info.path!s:<40} {info.name:<28} {info.description}")


@cli.command("new")
@click.argument(
    "kind",
    type=click.Choice(["topic-growth", "send-frequency", "subscribe-frequency", "kill-9-recovery"]),
)
def new_cmd(kind: str) -> None:
    """Print a scenario file of KIND to start from: every key, its default and what it does."""
    from bench.scenarios.template import template

    click.echo(template(kind), nl=False)


@cli.command("run")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--broker",
    "brokers",
    default="pulsar,rocketmq",
    show_default=True,
    help="Comma-separated: pulsar, rocketmq.",
)
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True)
@click.option(
    "--out",
    "out_dir",
    default="reports/runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the run directory is written.",
)
@click.option(
    "--infra-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Broker data/log directory [default ~/.cache/bench/infra/run].",
)
@click.option("--port-offset", type=int, default=0, show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["python", "jvm"]),
    default=None,
    help="The load engine: python (the Python clients) or jvm (the brokers' official Java "
    "clients) [default: a profile's `engine`, else jvm].",
)
@click.option(
    "--only",
    "only_specs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Run only the steps whose parameter KEY is VALUE (e.g. restart_policy=supervised, "
    "path=proxy, step_id=...). Repeat: the same key gives either value, different keys all "
    "must match. A step that builds on earlier steps of its group brings them along.",
)
@click.option(
    "--targets",
    "targets_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Run on the brokers this targets file names (endpoints, TLS, credentials from the "
    "environment, fault commands) instead of starting them: no `bench infra`.",
)
@click.option(
    "--workers",
    "worker_addrs",
    default=None,
    metavar="HOST:PORT,...",
    help="Run the load on these `bench worker` servers (token: BENCH_WORKER_TOKEN) instead "
    "of local processes; shards are dealt over them in order.",
)
@click.option(
    "--k8s",
    "k8s_workers",
    type=int,
    default=None,
    metavar="N",
    help="Run the load on N worker pods (an Indexed Job in the current kubectl context); "
    "created before the run, deleted after it.",
)
@click.option("--k8s-image", default="bench:latest", show_default=True)
@click.option("--k8s-namespace", default="default", show_default=True)
def run_cmd(
    files: tuple[str, ...],
    engine: str | None,
    brokers: str,
    profile: str,
    out_dir: str,
    infra_dir: str | None,
    port_offset: int,
    only_specs: tuple[str, ...],
    targets_file: str | None = None,
    worker_addrs: str | None = None,
    k8s_workers: int | None = None,
    k8s_image: str = "bench:latest",
    k8s_namespace: str = "default",
) -> None:
    """Run scenario FILES on real brokers and write the run directory.

    Each finished step is written at once; Ctrl-C stops the load and the brokers and leaves a
    partial run. Exit status: 0 clean, 1 finished with failed steps or send errors, 130
    interrupted, 2 bad input.
    """
    from bench.results.clean import ramp_stopped, run_summary
    from bench.results.store import load_run
    from bench.runner.api import run_scenarios
    from bench.runner.progress import Progress
    from bench.runner.summary import run_table
    from bench.scenarios.steps import parse_only

    names = [b.strip() for b in brokers.split(",") if b.strip()]
    addrs = [a.strip() for a in (worker_addrs or "").split(",") if a.strip()]
    if k8s_workers is not None and addrs:
        raise click.UsageError("--workers and --k8s: give one of them")
    # The live line is erased before anything else is printed, an error included.
    with (
        _k8s_workers(k8s_workers, targets_file, k8s_image, k8s_namespace) as pods,
        Progress() as progress,
    ):
        run_dir = run_scenarios(
            list(files),
            brokers=names,
            profile=profile,
            out_dir=out_dir,
            progress=progress,
            infra_root=infra_dir,
            port_offset=port_offset,
            only=parse_only(only_specs),
            engine=cast("Literal['python', 'jvm'] | None", engine),
            targets=targets_file,
            workers=pods or addrs or None,
        )
    run = load_run(run_dir)
    lines, unclean = run_summary(run)  # bench.results.clean: one rule; then bench check
    click.echo(run_table(run.step_records))
    stopped = sum(ramp_stopped(r) for r in run.step_records)
    skipped = f", {stopped} skipped after their ramp saturated" if stopped else ""
    click.echo(f"run written to {run_dir} ({len(run.steps)} steps{skipped}, {unclean} not clean)")
    for line in lines:
        click.echo(f"  {line}")
    if unclean:
        raise SystemExit(1)


@contextlib.contextmanager
def _k8s_workers(
    n: int | None, targets_file: str | None, image: str, namespace: str
) -> Iterator[list[str]]:
    """Worker pods for ``bench run --k8s N`` (none without it), deleted afterwards."""
    if n is None:
        yield []
        return
    from bench.k8s.deploy import workers_on_kubernetes
    from bench.k8s.manifests import deployment_for
    from bench.targets.loader import load_targets

    targets = load_targets(targets_file) if targets_file else None
    dep = deployment_for(targets, workers=n, image=image, namespace=namespace)
    with workers_on_kubernetes(dep, _echo_progress) as addrs:
        yield addrs


# -- remote workers and Kubernetes ------------------------------------------------------------
@cli.command("worker")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Where to accept runners.")
@click.option(
    "--log",
    "log_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Append the workers' own logs here [default: this process's stderr].",
)
def worker_cmd(listen: str, log_file: str | None) -> None:
    """Serve the worker protocol over TCP: each connection from `bench run --workers` gets a
    worker process of its own. The runner must present the token in BENCH_WORKER_TOKEN."""
    import signal

    from bench.engines.remote import serve

    log = open(log_file, "ab") if log_file else None  # noqa: SIM115 (closed below)
    server = serve(listen, log_stream=log)

    def stop(signum: int, frame: object) -> None:
        server.close()

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"bench worker listening on {server.address}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if log is not None:
            log.close()


@cli.group("k8s")
def k8s_group() -> None:
    """Kubernetes manifests for the load workers (needs the `k8s` extra)."""


@k8s_group.command("render")
@click.option("--targets", "targets_file", default=None, type=click.Path(dir_okay=False))
@click.option("--workers", type=int, required=True, help="Worker pods (shards).")
@click.option("--image", default="bench:latest", show_default=True)
@click.option("--namespace", default="default", show_default=True)
@click.option("--secret", default="bench-secrets", show_default=True)
@click.option("--cpu", default="2", show_default=True)
@click.option("--memory", default="2Gi", show_default=True)
@click.option("-o", "--output", default="-", type=click.Path(dir_okay=False, allow_dash=True))
def k8s_render(
    targets_file: str | None,
    workers: int,
    image: str,
    namespace: str,
    secret: str,
    cpu: str,
    memory: str,
    output: str,
) -> None:
    """Write the workers' headless Service and Indexed Job (one pod a shard) as YAML. The
    token and the targets' credentials come from Secret SECRET, one key per variable."""
    from bench.k8s.manifests import build, deployment_for, to_yaml
    from bench.targets.loader import load_targets

    targets = load_targets(targets_file) if targets_file else None
    dep = deployment_for(
        targets,
        workers=workers,
        image=image,
        namespace=namespace,
        secret=secret,
        cpu=cpu,
        memory=memory,
    )
    text = to_yaml(build(dep))
    if output == "-":
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)
        click.echo(f"wrote {output}: service and indexed job {dep.name}, {workers} pod(s)")


def _add_commands() -> None:
    """Commands that live beside the code they drive."""
    from bench.report.commands import compare_cmd, nightly_cmd, report_cmd
    from bench.results.check import check_cmd
    from bench.runner.calibrate import calibrate_cmd

    for command in (report_cmd, compare_cmd, nightly_cmd, calibrate_cmd, check_cmd):
        cli.add_command(command)


_add_commands()


def main() -> None:
    """Entry point: run the CLI, turning a BenchError into one line and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("bench: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BenchError as exc:
        click.echo(f"bench: error: {exc}", err=True)
        sys.exit(exc.exit_code)
