"""Read rules: a stored step as it must be read, whatever build wrote it.

:func:`read_step` is applied by :func:`bench.results.store.load_run` to every step record, so
the report, ``bench compare``, the history and ``bench check`` all see the same figures. Each
rule changes a record only where its own run contradicts it or lacks a field that can be
derived, and says so in the record's ``notes`` (one line each); a field that cannot be derived
stays absent and ``lacks`` names it: it is never read as False or 0. A rule may set ``excluded``
to why a step's figures cannot be used at all (the verdicts leave it out and say so).

The rules, in the order applied:

1. **ONEWAY rate from the broker's count.** RocketMQ ONEWAY has no acknowledgement, so the
   achieved rate is what the broker stored (``broker_messages_in``) over the send time
   (``params.duration_s``, warm-up included). Steps written before the runner did so carry the
   consumers' receipts instead; when the two differ by more than 0.5 % the broker's count wins
   and ``saturated`` is recomputed against 0.9 x offered.
2. **create_stopped** (topic growth): derived from the step's error (``topic creation stopped at
   N of M topics: why``), or None when every topic was created; otherwise it is lacking.
3. **Subscribe summaries from the step's own histograms.** When the step's histogram file holds
   the measured window's ``subscribe`` / ``first_message`` histograms, the summaries are theirs
   (a summary over every phase counted the warm-up's subscriptions).
4. **gc_pause_ms 0 in every step of a run** (windows of 5 s or more): the GC log was not read
   (runs before the runner found the logs). They become None (not measured). Applied by
   :func:`read_run`, the one rule that needs the whole run.
5. **kill -9 restart sooner than a JVM can start** (:data:`JVM_MIN_START_S`): the recorded time
   is not when the broker was back; it becomes None (unknown) and the step's other figures
   stand.
6. **kill -9 outage longer than the load ran after the kill** (by more than
   :data:`OUTAGE_SLACK_S`): it was measured during the drain, so the outage is only known to be
   at least as long as the load ran after the kill (``unavailability_at_least_s``), never a
   value.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

JVM_MIN_START_S = 2.0
"""No broker JVM of ours is up and serving sooner than this after it was started."""
COUNTER_TOLERANCE = 0.005
"""Client counts and the broker's own counters must agree within this fraction."""
GC_MIN_WINDOW_S = 5.0
_STOPPED = re.compile(r"topic creation stopped at ([\d,]+) of ([\d,]+) topics: (.*)")
HISTOGRAM_SUMMARIES: dict[str, str] = {
    "subscribe_latency_us": "subscribe",
    "first_message_latency_us": "first_message",
}
"""Summary metric -> the histogram of the measured window it must agree with."""


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _note(rec: dict[str, Any], text: str) -> None:
    rec.setdefault("notes", []).append(text)


def _oneway_rate(rec: dict[str, Any], _: Any) -> None:
    m, p = rec["metrics"], rec.get("params") or {}
    if m.get("send_mode") != "oneway" and p.get("send_mode") != "oneway":
        return
    stored, secs, tps = (
        _num(m.get("broker_messages_in")),
        _num(p.get("duration_s")),
        _num(m.get("publish_tps")),
    )
    if not stored or not secs:
        return
    rate = stored / secs
    if tps is not None and abs(tps - rate) <= COUNTER_TOLERANCE * rate:
        return
    m["publish_tps"] = rate
    offered = _num(m.get("offered_rate_per_s")) or _num(p.get("rate_per_s"))
    if offered:
        m["saturated"] = rate < 0.9 * offered
    shown = "none" if tps is None else f"{tps:,.1f}"
    _note(
        rec,
        f"publish_tps {shown} -> {rate:,.0f} msg/s: the broker stored {stored:,.0f} messages in "
        f"the {secs:g} s of sending (ONEWAY has no acks; the run predates that rule)",
    )


def _create_stopped(rec: dict[str, Any], _: Any) -> None:
    if rec.get("kind") != "topic-growth" or rec.get("status") == "skipped":
        return
    m = rec["metrics"]
    if "create_stopped" in m:
        return
    found = _STOPPED.search(str(rec.get("error") or ""))
    created, target = _num(m.get("topics_created")), _num(m.get("topic_count"))
    if found:
        m["create_stopped"] = found.group(3).strip()
        _note(rec, "create_stopped derived from the step's error (the run predates the field)")
    elif created is not None and target is not None and created >= target:
        m["create_stopped"] = None  # every topic was created: nothing stopped
    else:
        rec.setdefault("lacks", []).append("create_stopped")


