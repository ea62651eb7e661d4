"""The HTML report: stored runs -> frames -> charts and a recommendation -> one HTML file.

:func:`render_report` reads only run directories (so any report can be regenerated), and
writes one self-contained file: charts are inline SVG, styles are inline, nothing is fetched
when it is opened. The template is rendered by jinja2 with autoescaping on, so every string that
comes from a file or a broker (scenario, topic and step names, error messages, metadata) is
escaped; only the SVG that matplotlib produced (which escapes its own text) is marked safe.

Several run directories may be given: their steps are pooled, and a sweep point measured in
several runs (or a repeated kill-9 step) counts as repetitions of that point, whose spread the
recommendation and the warnings use. Curves show the mean over repetitions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from bench.report.recommend import Recommendation, Settings, recommend, title
from bench.report.sections import kill_recovery, send_frequency, subscribe_frequency, topic_growth
from bench.report.sections.common import KIND_TITLES, Section, Table, _strip_broker, _value, fmt
from bench.results import clean, frames
from bench.results.check import check_run
from bench.results.frames import column
from bench.results.schema import HEADLINE_METRICS, ResultsError
from bench.results.store import Run, load_run, without_steps


@dataclass
class ReportWarning:
    """A warning: ``level`` is ``error`` or ``warn``; ``steps`` (folded away in the page) are
    the steps it is about, one line each."""

    level: str
    text: str
    steps: list[str] = field(default_factory=list)
    banner: bool = False
    """Shown above the recommendation too (a synthetic run must never pass for a measurement)."""


def _cause(why: str) -> str:
    """The cause of a step's not being clean, without its counts and details (the key that
    groups warnings): ``"12 send errors"`` -> ``"send errors"``."""
    head = why.split(":")[0] if not why.startswith("the drain") else why
    head = head.split(" (")[0]
    return re.sub(r"(?<![\w.])[\d,.]+\s+", "", head).strip()


# -- warnings and environment -------------------------------------------------------------------


def _profile_cell(metadata: dict[str, Any]) -> str:
    """The profile, and the ``--only`` selection when the run made part of it."""
    cell = str(metadata.get("profile", "-"))
    only = metadata.get("only") or {}
    if isinstance(only, dict) and only:
        cell += " (only " + ", ".join(f"{k}={'|'.join(map(str, v))}" for k, v in only.items()) + ")"
    return cell


def _git_cell(metadata: dict[str, Any]) -> str:
    """The commit the run was made from (12 digits), ``+dirty`` with local changes."""
    git = metadata.get("git")
    if not isinstance(git, dict) or not git.get("commit"):
        return "-"
    return str(git["commit"])[:12] + ("+dirty" if git.get("dirty") else "")


def _warnings(runs: Sequence[Run], steps: pd.DataFrame, s: Settings) -> list[ReportWarning]:
    out: list[ReportWarning] = []
    # One warning per cause, its runs or steps folded away in the page.
    grouped: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        if run.metadata.get("synthetic"):
            out.append(
                ReportWarning(
                    "error",
                    f"Run {run.run_id} is synthetic: {run.metadata['synthetic']}",
                    banner=True,
                )
            )
        if run.status != "complete":
            grouped.setdefault(
                ("error", "run(s) did not finish: their figures cover the steps they finished"), []
            ).append(f"{run.run_id} is {run.status}")
        for w in run.warnings:
            key = "exclusions (--exclude)" if "--exclude" in w else "run files read with care"
            grouped.setdefault(("warn", key), []).append(f"{run.run_id}: {w}")
        git = run.metadata.get("git")
        if isinstance(git, dict) and git.get("dirty"):
            grouped.setdefault(
                ("warn", "run(s) made from uncommitted code: their figures may match no commit"),
                [],
            ).append(f"{run.run_id}: {_git_cell(run.metadata)}")
        for r in run.step_records:
            if r.get("excluded"):
                grouped.setdefault(
                    ("error", "step(s) with impossible figures, left out of the verdicts"), []
                ).append(f"{run.run_id} {r.get('scenario')}/{r.get('step_id')}: {r['excluded']}")
    for (level, cause), lines in grouped.items():
        out.append(ReportWarning(level, f"{len(lines)} {cause}.", lines))
    # Figures read by a rule newer than their run (bench.results.migrate), one warning a rule.
    by_rule: dict[str, list[str]] = {}
    for run in runs:
        for r in run.step_records:
            for n in r.get("notes", []):
                by_rule.setdefault(n.split(" ")[0], []).append(
                    f"{run.run_id} {r.get('scenario')}/{r.get('step_id')}: {n}"
                )
    for rule, lines in sorted(by_rule.items()):
        out.append(
            ReportWarning(
                "warn",
                f"{len(lines)} step(s): {rule} read by a rule newer than their run "
                "(bench.results.migrate).",
                lines,
            )
        )
    if not len(steps):
        out.append(ReportWarning("error", "The runs hold no finished steps."))
        return out
    # One warning per cause (bench.results.clean), its steps folded away in the template.
    causes: dict[str, list[str]] = {}
    for r, why in zip(steps.to_dict("records"), clean.unclean(steps), strict=True):
        if why:
            causes.setdefault(_cause(why), []).append(
                f"{r['run_id']} {r['scenario']}/{r['step_id']}: {why}"
            )
    for cause, names in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        level = "warn" if cause.startswith(("the drain", "skipped")) else "error"
        out.append(ReportWarning(level, f"{len(names)} step(s) not clean: {cause}.", names))
    for broker in ("pulsar", "rocketmq"):
        if not (steps["broker"] == broker).any():
            out.append(
                ReportWarning("error", f"No {title(broker)} steps: nothing to compare with.")
            )
    unstable = unstable_figures(steps, s.max_cv_pct, limit=1000)
    if unstable:
        out.append(
            ReportWarning(
                "warn",
                f"{len(unstable)} figure(s) vary by more than {s.max_cv_pct:g}% (CV) over their "
                "repetitions: the verdicts treat them as noisy.",
                unstable,
            )
        )
    # What bench check found (bench.results.check), one warning per invariant.
    broken: dict[str, list[str]] = {}
    for run in runs:
        for p in check_run(run):
            broken.setdefault(p.invariant, []).append(p.line())
    for invariant, lines in sorted(broken.items()):
        out.append(
            ReportWarning(
                "warn",
                f"bench check: {len(lines)} step(s) break the {invariant} invariant (the report "
                "reads them by the rules in bench.results.migrate).",
                lines,
            )
        )
    return out


def unstable_figures(steps: pd.DataFrame, max_cv_pct: float, limit: int = 12) -> list[str]:
    """Headline figures whose repetitions vary by more than ``max_cv_pct`` (CV)."""
    found: list[tuple[float, str]] = []
    for (kind, scenario, broker, point), g in steps.groupby(
        ["kind", "scenario", "broker", "point"], sort=True
    ):
        if len(g) < 2:
            continue
        for metric in HEADLINE_METRICS.get(str(kind), {}):
            # Only clean steps (a loss from an unfinished drain is a bound, not a value).
            ok = clean.clean_mask(g, publish_side=not metric.startswith("loss."))
            v = column(g[ok], metric).dropna()
            if len(v) < 2 or v.mean() == 0:
                continue
            cv = 100 * float(v.std()) / abs(float(v.mean()))
            if cv > max_cv_pct:
                found.append(
                    (
                        cv,
                        f"Unstable: {scenario} {title(str(broker))} "
                        f"{_strip_broker(str(point), str(broker))} {metric}: CV {cv:.0f}% "
                        f"over {len(v)} repetitions (limit {max_cv_pct:g}%).",
                    )
                )
    found.sort(key=lambda t: -t[0])
    msgs = [m for _, m in found[:limit]]
    if len(found) > limit:
        msgs.append(f"... and {len(found) - limit} more unstable figures.")
    return msgs


def _environment(runs: Sequence[Run]) -> list[Table]:
    tables = []
    for run in runs:
        rows = [
            ["run id", run.run_id],
            ["status", run.status],
            ["started", _when(run.meta.get("started_at"))],
            ["ended", _when(run.meta.get("ended_at"))],
            ["directory", str(run.run_dir)],
        ]
        for k, v in frames.flatten(run.metadata).items():
            rows.append([k, _plain(v)])
        tables.append(Table(f"Run {run.run_id}", ["key", "value"], rows))
    return tables


def _plain(v: Any) -> str:
    if isinstance(v, list):
        return (
            ", ".join(_plain(x) for x in v)
            if all(not isinstance(x, dict) for x in v)
            else "; ".join(
                ", ".join(f"{k}={_plain(x2)}" for k, x2 in x.items())
                if isinstance(x, dict)
                else _plain(x)
                for x in v
            )
        )
    return fmt(v) if not isinstance(v, str) else v


def _when(t: Any) -> str:
    if not isinstance(t, int | float) or isinstance(t, bool):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _stored_cell(r: Mapping[str, Any], why: Mapping[tuple[str, str, str], str]) -> str:
    """The broker's count of what a step stored; stitched across restarts, or why unknown."""
    stored = _value(r, "broker_messages_in")
    if stored is None:
        reason = why.get((str(r["run_id"]), str(r["scenario"]), str(r["step_id"])))
        return f"unknown: {reason}" if reason else "-"
    resets = _value(r, "counter_resets")
    if resets:
        # What the broker stored between its last reading and a counter reset is missing: a
        # lower bound, shown as one.
        return f"at least {fmt(int(stored))} (stitched over {fmt(int(resets))} counter fall(s))"
    if _value(r, "killed_at") is not None:
        # A killed broker's counters die with it (and a topic's new owner starts from 0).
        return f"at least {fmt(int(stored))} (a broker was killed)"
    return fmt(int(stored))


