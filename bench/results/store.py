"""The results store: one append-only, versioned directory per run.

:class:`RunWriter` creates the directory (refusing to reuse one), writes ``run.json`` at once
with status ``running``, and appends each finished step, per-second rows, events and
histograms as they come, fsyncing every write so a crash loses at most the step in flight.
:func:`load_run` reads a directory back into pandas frames (:class:`Run`). The layout and the
record shapes are in :mod:`bench.results.schema`.

Metadata never carries credentials: keys matching ``password|secret|token|credential|auth``
are removed at any depth (their paths are kept in ``metadata["redacted_keys"]``) and the
``user:password@`` part of URLs is masked, before anything touches the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pandas as pd

from bench.errors import RunInterrupted
from bench.results import frames
from bench.results.migrate import read_run
from bench.results.schema import (
    EVENTS_FILE,
    HISTOGRAMS_DIR,
    RESOURCES_FILE,
    RUN_FILE,
    RUN_STATUSES,
    SAFE_NAME,
    SCHEMA_VERSION,
    SERIES_FILE,
    STEPS_FILE,
    ResultsError,
    check_schema_version,
    validate_event,
    validate_series_row,
    validate_step,
)

DEFAULT_OUT_DIR = Path("reports/runs")
SECRET_KEY = re.compile(r"password|secret|token|credential|auth", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


# -- helpers ------------------------------------------------------------------------------------


def new_run_id(now: float | None = None) -> str:
    """Return ``YYYYMMDD-HHMMSS-<6 hex>`` (UTC), sortable by start time."""
    t = time.time() if now is None else now
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(t)) + "-" + secrets.token_hex(3)


def redact(value: Any, path: str = "", removed: list[str] | None = None) -> Any:
    """Return ``value`` with credential-like keys removed and URL passwords masked.

    ``removed`` (if given) collects the dotted paths of the keys taken out. Works on nested
    dicts and lists; other values pass through (strings get URL user-info masked).
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            where = f"{path}.{key}" if path else key
            if SECRET_KEY.search(key):
                if removed is not None:
                    removed.append(where)
                continue
            out[key] = redact(v, where, removed)
        return out
    if isinstance(value, list | tuple):
        return [redact(v, f"{path}[{i}]", removed) for i, v in enumerate(value)]
    if isinstance(value, str):
        return _URL_USERINFO.sub(r"\g<scheme>***@", value)
    return value