def _histogram_summaries(rec: dict[str, Any], hists: Callable[[], Mapping[str, str]]) -> None:
    if rec.get("kind") != "subscribe-frequency":
        return
    m = rec["metrics"]
    wanted = [k for k in HISTOGRAM_SUMMARIES if isinstance(m.get(k), dict)]
    if not wanted:
        return
    stored = hists()
    for key in wanted:
        encoded = stored.get(HISTOGRAM_SUMMARIES[key])
        if not encoded:
            continue
        from bench.metrics import histograms

        own = histograms.summary(histograms.decode(encoded))
        if own.get("count") == m[key].get("count") and own.get("p99") == m[key].get("p99"):
            continue
        before = m[key].get("p99")
        m[key] = {k: own.get(k) for k in m[key]}
        _note(
            rec,
            f"{key} from the step's own histogram of the measured window (p99 {before} -> "
            f"{own.get('p99')} us; the stored summary counted the warm-up)",
        )


def gc_never_read(records: Sequence[Mapping[str, Any]]) -> bool:
    """True when a run's GC pause figures say its GC logs were never read: every step that
    has the figure says 0, and at least one ran a window of :data:`GC_MIN_WINDOW_S` or more
    (a lightly loaded JVM may pause for nothing in one step, never in all of a run's)."""
    have = [
        r for r in records if isinstance((r.get("metrics") or {}).get("gc_pause_ms"), int | float)
    ]
    if not have or any(r["metrics"]["gc_pause_ms"] != 0 for r in have):
        return False
    return any(_span(r) >= GC_MIN_WINDOW_S for r in have)


def _span(rec: Mapping[str, Any]) -> float:
    w = rec.get("window") or {}
    return (_num(w.get("end")) or 0.0) - (_num(w.get("start")) or 0.0)


def read_run(
    records: Sequence[Mapping[str, Any]], run_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Every step of a run as it must be read: :func:`read_step` on each, then the rules that
    need the whole run (rule 4: GC pauses that were never read become None)."""
    out = [read_step(r, run_dir) for r in records]
    if gc_never_read(records):
        for rec in out:
            if isinstance(rec.get("metrics"), dict) and rec["metrics"].get("gc_pause_ms") == 0:
                rec["metrics"]["gc_pause_ms"] = None
                _note(
                    rec, "gc_pause_ms 0 -> not measured (0 in every step: the GC log was not read)"
                )
    return out


OUTAGE_SLACK_S = 1.0
"""How far an outage may end past the load's window: the load stops at the first one-second tick
after the probe's first acknowledgement, and the window ends on a tick (seen: -0.7 to +0.3 s)."""


def outage_beyond_load(rec: dict[str, Any]) -> float | None:
    """When a kill -9 step's outage outlasts the load after the kill by more than
    :data:`OUTAGE_SLACK_S` (it was measured during the drain): how long the load ran after the
    kill, the outage's lower bound; else None."""
    m = rec.get("metrics") or {}
    killed, outage = _num(m.get("killed_at")), _num(m.get("unavailability_s"))
    end = _num((rec.get("window") or {}).get("end"))
    if killed is None or outage is None or end is None:
        return None
    return max(0.0, end - killed) if outage > end - killed + OUTAGE_SLACK_S else None


def _kill_figures(rec: dict[str, Any], _: Any) -> None:
    if rec.get("kind") != "kill-9-recovery":
        return
    m = rec["metrics"]
    killed, restarted = _num(m.get("killed_at")), _num(m.get("restarted_at"))
    if killed is not None and restarted is not None and restarted - killed < JVM_MIN_START_S:
        # Not when the broker was back: unknown. The step's other figures (outage to the first
        # ack, loss, recovery) do not depend on it and stand.
        m["restarted_at"] = None
        _note(
            rec,
            f"restarted_at {restarted - killed:.2f} s after the kill -> unknown: sooner than a "
            f"broker JVM can start ({JVM_MIN_START_S:g} s), so not when the broker was back",
        )
    observed = outage_beyond_load(rec)
    if observed is not None:
        outage = float(m["unavailability_s"])
        m["unavailability_s"] = None
        m["unavailability_at_least_s"] = observed
        _note(
            rec,
            f"unavailability {outage:.1f} s -> at least {observed:.1f} s: longer than the load "
            "ran after the kill, so it was measured during the drain",
        )


RULES: tuple[Callable[[dict[str, Any], Any], None], ...] = (
    _oneway_rate,
    _create_stopped,
    _histogram_summaries,
    _kill_figures,
)


def read_step(record: Mapping[str, Any], run_dir: Path | None = None) -> dict[str, Any]:
    """Return ``record`` as it must be read (rules in the module docstring); the input is not
    changed. ``run_dir`` gives access to the step's histogram file."""
    rec = copy.deepcopy(dict(record))
    if not isinstance(rec.get("metrics"), dict):
        return rec

    def hists() -> Mapping[str, str]:
        if run_dir is None:
            return {}
        path = run_dir / "histograms" / str(rec.get("scenario")) / f"{rec.get('step_id')}.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        h = doc.get("histograms") if isinstance(doc, dict) else None
        return h if isinstance(h, dict) else {}

    for rule in RULES:
        rule(rec, hists)
    return rec