def _steps_table(
    steps: pd.DataFrame, series: pd.DataFrame | None = None, events: pd.DataFrame | None = None
) -> Table:
    sent: dict[tuple[str, str, str], int] = {}
    if series is not None and len(series):
        sums = series.groupby(["run_id", "scenario", "step_id"])["sent"].sum()
        sent = {(str(a), str(b), str(c)): int(v) for (a, b, c), v in sums.items()}
    # Why a step's broker count is unknown: the runner's warning event for it.
    why: dict[tuple[str, str, str], str] = {}
    if events is not None and len(events):
        for e in events[events["kind"] == "warning"].to_dict("records"):
            d = e.get("detail")
            if isinstance(d, Mapping) and d.get("counter") == "broker_messages_in":
                key = (str(e["run_id"]), str(e["scenario"]), str(e["step_id"]))
                why[key] = str(d.get("message") or "")
    rows = []
    for r in steps.sort_values(["scenario", "broker", "index"]).to_dict("records"):
        key = (str(r["run_id"]), str(r["scenario"]), str(r["step_id"]))
        rows.append(
            [
                str(r["scenario"]),
                title(str(r["broker"])),
                str(r["step_id"]),
                str(r["status"]),
                fmt(_value(r, "publish_tps")),
                fmt(_value(r, "consume_tps")),
                fmt(_value(r, "publish_latency_us.p99")),
                fmt(_value(r, "send_errors")),
                fmt(sent.get(key)),
                _stored_cell(r, why),
                str(_value(r, "error") or ""),
            ]
        )
    return Table(
        "All steps",
        [
            "scenario",
            "broker",
            "step",
            "status",
            "publish TPS",
            "consume TPS",
            "publish p99 us",
            "send errors",
            "sent, whole step",
            "broker stored, whole step",
            "error",
        ],
        rows,
        note="Publish and consume TPS, p99 and send errors: the measured window. Sent (the "
        "client's count) and broker stored (the broker's own count on the step's topics): the "
        "whole step, from just before the load to the end of the drain, warm-up included, the "
        "span bench check compares them over.",
    )