def _jsonable(value: Any) -> Any:
    """Make ``value`` JSON-clean: paths to str, sets to sorted lists, non-finite floats to None.

    JSON has no NaN; a non-finite figure means "not measured", which the contract spells None.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    raise ResultsError(f"cannot store a {type(value).__name__} ({value!r:.60}) as JSON")


def _dumps(value: Any) -> str:
    return json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename: readers see old or new."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# -- writer -------------------------------------------------------------------------------------


class RunWriter:
    """Writes one run directory. Use it as a context manager::

        with RunWriter.create("reports/runs", metadata) as run:
            run.write_step(record)
            ...
        # complete on a normal exit, partial on Ctrl-C / RunInterrupted, failed on a crash

    Every method validates what it is given against :mod:`bench.results.schema` and raises
    :class:`~bench.results.schema.ResultsError` on a mismatch (a bug in the caller).
    """

    def __init__(self, run_dir: Path, run_id: str, started_at: float, metadata: dict[str, Any]):
        """Use :meth:`create`; this only binds an existing, freshly created directory."""
        self.run_dir = run_dir
        self.run_id = run_id
        self.started_at = started_at
        self.metadata = metadata
        self.status = "running"
        self._steps: set[tuple[str, str]] = set()

    @classmethod
    def create(
        cls,
        out_dir: str | Path,
        metadata: Mapping[str, Any],
        *,
        run_id: str | None = None,
        now: float | None = None,
    ) -> RunWriter:
        """Create ``out_dir/<run_id>/`` and its ``run.json`` (status ``running``).

        ``metadata`` is redacted (see the module docstring) and stored as given otherwise.
        Raises :class:`ResultsError` if the directory already exists: a run is never
        overwritten or appended to by another run.
        """
        started = time.time() if now is None else now
        rid = run_id or new_run_id(started)
        if not SAFE_NAME.match(rid):
            raise ResultsError(f"run id {rid!r} is not a safe directory name")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        run_dir = out / rid
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise ResultsError(
                f"{run_dir} already exists; refusing to overwrite a stored run "
                "(choose another output directory or run id)"
            ) from None
        (run_dir / HISTOGRAMS_DIR).mkdir()
        removed: list[str] = []
        clean = redact(dict(metadata), removed=removed)
        if removed:
            clean["redacted_keys"] = removed
        writer = cls(run_dir, rid, started, clean)
        writer._write_run_json(None)
        for name in (STEPS_FILE, SERIES_FILE, RESOURCES_FILE, EVENTS_FILE):
            (run_dir / name).touch()
        _fsync_dir(run_dir)
        return writer

    # -- run.json

    def _write_run_json(self, ended_at: float | None) -> None:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": ended_at,
            "metadata": self.metadata,
        }
        _write_atomic(self.run_dir / RUN_FILE, json.dumps(_jsonable(doc), indent=2) + "\n")

    def finish(self, status: str = "complete", *, now: float | None = None) -> None:
        """Mark the run ``complete``, ``partial`` or ``failed`` and stamp ``ended_at``."""
        if status not in RUN_STATUSES or status == "running":
            raise ResultsError(f"cannot finish a run as {status!r}")
        self._check_open()
        self.status = status
        self._write_run_json(time.time() if now is None else now)

    def _check_open(self) -> None:
        if self.status != "running":
            raise ResultsError(f"run {self.run_id} is already finished ({self.status})")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.status != "running":
            return
        if exc_type is None:
            self.finish("complete")
            return
        # Record why before marking: the event is the only trace of it in the directory.
        interrupted = issubclass(exc_type, KeyboardInterrupt | RunInterrupted)
        with contextlib.suppress(Exception):  # never mask the original exception
            self.event(
                "interrupted" if interrupted else "error",
                detail={"exception": exc_type.__name__, "message": str(exc)[:2000]},
            )
        with contextlib.suppress(Exception):
            self.finish("partial" if interrupted else "failed")

    # -- appends

    def _append(
        self, name: str, records: Iterable[Mapping[str, Any]], *, after_finish: bool = False
    ) -> int:
        if not after_finish:
            self._check_open()
        lines = [
            _dumps({"schema_version": SCHEMA_VERSION, "run_id": self.run_id, **r}) + "\n"
            for r in records
        ]
        if not lines:
            return 0
        with open(self.run_dir / name, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return len(lines)

    def write_step(self, record: Mapping[str, Any]) -> None:
        """Validate one finished step (:class:`~bench.results.schema.StepRecord`) and append it.

        Raises :class:`ResultsError` if it does not follow the contract or if a step with the
        same ``(scenario, step_id)`` was already written to this run. Non-finite floats are
        stored as None (not measured).
        """
        # NaN/inf (a mean of nothing) become None, "not measured", before validation.
        record = _jsonable(record)
        validate_step(record)
        key = (record["scenario"], record["step_id"])
        if key in self._steps:
            raise ResultsError(f"step {key[0]}/{key[1]} was already written to run {self.run_id}")
        self._append(STEPS_FILE, [record])
        self._steps.add(key)

    def write_series(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Validate and append per-second rows (:class:`~bench.results.schema.SeriesRow`)."""
        rows = [_jsonable(r) for r in rows]
        for row in rows:
            validate_series_row(row)
        return self._append(SERIES_FILE, rows)

    def write_resources(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append resource rows as :class:`bench.metrics.resources.ResourceSampler` gives them.

        A row needs ``name`` and a time (``t`` in epoch s, or ``ts_ns``; ``t`` is added from
        ``ts_ns``); it may add ``scenario``, ``step_id`` and ``broker``.
        """
        out: list[dict[str, Any]] = []
        for row in rows:
            r = dict(row)
            if "t" not in r:
                if not isinstance(r.get("ts_ns"), int):
                    raise ResultsError(f"resource row needs 't' or integer 'ts_ns': {r!r:.80}")
                r["t"] = r["ts_ns"] / 1e9
            if not isinstance(r.get("name"), str):
                raise ResultsError(f"resource row needs a 'name': {r!r:.80}")
            out.append(r)
        return self._append(RESOURCES_FILE, out)

    def event(
        self,
        kind: str,
        *,
        t: float | None = None,
        scenario: str | None = None,
        step_id: str | None = None,
        broker: str | None = None,
        **detail: Any,
    ) -> None:
        """Append an event (``kill``, ``restart``, ``error``, ...) at ``t`` (default now).

        Keyword arguments other than the named ones go into ``detail`` (redacted like
        metadata); ``detail=dict(...)`` is merged in as well, and ``detail="text"`` becomes
        ``{"message": "text"}``. Unlike the other writes, events may still be appended after
        :meth:`finish` (cleanup that happens after the run was marked): they add a line and
        never change ``run.json``.
        """
        nested = detail.pop("detail", None)
        if nested is not None and not isinstance(nested, Mapping):
            nested = {"message": str(nested)}
        body = {**(nested or {}), **detail}
        ev: dict[str, Any] = {"t": time.time() if t is None else t, "kind": kind}
        for key, value in (("scenario", scenario), ("step_id", step_id), ("broker", broker)):
            if value is not None:
                ev[key] = value
        ev["detail"] = redact(body)
        validate_event(ev)
        self._append(EVENTS_FILE, [ev], after_finish=True)

    def write_histograms(
        self, scenario: str, step_id: str, histograms: Mapping[str, str], *, broker: str = ""
    ) -> Path:
        """Write a step's encoded HdrHistograms (name -> base64 text) to their own file.

        The file is ``histograms/<scenario>/<step_id>.json``; both must be safe file names
        (:data:`~bench.results.schema.SAFE_NAME`), which the scenario model guarantees.
        """
        self._check_open()
        for label, name in (("scenario", scenario), ("step id", step_id)):
            if not SAFE_NAME.match(name):
                raise ResultsError(f"{label} {name!r} cannot be used as a histogram file name")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in histograms.items()):
            raise ResultsError("histograms must map names to encoded text")
        folder = self.run_dir / HISTOGRAMS_DIR / scenario
        folder.mkdir(exist_ok=True)
        path = folder / f"{step_id}.json"
        if path.exists():
            raise ResultsError(f"{path} already exists; histograms of a step are written once")
        doc = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "scenario": scenario,
            "step_id": step_id,
            "broker": broker,
            "histograms": dict(histograms),
        }
        _write_atomic(path, json.dumps(doc) + "\n")
        return path


# -- reader -------------------------------------------------------------------------------------


def _read_jsonl(path: Path, run_id: str, warnings: list[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of one ``.jsonl`` file, checking each line's version and run id.

    A torn last line (the process died mid-write) and a line that is not a JSON object (disk
    corruption) are skipped, each with a warning naming the file and line, so the rest of the
    run stays readable and the report says what it lacks. A line of another schema version or
    run raises: it would be misread, not just missing.
    """
    if not path.exists():
        raise ResultsError(f"{path}: missing; is this a complete run directory?")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines) and not line.endswith("\n"):
                warnings.append(
                    f"{path.name}:{n}: last line is incomplete (a crash mid-write); left out"
                )
            else:
                warnings.append(f"{path.name}:{n}: not JSON ({exc.msg}); line left out")
            continue
        if not isinstance(rec, dict):
            warnings.append(f"{path.name}:{n}: not a JSON object; line left out")
            continue
        check_schema_version(rec.pop("schema_version", None), f"{path}:{n}")
        if rec.pop("run_id", None) != run_id:
            raise ResultsError(f"{path}:{n}: line belongs to another run than {run_id}")
        yield rec


