"""The history of headline figures across runs, in one SQLite file (the nightly job's memory).

:meth:`History.append_run` adds one row per (scenario, broker, sweep point, headline metric) of
a run: the mean over the run's repetitions of that point (kill-9 repeats steps within a run),
with the run id, start time and git revision. Only usable steps contribute: ``ok``, and
``errors`` for kill-9 (send errors during the outage are what it measures); failed, skipped and
errored steps elsewhere would put broken figures into the baseline. Nor do the loss counts of
a step whose drain did not finish (``lost`` is then an upper bound, not a count).

Appending a run twice adds nothing; a synthetic run (``metadata.synthetic``) is refused unless
``allow_synthetic`` is given, so test fixtures never enter a real history. The file carries its
own schema version and is refused if it is one this build does not know.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.results.clean import is_clean
from bench.results.schema import HEADLINE_METRICS, ResultsError
from bench.results.store import Run

HISTORY_SCHEMA_VERSION = 1
DEFAULT_HISTORY = Path("reports/history.sqlite")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    git_rev TEXT,
    status TEXT NOT NULL,
    profile TEXT
);
CREATE TABLE IF NOT EXISTS figures (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    started_at REAL NOT NULL,
    git_rev TEXT,
    scenario TEXT NOT NULL,
    broker TEXT NOT NULL,
    step_key TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (run_id, scenario, broker, step_key, metric)
);
CREATE INDEX IF NOT EXISTS figures_by_key
    ON figures (scenario, broker, step_key, metric, started_at);
"""


@dataclass(frozen=True)
class Figure:
    """One headline figure of one run."""

    run_id: str
    started_at: float
    git_rev: str
    scenario: str
    broker: str
    step_key: str
    metric: str
    value: float
    n: int
    """Repetitions averaged into ``value``."""


def headline_figures(run: Run) -> list[Figure]:
    """The run's headline figures, one per (scenario, broker, sweep point, metric)."""
    steps = run.steps
    if not len(steps):
        return []
    values: dict[tuple[str, str, str, str], list[float]] = {}
    for rec in steps.to_dict("records"):
        for metric in HEADLINE_METRICS.get(str(rec["kind"]), {}):
            # One definition of clean (bench.results.clean): a loss needs a finished drain
            # (else it is a bound, which would read as a loss, or a fix, the next night).
            if not is_clean(rec, publish_side=not metric.startswith("loss.")):
                continue
            v = rec.get(metric)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            key = (str(rec["scenario"]), str(rec["broker"]), str(rec["point"]), metric)
            values.setdefault(key, []).append(float(v))
    started = float(run.meta.get("started_at") or 0.0)
    rev = str(run.metadata.get("git_revision") or "")
    return [
        Figure(run.run_id, started, rev, s, b, k, m, statistics.fmean(v), len(v))
        for (s, b, k, m), v in sorted(values.items())
    ]


class History:
    """A SQLite history file. Use as a context manager; the file is created on first use."""

    def __init__(self, path: str | Path = DEFAULT_HISTORY) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path)
            self._db.executescript(_DDL)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ResultsError(f"{self.path}: not a usable history database ({exc})") from None
        if row is None:
            with self._db:
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(HISTORY_SCHEMA_VERSION),)
                )
        elif row[0] != str(HISTORY_SCHEMA_VERSION):
            self._db.close()
            raise ResultsError(
                f"{self.path}: history schema_version {row[0]} is not understood; this build "
                f"reads {HISTORY_SCHEMA_VERSION}"
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def has_run(self, run_id: str) -> bool:
        """True if ``run_id`` was appended before."""
        q = "SELECT 1 FROM runs WHERE run_id = ?"
        return self._db.execute(q, (run_id,)).fetchone() is not None

    def append_run(self, run: Run, *, allow_synthetic: bool = False) -> int:
        """Add the run's headline figures; return how many (0 if it was already there)."""
        if run.metadata.get("synthetic") and not allow_synthetic:
            raise ResultsError(
                f"run {run.run_id} is synthetic (a test fixture); refusing to add it to the "
                f"history in {self.path}"
            )
        if self.has_run(run.run_id):
            return 0
        figures = headline_figures(run)
        with self._db:
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    float(run.meta.get("started_at") or 0.0),
                    str(run.metadata.get("git_revision") or ""),
                    run.status,
                    str(run.metadata.get("profile") or ""),
                ),
            )
            self._db.executemany(
                "INSERT INTO figures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.run_id,
                        f.started_at,
                        f.git_rev,
                        f.scenario,
                        f.broker,
                        f.step_key,
                        f.metric,
                        f.value,
                        f.n,
                    )
                    for f in figures
                ],
            )
        return len(figures)

    def add(self, figure: Figure) -> None:
        """Add one figure (and its run row if new): for imports and synthetic test histories."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, 'complete', '')",
                (figure.run_id, figure.started_at, figure.git_rev),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO figures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    figure.run_id,
                    figure.started_at,
                    figure.git_rev,
                    figure.scenario,
                    figure.broker,
                    figure.step_key,
                    figure.metric,
                    figure.value,
                    figure.n,
                ),
            )

    def series(
        self,
        scenario: str,
        broker: str,
        step_key: str,
        metric: str,
        *,
        before: float | None = None,
        exclude_run: str | None = None,
        limit: int | None = None,
    ) -> list[Figure]:
        """The figure's values over time, oldest first (the last ``limit`` if given)."""
        q = (
            "SELECT run_id, started_at, git_rev, scenario, broker, step_key, metric, value, n "
            "FROM figures WHERE scenario=? AND broker=? AND step_key=? AND metric=?"
        )
        args: list[object] = [scenario, broker, step_key, metric]
        if before is not None:
            q += " AND started_at < ?"
            args.append(before)
        if exclude_run is not None:
            q += " AND run_id != ?"
            args.append(exclude_run)
        q += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        got = [Figure(*row) for row in self._db.execute(q, args)]
        return got[::-1]

    def runs(self) -> Iterator[tuple[str, float, str]]:
        """(run_id, started_at, git_rev) of every run, oldest first."""
        yield from self._db.execute("SELECT run_id, started_at, git_rev FROM runs ORDER BY 2")
