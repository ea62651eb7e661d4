"""``bench check``: the invariants a stored run must hold, one line per break.

Checked on the records as written (``Run.raw_step_records``) and the run's per-second series:

- **counters**: the client's sends over the whole step (every series phase) against the
  broker's own count of what it stored (``broker_messages_in``, same span; every kind that
  sends records it), within :data:`~bench.results.migrate.COUNTER_TOLERANCE`; and a rate figure
  the broker's count contradicts (ONEWAY ``publish_tps``). A step whose broker count is unknown
  (null: its run says why in a warning event) is not checked. Where the count cannot be exact
  the line says why (:func:`counter_problem`); the tolerance stays 0.5 % in every case;
- **series**: the measured phases' per-second ``sent``/``acked``/``received`` sum to the step's
  totals (within the same tolerance);
- **restart**: no sooner after the kill than a JVM can start
  (:data:`~bench.results.migrate.JVM_MIN_START_S`);
- **outage**: no longer than the load ran after the kill (else it is only a lower bound);
- **zeros**: no 0 where a value cannot be 0 (a JVM's GC pauses, 0 in every step of a run);
- **bounds**: no bound stored as a value (a loss from an unfinished drain that does not say so).

:func:`check_run` returns the problems; the report lists them and ``bench run`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench.results.migrate import (
    COUNTER_TOLERANCE,
    JVM_MIN_START_S,
    gc_never_read,
    outage_beyond_load,
    read_step,
)

PHASES_OF_KIND = {"kill-9-recovery": ("measure", "fault")}


@dataclass(frozen=True)
class Problem:
    """One broken invariant of one step."""

    run_id: str
    scenario: str
    step_id: str
    invariant: str
    text: str

    def line(self) -> str:
        """The problem as one line."""
        return f"{self.run_id} {self.scenario}/{self.step_id}: {self.invariant}: {self.text}"


def _num(v: Any) -> float | None:
    return None if isinstance(v, bool) or not isinstance(v, int | float) else float(v)


def _off(a: float, b: float) -> bool:
    return abs(a - b) > COUNTER_TOLERANCE * max(abs(a), abs(b), 1.0)


def counter_problem(
    stored: float,
    sent: float,
    acked: float,
    failed: float,
    *,
    oneway: bool = False,
    resets: float = 0,
    duplicated: float = 0,
    killed: bool = False,
) -> str | None:
    """What is wrong when the broker stored ``stored`` messages over a step whose client sent
    ``sent`` (``acked`` acknowledged, ``failed`` failed; series sums over every phase); None
    when the two agree within :data:`~bench.results.migrate.COUNTER_TOLERANCE`.

    Every acknowledged send was stored; a send that failed may or may not have been (it timed
    out after the broker stored it, or never reached it), so the broker's count must lie
    between ``acked`` and ``sent`` (equal when every send was acknowledged). ONEWAY has no
    acknowledgement: every send that did not fail should be stored. Beyond that, the line says
    what can make the counts differ without the run being wrong: a send stored twice (a client
    that retries by itself, a producer that resends on reconnect) is no problem when the
    consumers received at least as many duplicates (``duplicated``); a count stitched over
    ``resets`` counter resets, or of a step that ``killed`` a broker, is a lower bound (what the
    broker stored between its last reading and a reset is missing from it), so only a count
    above the sends is a problem then.
    """
    low = sent - failed if oneway else min(acked, sent)
    slack = COUNTER_TOLERANCE * max(stored, sent, 1.0)
    above = stored - sent > slack
    below = low - stored > COUNTER_TOLERANCE * max(stored, low, 1.0)
    if above and stored - sent <= duplicated + slack:
        # Explained by evidence: the consumers received at least as many duplicates as the
        # broker stored beyond the sends.
        above = False
    if below and (resets or killed) and not above:
        # A count stitched over a counter reset is a lower bound (the report shows it as one):
        # falling short of the client's count is what a bound does. So is any count of a step
        # that killed a broker: its counters die with it, and a topic's new owner starts its
        # own from 0, which a reading once a second need not see fall (it may already be past
        # the old value). The ledger, not the counter, gives that step's exact loss.
        below = False
    if not (above or below):
        return None
    detail = f" ({failed:,.0f} failed, {acked:,.0f} acknowledged)" if failed and not oneway else ""
    detail = f" ({failed:,.0f} failed)" if failed and oneway else detail
    text = f"client sent {sent:,.0f}{detail}, broker stored {stored:,.0f}"
    if above:
        text += (
            f": {stored - sent:,.0f} more than sent: a send stored twice and counted once (the "
            "RocketMQ client retries a failed send by itself; a Pulsar producer resends what "
            "was unacknowledged when it reconnects)"
        )
        if duplicated:
            text += f"; the consumers received {duplicated:,.0f} duplicates"
    elif oneway:
        text += (
            f": {low - stored:,.0f} ONEWAY sends that did not fail were never stored "
            "(no acknowledgement tells the client)"
        )
    else:
        text += f": {low - stored:,.0f} fewer than the client had acknowledged"
        if failed:
            text += " (a failed send may or may not be stored; an acknowledged one is)"
    return text


def check_run(run: Any) -> list[Problem]:
    """Every broken invariant of ``run`` (a :class:`bench.results.store.Run`)."""
    out: list[Problem] = []
    series = run.series
    raw = run.raw_step_records or run.step_records
    if gc_never_read(raw):
        n = sum(1 for r in raw if (r.get("metrics") or {}).get("gc_pause_ms") == 0)
        out.append(
            Problem(
                run.run_id,
                "*",
                "*",
                "zeros",
                f"gc_pause_ms 0 in all {n} steps: the GC log was not read",
            )
        )
    for rec in run.raw_step_records or run.step_records:
        if rec.get("status") == "skipped":
            continue
        m, sid, sc = rec.get("metrics") or {}, str(rec.get("step_id")), str(rec.get("scenario"))

        def add(invariant: str, text: str, sc: str = sc, sid: str = sid) -> None:
            out.append(Problem(run.run_id, sc, sid, invariant, text))

        rows = (
            series[(series["scenario"] == sc) & (series["step_id"] == sid)]
            if len(series)
            else series
        )
        stored = _num(m.get("broker_messages_in"))
        if stored is not None and len(rows):
            params = rec.get("params") or {}
            text = counter_problem(
                stored,
                float(rows["sent"].sum()),
                float(rows["acked"].sum()),
                float(rows["send_errors"].sum()),
                oneway="oneway" in (m.get("send_mode"), params.get("send_mode")),
                resets=_num(m.get("counter_resets")) or 0,
                duplicated=_num((rec.get("loss") or {}).get("duplicated")) or 0,
                killed=_num(m.get("killed_at")) is not None,
            )
            if text:
                add("counters", text)
        for note in read_step(rec, Path(run.run_dir)).get("notes", []):
            if "publish_tps" in note:
                add("counters", note)
        phases = PHASES_OF_KIND.get(str(rec.get("kind")), ("measure",))
        inside = rows[rows["phase"].isin(phases)] if len(rows) else rows
        if len(inside):
            for key in ("sent", "acked", "received"):
                total = _num(m.get(key))
                got = float(inside[key].sum())
                if total is not None and _off(got, total):
                    add(
                        "series",
                        f"{key}: per-second rows sum to {got:,.0f}, the step says {total:,.0f}",
                    )
        killed, restarted = _num(m.get("killed_at")), _num(m.get("restarted_at"))
        if killed is not None and restarted is not None and restarted - killed < JVM_MIN_START_S:
            add("restart", f"{restarted - killed:.2f} s after the kill, sooner than a JVM starts")
        ran = outage_beyond_load(rec)
        if ran is not None:
            add(
                "outage",
                f"{float(m['unavailability_s']):.1f} s, but the load ran {ran:.1f} s after the "
                "kill: a lower bound, not a value",
            )
        loss = rec.get("loss") or {}
        unmarked = "upper bound" not in str(rec.get("error") or "")
        if loss.get("lost") and m.get("drain_complete") is False and unmarked:
            add("bounds", f"lost {loss['lost']:,} from an unfinished drain, not marked a bound")
    return out


@click.command("check")
@click.argument(
    "run_dirs",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
def check_cmd(run_dirs: tuple[Path, ...]) -> None:
    """Check RUN_DIRS against the invariants a run must hold; one line per break.

    Exit status 0 when every run holds them, 1 otherwise."""
    from bench.results.store import load_run

    found = 0
    for d in run_dirs:
        problems = check_run(load_run(d))
        found += len(problems)
        for p in problems:
            click.echo(p.line())
    click.echo(f"{len(run_dirs)} run(s) checked: {found} broken invariant(s)")
    if found:
        raise SystemExit(1)