# -- entry points -------------------------------------------------------------------------------


def environment() -> jinja2.Environment:
    """The jinja2 environment of the report templates, autoescaping every template."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bench.report", "templates"),
        # True, not select_autoescape(): the templates end in .j2, which select_autoescape's
        # extension match would miss, silently turning escaping off.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_context(
    runs: Sequence[Run],
    settings: Settings | None = None,
    regressions: Iterable[Any] = (),
) -> dict[str, Any]:
    """Everything the template shows, computed from ``runs``."""
    s = settings or Settings()
    steps = frames.concat([r.steps for r in runs])
    series = frames.concat([r.series for r in runs])
    events = frames.concat([r.events for r in runs])
    rec: Recommendation = recommend(steps, settings=s)
    sections: list[Section] = []
    if len(steps):
        for kind in KIND_TITLES:
            for scenario in sorted(steps.loc[steps["kind"] == kind, "scenario"].unique()):
                d = steps[(steps["kind"] == kind) & (steps["scenario"] == scenario)]
                name = str(scenario)
                if kind == "topic-growth":
                    sections.append(topic_growth.section(d, name, s))
                elif kind == "send-frequency":
                    sections.append(send_frequency.section(d, name, s))
                elif kind == "subscribe-frequency":
                    sections.append(subscribe_frequency.section(d, name, s))
                else:
                    sections.append(kill_recovery.section(d, series, events, name))
    for sec in sections:
        for c in sec.charts:
            c.svg = Markup(c.svg)  # matplotlib escaped the text inside; see charts.py
    return {
        "title": "RocketMQ vs Pulsar: benchmark report",
        "generated": _when(time.time()),
        "runs": runs,
        "run_rows": [
            [
                r.run_id,
                r.status,
                _when(r.meta.get("started_at")),
                _profile_cell(r.metadata),
                ", ".join(map(str, r.metadata.get("brokers", []) or [])),
                _git_cell(r.metadata),
                str(len(r.step_records)),
            ]
            for r in runs
        ],
        "recommendation": rec,
        "warnings": _warnings(runs, steps, s),
        "regressions": list(regressions),
        "sections": sections,
        "kind_titles": KIND_TITLES,
        "environment": _environment(runs),
        "steps_table": _steps_table(steps, series, events) if len(steps) else None,
        "title_of": title,
        "events": _events_table(events),
    }


def _events_table(events: pd.DataFrame) -> Table | None:
    if not len(events):
        return None
    rows = []
    for r in events.to_dict("records"):
        detail = r.get("detail")
        shown = (
            ", ".join(f"{k}={v}" for k, v in detail.items()) if isinstance(detail, Mapping) else ""
        )
        rows.append(
            [
                _when(r.get("t")),
                str(r["kind"]),
                str(_value(r, "scenario") or "-"),
                str(_value(r, "step_id") or "-"),
                str(_value(r, "broker") or "-"),
                shown,
            ]
        )
    return Table("Events", ["time", "kind", "scenario", "step", "broker", "detail"], rows)


def render_html(context: Mapping[str, Any], template: str = "report.html.j2") -> str:
    """Render ``template`` with ``context``."""
    return environment().get_template(template).render(**context)


def report_json(context: Mapping[str, Any]) -> dict[str, Any]:
    """The recommendation and every headline figure of a report's context, machine-readable
    (``bench report --json``): per dimension its verdict and every sub-verdict with both
    brokers' values, bounds, criterion and reason; the warnings by cause."""
    rec: Recommendation = context["recommendation"]

    def figure(v: Any) -> dict[str, Any]:
        return {
            b: {
                "values": f.values,
                "mean": f.mean if f.values else None,
                "bound": f.bound or None,
                "shown": v.shown(b),
                "detail": f.detail,
                "left_out": f.left_out,
                "problems": f.problems,
            }
            for b, f in v.figures.items()
        }

    return {
        "recommendation": {"winner": rec.winner, "text": rec.text, "scores": rec.scores},
        "dimensions": [
            {
                "dimension": d.dimension,
                "outcome": d.outcome,
                "winner": d.winner,
                "provisional": d.provisional,
                "text": d.text,
                "deciding": d.deciding.criterion if d.deciding else None,
                "verdicts": [
                    {
                        "criterion": v.criterion,
                        "direction": v.direction,
                        "unit": v.unit,
                        "outcome": v.outcome,
                        "winner": v.winner,
                        "reason": v.reason,
                        "caveat": v.caveat,
                        "figures": figure(v),
                    }
                    for v in d.verdicts
                ],
            }
            for d in rec.dimensions
        ],
        "warnings": [
            {"level": w.level, "text": w.text, "steps": w.steps} for w in context["warnings"]
        ],
        "runs": [r.run_id for r in context["runs"]],
    }


def render_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    settings: Settings | None = None,
    regressions: Iterable[Any] = (),
    exclude: Iterable[tuple[str, str, str | None, str | None]] = (),
    json_out: str | Path | None = None,
) -> Path:
    """Read ``run_dirs``, render the report and write it to ``out`` (parents created).

    ``exclude`` holds (run id, broker, scenario or None, step-id glob or None) whose steps the
    report leaves out, e.g. steps measured before a fix that a later run repeats; the report's
    warnings name them."""
    runs = [load_run(d) for d in run_dirs]
    wanted = list(exclude)
    unknown = [e for e in wanted if e[0] not in {r.run_id for r in runs}]
    if unknown:
        raise ResultsError(f"--exclude names run {unknown[0][0]}, which is not among RUN_DIRS")
    for run_id, broker, scenario, step_glob in wanted:
        runs = [
            without_steps(r, broker, scenario, step_glob) if r.run_id == run_id else r for r in runs
        ]
    context = build_context(runs, settings, regressions)
    html = render_html(context)
    path = Path(out)
    if json_out is not None:
        Path(json_out).write_text(json.dumps(report_json(context), indent=2) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