@dataclasses.dataclass
class Run:
    """A stored run, read back.

    ``meta`` is ``run.json`` (status, times, metadata); ``steps`` has one row per step with
    ``metrics`` flattened to top-level columns (``publish_tps``, ``publish_latency_us.p99``,
    ``errors_by_kind.Timeout``), ``params.*``, ``window.*`` and ``loss.*`` columns, plus
    ``run_id``; ``step_records`` keeps the records as the read rules
    (:mod:`bench.results.migrate`) give them, ``raw_step_records`` as written. ``warnings``
    lists what the reader had to tolerate (a torn last line, a run left ``running``).
    """

    run_dir: Path
    meta: dict[str, Any]
    step_records: list[dict[str, Any]]
    steps: pd.DataFrame
    series: pd.DataFrame
    resources: pd.DataFrame
    events: pd.DataFrame
    warnings: list[str]
    raw_step_records: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The records as stored, before :func:`bench.results.migrate.read_step`."""

    @property
    def run_id(self) -> str:
        """The run's id (its directory name when written by :class:`RunWriter`)."""
        return str(self.meta["run_id"])

    @property
    def status(self) -> str:
        """``running``, ``complete``, ``partial`` or ``failed``."""
        return str(self.meta["status"])

    @property
    def metadata(self) -> dict[str, Any]:
        """What makes the run comparable: versions, settings, host, scenarios, git revision."""
        md = self.meta.get("metadata")
        return md if isinstance(md, dict) else {}

    def histograms(self, scenario: str, step_id: str) -> dict[str, str]:
        """Return the step's encoded histograms by name (empty if none were written)."""
        if not (SAFE_NAME.match(scenario) and SAFE_NAME.match(step_id)):
            return {}
        path = self.run_dir / HISTOGRAMS_DIR / scenario / f"{step_id}.json"
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}: not JSON ({exc.msg})") from None
        check_schema_version(doc.get("schema_version"), str(path))
        hists = doc.get("histograms")
        if not isinstance(hists, dict):
            raise ResultsError(f"{path}: no 'histograms' object")
        return {str(k): str(v) for k, v in hists.items()}


