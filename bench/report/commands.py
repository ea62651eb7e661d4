"""The ``bench report``, ``bench compare`` and ``bench nightly`` commands.

They are click commands for :mod:`bench.cli` to register (``cli.add_command(report_cmd)``...).
Expected failures raise :class:`~bench.errors.BenchError` subclasses, which ``bench.cli.main``
turns into one line and its ``exit_code``.

``bench nightly`` exit status: 0 clean; 3 (:class:`~bench.report.regress.RegressionFound`) a
figure regressed beyond its noise; 4 (:class:`UncleanRun`) no regression but the run is not
clean (not complete, or a step not clean by :mod:`bench.results.clean`). The report, the run
directory and the history are written in every case, so CI can upload them.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from bench.errors import BenchError, EnvironmentProblem

DEFAULT_REPORT = Path("reports/report.html")
DEFAULT_NIGHTLY_REPORT = Path("reports/nightly.html")


class UncleanRun(BenchError):
    """The nightly run finished, but with failed steps, send errors, or not complete."""

    exit_code = 4


@click.command("report")
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_REPORT,
    show_default=True,
    help="The HTML file to write.",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML/JSON file: weights per dimension (topic_growth, send_frequency, "
    "subscribe_frequency, recovery) and optional thresholds.",
)
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="RUN_ID:BROKER[:SCENARIO[:STEP_GLOB]]",
    help="Leave out that run's steps of BROKER (in SCENARIO only, and only the step ids "
    "matching STEP_GLOB, e.g. '*restart=supervised*', if given), e.g. steps a later run "
    "repeats after a fix. Repeatable; the report's warnings list what was left out.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the recommendation and every headline figure as JSON to this file "
    "('-' for standard output).",
)
def report_cmd(
    run_dirs: tuple[Path, ...],
    out: Path,
    weights: Path | None,
    excludes: tuple[str, ...],
    json_out: Path | None,
) -> None:
    """Render one self-contained HTML report from stored RUN_DIRS (repetitions pooled)."""
    from bench.report.html import render_report
    from bench.report.recommend import load_settings

    started = time.perf_counter()
    to_stdout = json_out is not None and str(json_out) == "-"
    tmp = out.with_name(out.name + ".json.tmp") if to_stdout else json_out
    path = render_report(
        run_dirs,
        out,
        load_settings(weights),
        exclude=[_parse_exclude(e) for e in excludes],
        json_out=tmp,
    )
    if to_stdout and tmp is not None:
        click.echo(tmp.read_text(), nl=False)
        tmp.unlink()
    msg = f"wrote {path} from {len(run_dirs)} run(s) in {time.perf_counter() - started:.1f} s"
    click.echo(msg, err=to_stdout)


def _parse_exclude(text: str) -> tuple[str, str, str | None, str | None]:
    from bench.results.schema import BROKERS

    parts = text.split(":")
    if len(parts) not in (2, 3, 4) or not all(parts):
        raise click.BadParameter(
            f"{text!r}: expected RUN_ID:BROKER, RUN_ID:BROKER:SCENARIO or "
            "RUN_ID:BROKER:SCENARIO:STEP_GLOB",
            param_hint="--exclude",
        )
    if parts[1] not in BROKERS:
        raise click.BadParameter(
            f"{text!r}: unknown broker {parts[1]!r} (one of {', '.join(BROKERS)})",
            param_hint="--exclude",
        )
    parts += [""] * (4 - len(parts))
    return parts[0], parts[1], parts[2] or None, parts[3] or None


@click.command("compare")
@click.argument("run_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also render the comparison to this HTML file.",
)
@click.option(
    "--threshold",
    "threshold_pct",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Relative change (%) that counts as beyond the noise when a figure has "
    "no repetitions on both sides.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Welch t-test level when both sides have repetitions.",
)
@click.option(
    "--all", "show_all", is_flag=True, help="List every figure, not only those beyond the noise."
)
def compare_cmd(
    run_a: Path,
    run_b: Path,
    html_out: Path | None,
    threshold_pct: float,
    alpha: float,
    show_all: bool,
) -> None:
    """Print how RUN_B's figures differ from RUN_A's, per scenario, broker, point and metric,
    and whether each difference is beyond the noise (and by which test)."""
    from bench.report.compare import compare_dirs, format_text, render_compare_html

    diffs, ra, rb = compare_dirs(run_a, run_b, threshold_pct=threshold_pct, alpha=alpha)
    click.echo(f"A: {ra[0].run_id} ({ra[0].status})  B: {rb[0].run_id} ({rb[0].status})")
    click.echo(format_text(diffs, only_beyond=not show_all))
    if html_out is not None:
        path = render_compare_html(
            diffs, ra, rb, html_out, threshold_pct=threshold_pct, alpha=alpha
        )
        click.echo(f"wrote {path}")


@click.command("nightly")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario file (repeatable) [default: every scenarios/*.yaml].",
)
@click.option(
    "--broker",
    "brokers",
    multiple=True,
    type=click.Choice(["pulsar", "rocketmq"]),
    help="Broker (repeatable) [default: both].",
)
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports/runs"),
    show_default=True,
)
@click.option(
    "--history",
    "history_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="BENCH_HISTORY",
    default=Path("reports/history.sqlite"),
    show_default=True,
    help="SQLite history file [env BENCH_HISTORY].",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_NIGHTLY_REPORT,
    show_default=True,
)
@click.option(
    "--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
)
@click.option(
    "--threshold",
    "threshold_pct",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Regression threshold (%).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Regression significance level.",
)
def nightly_cmd(
    scenarios: tuple[Path, ...],
    brokers: tuple[str, ...],
    profile: str,
    out_dir: Path,
    history_path: Path,
    report_path: Path,
    weights: Path | None,
    threshold_pct: float,
    alpha: float,
) -> None:
    """Run the scenarios, append to the history, write the report, flag regressions.

    Exit status: 0 clean, 3 regression beyond the noise, 4 run not clean.
    """
    from bench.report.html import render_report
    from bench.report.recommend import load_settings
    from bench.report.regress import RegressionFound, detect
    from bench.results import clean
    from bench.results.history import History
    from bench.results.store import load_run

    settings = load_settings(weights)  # fail on a bad weights file before hours of running
    paths = list(scenarios) or sorted(Path("scenarios").glob("*.yaml"))
    if not paths:
        raise EnvironmentProblem("no scenario files: pass --scenario or run from the project root")
    try:
        from bench.runner.api import run_scenarios
    except ImportError as exc:
        raise EnvironmentProblem(
            f"the runner entry point bench.runner.api.run_scenarios is not available ({exc})"
        ) from None
    run_dir = Path(
        run_scenarios(paths, brokers=list(brokers) or None, profile=profile, out_dir=out_dir)
    )
    run = load_run(run_dir)
    with History(history_path) as history:
        findings, unjudged = detect(history, run, threshold_pct=threshold_pct, alpha=alpha)
        added = history.append_run(run)
    report = render_report([run_dir], report_path, settings, regressions=findings)
    click.echo(f"run {run.run_id} ({run.status}): {run_dir}")
    click.echo(f"history {history_path}: +{added} figures; {unjudged} without enough history yet")
    click.echo(f"report {report}")
    for f in findings:
        click.echo(f"  {f.describe()}")
    regressions = [f for f in findings if f.verdict == "regression"]
    if regressions:
        raise RegressionFound(
            f"{len(regressions)} figure(s) regressed beyond their noise; see {report}"
        )
    unclean = [f"{r['scenario']}/{r['step_id']} {why}" for r, why in clean.run_unclean(run.steps)]
    if run.status != "complete" or unclean:
        raise UncleanRun(
            f"run {run.run_id} is {run.status} with {len(unclean)} unclean step(s) "
            f"({', '.join(unclean[:3])}{'...' if len(unclean) > 3 else ''}); see {report}"
        )