def without_steps(
    run: Run, broker: str, scenario: str | None = None, step_glob: str | None = None
) -> Run:
    """``run`` without the steps (and their series, resources and events) of ``broker``, in
    ``scenario`` or in every scenario, and only those whose step id matches ``step_glob``
    (fnmatch, e.g. ``*restart=supervised*``) if given; a warning in the result says what was
    left out."""

    key_columns = ("broker", "scenario", "step_id")  # in the order dropped() takes them

    def dropped(broker_: Any, scenario_: Any, step_id: Any) -> bool:
        return (
            broker_ == broker
            and scenario in (None, scenario_)
            and (step_glob is None or fnmatch.fnmatchcase(str(step_id), step_glob))
        )

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        if df.empty or "broker" not in df.columns:
            return df
        if step_glob is not None and "step_id" not in df.columns:
            return df  # not per step: nothing in it belongs to the steps left out
        cols = [df[c] if c in df.columns else [None] * len(df) for c in key_columns]
        return df[[not dropped(*row) for row in zip(*cols, strict=True)]].reset_index(drop=True)

    records = [
        r
        for r in run.step_records
        if not dropped(r.get("broker"), r.get("scenario"), r.get("step_id"))
    ]
    left_out = len(run.step_records) - len(records)
    what = f"{broker}'s steps" + (f" of {scenario}" if scenario else "")
    if step_glob is not None:
        what += f" matching {step_glob}"
    return dataclasses.replace(
        run,
        step_records=records,
        raw_step_records=[
            r
            for r in run.raw_step_records
            if not dropped(r.get("broker"), r.get("scenario"), r.get("step_id"))
        ],
        steps=keep(run.steps),
        series=keep(run.series),
        resources=keep(run.resources),
        events=keep(run.events),
        warnings=[*run.warnings, f"{what} left out of this report ({left_out} steps, --exclude)"],
    )


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory written by :class:`RunWriter`.

    Raises :class:`ResultsError` naming the file when ``run.json`` is missing or malformed,
    when any file has a ``schema_version`` this build does not read, or when a line is
    corrupt (other than a torn last line).
    """
    path = Path(run_dir)
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise ResultsError(f"{run_file}: missing; {path} is not a run directory")
    try:
        meta = json.loads(run_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{run_file}: not JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise ResultsError(f"{run_file}: must hold a JSON object")
    check_schema_version(meta.get("schema_version"), str(run_file))
    for name in ("run_id", "status", "started_at"):
        if name not in meta:
            raise ResultsError(f"{run_file}: missing {name!r}")
    run_id = str(meta["run_id"])
    warnings: list[str] = []
    if meta["status"] == "running":
        warnings.append(
            f"run {run_id} is marked running: it is still going or it crashed without cleanup"
        )
    step_records: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    for rec in _read_jsonl(path / STEPS_FILE, run_id, warnings):
        key = (str(rec.get("scenario")), str(rec.get("step_id")))
        if key in seen:
            # Keep the later record: only a hand-edited or merged file can get here.
            warnings.append(f"{STEPS_FILE}: step {key[0]}/{key[1]} appears twice; the last kept")
            step_records[seen[key]] = rec
            continue
        seen[key] = len(step_records)
        step_records.append(rec)
    raw_records = step_records
    # Every reader sees a step as the read rules say (bench.results.migrate).
    step_records = read_run(raw_records, path)
    series = list(_read_jsonl(path / SERIES_FILE, run_id, warnings))
    resources = list(_read_jsonl(path / RESOURCES_FILE, run_id, warnings))
    events = list(_read_jsonl(path / EVENTS_FILE, run_id, warnings))
    return Run(
        run_dir=path,
        meta=meta,
        step_records=step_records,
        steps=frames.steps_frame(step_records, run_id),
        series=frames.series_frame(series, run_id),
        resources=frames.resources_frame(resources, run_id),
        events=frames.events_frame(events, run_id),
        warnings=warnings,
        raw_step_records=raw_records,
    )
