"""The recommendation: which broker did better on each of the seed's dimensions, and what the
data cannot decide.

Each dimension has criteria in priority order (:data:`CRITERIA`). A criterion reduces every
*repetition* (a stored run; for kill-9 also each repeated step) to one figure per broker and
compares the two sets with :func:`decide`:

- **Not decidable** when a broker has no data, when a contributing step failed or (outside
  kill-9, where send errors are what is measured) finished with send errors, when the
  repetitions are too noisy (difference within two standard errors while the coefficient of
  variation exceeds ``max_cv_pct``), or when there are too few repetitions to resolve the
  difference (one repetition each and a difference between ``tie_pct`` and ``single_run_pct``).
- **Tie** when the difference is under ``tie_pct`` (or within noise that is itself small).
- **Better** otherwise; with one repetition only when the difference is at least
  ``single_run_pct``, and the verdict then says the spread was not measured.
- Loss and non-recovery are correctness, not noise: a broker that lost an acknowledged message
  (or whose clients did not recover) when the other did not loses that criterion outright.

A dimension is decided by its first criterion that is not a tie; if that criterion is not
decidable, the dimension is not decidable (a lower-priority figure does not overrule an
uncertain higher one). The overall recommendation adds each decided dimension's weight
(:class:`Settings`, loadable from a YAML/JSON file) to its winner, and says whether the
undecided dimensions carry enough weight to change the outcome.

Curve features are found the same way for the charts and the criteria:

- **Knee** (:func:`find_knee`): the last topic count at which publish TPS is still at least
  ``100 - knee_drop_pct`` % of the best TPS seen at that count or below. Past it TPS has fallen
  by more than ``knee_drop_pct`` % (default 10 %). No such fall: no knee within the range tested.
- **Saturation** (:func:`find_saturation`): the first offered rate at which the achieved publish
  rate is below ``saturation_fraction`` (default 0.9) of the offered rate, or that the runner
  flagged ``saturated``; the broker's limit is the highest achieved publish TPS.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import pandas as pd

from bench.errors import ConfigError
from bench.results import clean, frames
from bench.results.noise import beyond_noise
from bench.yamlio import MAX_BYTES, load_bounded

DIMENSIONS: dict[str, str] = {
    "topic_growth": "Topic growth",
    "send_frequency": "Send frequency",
    "subscribe_frequency": "Subscribe frequency",
    "recovery": "Recovery and loss",
}
DIMENSION_KIND: dict[str, str] = {
    "topic_growth": "topic-growth",
    "send_frequency": "send-frequency",
    "subscribe_frequency": "subscribe-frequency",
    "recovery": "kill-9-recovery",
}
BROKER_TITLES: dict[str, str] = {"pulsar": "Pulsar", "rocketmq": "RocketMQ"}
Outcome = Literal["better", "tie", "undecided"]


def title(broker: str) -> str:
    """A broker's display name."""
    return BROKER_TITLES.get(broker, broker)


# -- settings -----------------------------------------------------------------------------------


@dataclass
class Settings:
    """Weights per dimension and the thresholds of :func:`decide` (see the module docstring)."""

    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(DIMENSIONS, 1.0))
    tie_pct: float = 5.0
    single_run_pct: float = 25.0
    max_cv_pct: float = 10.0
    knee_drop_pct: float = 10.0
    saturation_fraction: float = 0.9
    source: str = "defaults"


_THRESHOLD_KEYS = (
    "tie_pct",
    "single_run_pct",
    "max_cv_pct",
    "knee_drop_pct",
    "saturation_fraction",
)


def load_settings(path: str | Path | None) -> Settings:
    """Read weights (and optionally thresholds) from a YAML or JSON file.

    The file is a mapping: ``weights: {topic_growth: 2, send_frequency: 1,
    subscribe_frequency: 1, recovery: 3}`` plus any of ``tie_pct``, ``single_run_pct``,
    ``max_cv_pct``, ``knee_drop_pct``, ``saturation_fraction``. Dimensions left out keep weight
    1. Unknown keys, negative weights and a total weight of 0 are :class:`ConfigError`s naming
    the file. ``None`` gives the defaults.
    """
    settings = Settings()
    if path is None:
        return settings
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{p}: larger than {MAX_BYTES:,} bytes; not a weights file")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the weights file ({exc.strerror})") from None
    data: Any
    try:
        # JSON is YAML, but json gives better messages for a .json file.
        data = json.loads(text) if p.suffix.lower() == ".json" else load_bounded(p, text)
    except ValueError as exc:
        raise ConfigError(f"{p}: not valid {p.suffix.lstrip('.') or 'YAML'} ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: must be a mapping with 'weights' and optional thresholds")
    unknown = [k for k in data if k not in ("weights", *_THRESHOLD_KEYS)]
    if unknown:
        raise ConfigError(
            f"{p}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"known: weights, {', '.join(_THRESHOLD_KEYS)}"
        )
    weights = data.get("weights", {})
    if not isinstance(weights, dict):
        raise ConfigError(f"{p}: weights must be a mapping of dimension to number")
    for dim, w in weights.items():
        if dim not in DIMENSIONS:
            raise ConfigError(
                f"{p}: weights: unknown dimension {dim!r}; known: {', '.join(DIMENSIONS)}"
            )
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{p}: weights: {dim} must be a number >= 0, not {w!r}")
        settings.weights[dim] = float(w)
    if sum(settings.weights.values()) <= 0:
        raise ConfigError(f"{p}: weights add up to 0; give at least one dimension a weight")
    for key in _THRESHOLD_KEYS:
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ConfigError(f"{p}: {key} must be a positive number, not {v!r}")
            if key == "saturation_fraction" and v > 1:
                raise ConfigError(f"{p}: saturation_fraction must be at most 1, not {v}")
            setattr(settings, key, float(v))
    settings.source = str(p)
    return settings


# -- curve features -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Knee:
    """The last point that held TPS (``x``, ``y``) and the first that fell (``drop_x``)."""

    x: float
    y: float
    drop_x: float
    drop_y: float


def find_knee(x: Sequence[float], y: Sequence[float | None], drop_pct: float = 10.0) -> Knee | None:
    """Return the knee of a TPS curve (see the module docstring), or None if TPS never falls.

    Points with a missing ``y`` are skipped; ``x`` need not be sorted.
    """
    pts = sorted((float(a), float(cast(float, b))) for a, b in zip(x, y, strict=True) if _num(b))
    best = -math.inf
    for i, (a, b) in enumerate(pts):
        floor = (1 - drop_pct / 100) * best
        # A fall counts only when TPS stays down: a later point back within drop_pct of the
        # best (a cold JVM's first steps, one slow step) is not a knee.
        if i > 0 and b < floor and all(later < floor for _, later in pts[i + 1 :]):
            px, py = pts[i - 1]
            return Knee(px, py, a, b)
        best = max(best, b)
    return None


@dataclass(frozen=True)
class Saturation:
    """Where the achieved rate stopped following the offered rate."""

    offered: float | None
    """The first offered rate not sustained (None: every offered rate was sustained)."""
    achieved: float | None
    max_achieved: float
    """The highest achieved publish TPS: the broker's limit as measured."""


def find_saturation(
    offered: Sequence[float],
    achieved: Sequence[float | None],
    flagged: Sequence[bool | None] | None = None,
    fraction: float = 0.9,
) -> Saturation | None:
    """Return the saturation point of an offered/achieved curve, or None without data."""
    flags = list(flagged) if flagged is not None else [None] * len(offered)
    pts = sorted(
        (float(o), float(cast(float, a)), f)
        for o, a, f in zip(offered, achieved, flags, strict=True)
        if _num(o) and _num(a)
    )
    if not pts:
        return None
    max_achieved = max(a for _, a, _ in pts)
    held = [f is not True and a >= fraction * o for o, a, f in pts]
    for i, (o, a, _) in enumerate(pts):
        # Saturated from here on: a higher offered rate sustained later (the first step on a
        # cold JVM, one slow step) means this one was not the limit.
        if not held[i] and not any(held[i + 1 :]):
            return Saturation(o, a, max_achieved)
    return Saturation(None, None, max_achieved)


def _num(v: Any) -> bool:
    return (
        v is not None
        and not isinstance(v, bool)
        and isinstance(v, int | float)
        and math.isfinite(float(v))
    )


# -- decisions ----------------------------------------------------------------------------------


@dataclass
class Figure:
    """One broker's values of a criterion, one per repetition, and where they came from."""

    broker: str
    values: list[float]
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    """Contributing steps that failed or had errors: the figure cannot be trusted."""
    bounds: list[str] = field(default_factory=list)
    """Per value: ``""`` a measurement, ``">="`` a lower bound, ``"<="`` an upper bound
    (empty: every value is a measurement)."""
    left_out: list[str] = field(default_factory=list)
    """Steps not used, and why (evidence shown with the verdict)."""

    @property
    def bound(self) -> str:
        """``">="`` or ``"<="`` when the mean is a bound (a mean of measurements and lower
        bounds is a lower bound), ``"?"`` when it mixes both kinds, else ``""``."""
        kinds = {b for b in self.bounds if b}
        return "?" if len(kinds) > 1 else (kinds.pop() if kinds else "")

    @property
    def mean(self) -> float:
        """The mean over repetitions."""
        return statistics.fmean(self.values)

    @property
    def cv_pct(self) -> float | None:
        """Coefficient of variation over repetitions in %, None with fewer than two."""
        if len(self.values) < 2:
            return None
        m = self.mean
        if m == 0:
            return 0.0 if statistics.stdev(self.values) == 0 else math.inf
        return 100 * statistics.stdev(self.values) / abs(m)


@dataclass
class Verdict:
    """The comparison of the two brokers on one criterion."""

    criterion: str
    direction: Literal["higher", "lower"]
    unit: str
    figures: dict[str, Figure]
    outcome: Outcome
    winner: str | None
    reason: str
    ratio: float | None = None
    """How many times better the winner's figure is (>= 1)."""
    caveat: str = ""
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:,.3g}", repr=False)

    def shown(self, broker: str) -> str:
        """The broker's figure as text (mean over repetitions, with n and CV)."""
        f = self.figures.get(broker)
        if f is None or not f.values:
            return "no data"
        text = {"": "", ">=": "≥ ", "<=": "≤ ", "?": "~ "}[f.bound] + self.fmt(f.mean)
        if len(f.values) > 1:
            cv = f.cv_pct
            text += f" (n={len(f.values)}, CV {cv:.0f}%)" if cv is not None else ""
        return text


def _fmt_ratio(r: float) -> str:
    return "infinitely" if math.isinf(r) else f"{r:.2f}x"


def decide(
    criterion: str,
    direction: Literal["higher", "lower"],
    a: Figure,
    b: Figure,
    settings: Settings,
    *,
    unit: str = "",
    fmt: Callable[[float], str] | None = None,
    zero_is_decisive: bool = False,
) -> Verdict:
    """Compare ``a`` and ``b`` on one criterion (rules in the module docstring)."""
    figures = {a.broker: a, b.broker: b}
    kw: dict[str, Any] = {"fmt": fmt} if fmt is not None else {}

    def verdict(outcome: Outcome, winner: str | None, reason: str, **extra: Any) -> Verdict:
        return Verdict(criterion, direction, unit, figures, outcome, winner, reason, **extra, **kw)

    for f in (a, b):
        if not f.values:
            listed = f.problems or f.left_out
            why = f": {'; '.join(listed[:3])}" if listed else ""
            return verdict("undecided", None, f"no {title(f.broker)} data for this figure{why}")
    problems = [f"{title(f.broker)}: {p}" for f in (a, b) for p in f.problems]
    if problems:
        return verdict(
            "undecided",
            None,
            "the figure comes from steps with errors or limited by the load generator: "
            + "; ".join(problems),
        )
    ma, mb = a.mean, b.mean
    better_a = ma > mb if direction == "higher" else ma < mb
    win, lose = (a, b) if better_a else (b, a)
    # A bound decides only when the truth it allows cannot reverse the order: the winner's
    # figure may not be "at least" (lower is better) and the loser's not "at most".
    worse_side, better_side = (">=", "<=") if direction == "lower" else ("<=", ">=")
    unsure = [f for f in (win, lose) if f.bound == "?"]
    if ma == mb or unsure or win.bound == worse_side or lose.bound == better_side:
        culprit = next(
            (f for f in (win, lose) if f.bound in ("?", worse_side if f is win else better_side)),
            None,
        )
        if culprit is not None:
            kind = {">=": "a lower bound", "<=": "an upper bound", "?": "a mix of bounds"}
            return verdict(
                "undecided",
                None,
                f"{title(culprit.broker)}'s figure is {kind[culprit.bound]} "
                f"({culprit.detail or 'see the steps'}): "
                "the true value may reverse the order",
            )
    hi, lo = max(abs(ma), abs(mb)), min(abs(ma), abs(mb))
    ratio = math.inf if lo == 0 else hi / lo
    if zero_is_decisive and (ma == 0) != (mb == 0):
        # A lost acknowledged message is a correctness failure; no amount of noise excuses it.
        return verdict(
            "better",
            win.broker,
            f"{title(lose.broker)} {lose.detail or 'failed this check'}; "
            f"{title(win.broker)} did not",
            ratio=ratio,
        )
    if hi == 0 or ma == mb:
        return verdict("tie", None, "identical figures")
    rel_pct = 100 * (hi - lo) / hi
    na, nb = len(a.values), len(b.values)
    # The one noise rule (bench.results.noise), measured from the larger figure so that the
    # verdict does not depend on which broker is named first.
    big, small = (a, b) if abs(ma) >= abs(mb) else (b, a)
    noise = beyond_noise(
        big.values, small.values, alpha=0.05, threshold_pct=settings.single_run_pct
    )
    one_rep = min(na, nb) < 2
    if noise.beyond:
        if rel_pct < settings.tie_pct:
            return verdict("tie", None, f"within {settings.tie_pct:g}% of each other")
        reason = (
            f"a {rel_pct:.0f}% difference, at least the {settings.single_run_pct:g}% "
            "a single repetition needs"
            if noise.method.startswith("threshold")
            else f"difference beyond the noise over {na} and {nb} repetitions ({noise.method})"
        )
        return verdict(
            "better",
            win.broker,
            reason,
            ratio=ratio,
            caveat="one repetition: the spread was not measured" if na < 2 and nb < 2 else "",
        )
    if not noise.method.startswith("threshold"):
        cvs = [c for c in (a.cv_pct, b.cv_pct) if c is not None]
        if cvs and max(cvs) > settings.max_cv_pct:
            shown = ", ".join(
                f"CV {f.cv_pct:.0f}% ({title(f.broker)})" for f in (a, b) if f.cv_pct is not None
            )
            return verdict(
                "undecided",
                None,
                f"too noisy: the difference is within the noise ({noise.method}) and the "
                f"repetitions vary by {shown}, above the {settings.max_cv_pct:g}% limit",
            )
        return verdict("tie", None, f"within the noise of the repetitions ({noise.method})")
    if rel_pct < settings.tie_pct:
        return verdict(
            "tie", None, f"within {settings.tie_pct:g}% of each other", caveat="one repetition"
        )
    assert one_rep
    return verdict(
        "undecided",
        None,
        f"too few repetitions: a {rel_pct:.0f}% difference from {min(na, nb)} repetition "
        f"cannot be told from noise (needs 2+ repetitions each, or a difference of "
        f"{settings.single_run_pct:g}%+)",
    )


# -- criteria -----------------------------------------------------------------------------------


def _us_ms(v: float) -> str:
    return f"{v / 1000:,.1f} ms"


def _rate(v: float) -> str:
    return f"{v:,.0f} msg/s"


def _secs(v: float) -> str:
    return f"{v:,.1f} s"


def _count(v: float) -> str:
    return f"{v:,.0f}"


def _col(df: pd.DataFrame, *names: str) -> pd.Series:
    """The first of ``names`` that is a column of ``df`` (as float), else all-NaN."""
    for n in names:
        if n in df.columns:
            return pd.to_numeric(df[n], errors="coerce")
    return pd.Series([math.nan] * len(df), index=df.index, dtype=float)


def _outage(df: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` of kill-9 steps; an unavailability window longer than its step observed
    counts as its lower bound (``unavailability_at_least_s``), not as missing: dropping it
    would flatter the broker that stayed down longest."""
    col = _col(df, metric)
    if metric == "unavailability_s":
        col = col.fillna(_col(df, "unavailability_at_least_s"))
    return col


def _problems(steps: pd.DataFrame, publish_side: bool = False) -> list[str]:
    """Steps whose figures cannot be trusted, by the one definition of a clean step
    (:mod:`bench.results.clean`); ``publish_side``: for a figure of sends, creation or lookups
    only."""
    why = clean.unclean(steps, publish_side=publish_side)
    return [f"{sid}: {w}" for sid, w in zip(steps["step_id"], why, strict=True) if w][:5]


def _repetitions(df: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    return list(df.groupby("run_id", sort=True))


def _topic_x(df: pd.DataFrame) -> pd.Series:
    """The topics that existed at each step (fewer than its target when creation broke off)."""
    target = _col(df, "topic_count").fillna(_col(df, "params.topic_count"))
    return _col(df, "topics_created").fillna(target)


DEFAULT_BUNDLES = 4.0
"""Pulsar's default ``defaultNumberOfNamespaceBundles``: topic-growth figures compare Pulsar at
this setting when it was measured (never at its best of several: RocketMQ has no such knob)."""


def _usable(df: pd.DataFrame, publish_side: bool) -> tuple[pd.DataFrame, list[str]]:
    """The clean steps of ``df`` (bench.results.clean) not excluded by a read rule, and one line
    per step left out, naming it and why."""
    why = clean.unclean(df, publish_side=publish_side)
    if "excluded" in df.columns:
        why = why.where(why.notna(), df["excluded"].where(df["excluded"].notna(), None))
    bad = why.notna() if len(df) else pd.Series([], dtype=bool)
    left = [f"{sid}: {w}" for sid, w in zip(df.loc[bad, "step_id"], why[bad], strict=True)]
    return df[~bad] if len(df) else df, left


def _equal_settings(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Pulsar's steps at one bundle setting (:data:`DEFAULT_BUNDLES` if measured, else the
    fewest), and the setting's name; other brokers' steps as they are."""
    bundles = _col(df, "pulsar_bundles").fillna(_col(df, "params.pulsar_bundles"))
    if not bundles.notna().any():
        return df, ""
    values = sorted(set(bundles.dropna()))
    pick = DEFAULT_BUNDLES if DEFAULT_BUNDLES in values else values[0]
    default = " (Pulsar's default)" if pick == DEFAULT_BUNDLES else ""
    return df[bundles == pick], f"{pick:g} bundles{default}"


def _target(df: pd.DataFrame) -> pd.Series:
    return _col(df, "topic_count").fillna(_col(df, "params.topic_count"))


def _stopped_at(rep: pd.DataFrame) -> float | None:
    """The topic count at which the broker refused further topics, if it did."""
    if "create_stopped" not in rep.columns:
        return None
    stopped = rep[rep["create_stopped"].map(lambda v: isinstance(v, str) and bool(v))]
    return float(_topic_x(stopped).min()) if len(stopped) else None


def _reach_figure(df: pd.DataFrame, broker: str, s: Settings) -> Figure:
    """Topics reached before the knee or the broker's refusal, per complete sweep."""
    df, setting = _equal_settings(df)
    ran = df[df["status"] != "skipped"]
    ok, left = _usable(ran, publish_side=True)
    largest = float(_target(ran).max()) if len(ran) else math.nan
    values: list[float] = []
    bounds: list[str] = []
    details: list[str] = []
    lacking = set()
    for (run_id, group), rep in ran.groupby(["run_id", "group"], sort=True):
        stop = _stopped_at(rep)
        mine = ok[(ok["run_id"] == run_id) & (ok["group"] == group)]
        knee = find_knee(list(_topic_x(mine)), list(_col(mine, "publish_tps")), s.knee_drop_pct)
        if "lacks" in rep.columns:
            lacking |= {x for v in rep["lacks"] if isinstance(v, list) for x in v}
        if knee is not None and (stop is None or knee.x < stop):
            values.append(knee.x)
            bounds.append("")
            details.append(f"knee at {knee.x:,.0f} topics")
        elif stop is not None:
            values.append(stop)
            bounds.append("")
            details.append(f"creation refused by the broker at {stop:,.0f} topics")
        elif float(_target(rep).max()) < largest:
            left.append(
                f"{run_id} {group}: the sweep stopped at {_topic_x(rep).max():,.0f} of "
                f"{largest:,.0f} topics (interrupted): not a repetition"
            )
        else:
            reached = float(_topic_x(rep).max())
            values.append(reached)
            bounds.append(">=")
            details.append(f"no knee up to {reached:,.0f} topics, the sweep's end")
    if "create_stopped" in lacking:
        left.append("runs lacking create_stopped: a refusal could not be read from them")
    detail = "; ".join(sorted(set(details))) + (f"; {setting}" if setting else "")
    return Figure(broker, values, detail, bounds=bounds, left_out=left)


def _at_common_max(
    frames_: dict[str, pd.DataFrame], x_of: Callable[[pd.DataFrame], pd.Series], metric: str
) -> tuple[float | None, dict[str, list[float]]]:
    """Each broker's per-repetition ``metric`` at the largest x both brokers measured it."""
    reached = []
    for df in frames_.values():
        ok = df[_col(df, metric).notna()]
        reached.append(set(x_of(ok).dropna()))
    common = set.intersection(*reached) if reached else set()
    if not common:
        return None, {b: [] for b in frames_}
    x_max = max(common)
    out: dict[str, list[float]] = {}
    for b, df in frames_.items():
        vals = [float(v) for v in _col(df[x_of(df) == x_max], metric).dropna()]
        out[b] = vals
    return x_max, out


def _figure_at_max(
    frames_: dict[str, pd.DataFrame],
    x_of: Callable[[pd.DataFrame], pd.Series],
    metric: str,
    label: str,
    publish_side: bool = False,
    settings_of: Callable[[pd.DataFrame], tuple[pd.DataFrame, str]] | None = None,
) -> tuple[Figure, Figure]:
    """Both brokers' ``metric`` at the largest x both measured, from their usable steps."""
    usable: dict[str, pd.DataFrame] = {}
    left: dict[str, list[str]] = {}
    setting: dict[str, str] = {}
    for b, df in frames_.items():
        df, setting[b] = settings_of(df) if settings_of else (df, "")
        usable[b], left[b] = _usable(df, publish_side)
    x_max, vals = _at_common_max(usable, x_of, metric)
    a, b = frames_
    detail = f"at {label} {x_max:,.6g}" if x_max is not None else "no common point"

    def fig(x: str) -> Figure:
        d = detail + (f", {setting[x]}" if setting[x] else "")
        near = [w for w in left[x] if x_max is None or f"={x_max:g}" in w or "topics=" not in w]
        return Figure(x, vals[x], d, left_out=near[:5])

    return fig(a), fig(b)


def _topic_growth(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    a, b = fr
    out = [
        decide(
            f"topics reached before the knee (TPS down {s.knee_drop_pct:g}%+) or the broker's "
            "refusal",
            "higher",
            _reach_figure(fr[a], a, s),
            _reach_figure(fr[b], b, s),
            s,
            unit="topics",
            fmt=_count,
        )
    ]
    for metric, name, direction, fmt in (
        ("lookup_latency_us.p99", "lookup latency p99 at the largest topic count", "lower", _us_ms),
        (
            "create_rate_per_s",
            "topic-creation rate at the largest topic count",
            "higher",
            lambda v: f"{v:,.0f} topics/s",
        ),
    ):
        figs = _figure_at_max(
            fr, _target, metric, "topics", publish_side=True, settings_of=_equal_settings
        )
        if metric == "create_rate_per_s":
            batches = {
                b: sorted(set(_col(df, "create_batch_size").fillna(1))) for b, df in fr.items()
            }
            if len({tuple(v) for v in batches.values()}) > 1:
                for f in figs:
                    f.problems.append(
                        f"created {'/'.join(f'{v:g}' for v in batches[f.broker])} topic(s) per "
                        "request, the other broker otherwise: the rates are not comparable"
                    )
        out.append(decide(name, direction, *figs, s, fmt=fmt))  # type: ignore[arg-type]
    return out


def is_client_bound(value: Any) -> bool:
    """A step's ``client_bound`` metric as read back from a frame (bool, numpy bool or NaN)."""
    return str(value) == "True"  # True and numpy.True_ alike; False, None and NaN are not


def _no_broker(step_id: str, broker: str) -> str:
    prefix = broker + "-"
    return step_id[len(prefix) :] if step_id.startswith(prefix) else step_id


def _offered(df: pd.DataFrame) -> pd.Series:
    return _col(df, "offered_rate_per_s").fillna(_col(df, "params.rate_per_s"))


def _bound_mask(df: pd.DataFrame) -> pd.Series:
    return (
        df["client_bound"].map(is_client_bound)
        if "client_bound" in df.columns
        else (pd.Series(False, index=df.index))
    )


def _saturated(df: pd.DataFrame, s: Settings) -> pd.Series:
    """Per step: at or past its curve's saturation point (:func:`find_saturation`, per run and
    send/connection mode), so a step on a cold JVM followed by a higher rate carried is not."""
    out = pd.Series(False, index=df.index)
    modes = pd.Series([str(k) for k in _mode_keys(df)], index=df.index)
    for _, g in df.groupby([df["run_id"], modes], sort=False):
        sat = find_saturation(
            list(_offered(g)), list(_col(g, "publish_tps")), None, s.saturation_fraction
        )
        if sat is not None and sat.offered is not None:
            out[g.index] = _offered(g) >= sat.offered
    return out


MODE_ORDER = ("async", "sync")
"""Where two send modes reach the same rate, the first listed is compared."""


def _mode_rank(mode: tuple[Any, Any]) -> tuple[int, int, str]:
    """Orders (send, connection) modes by how directly they load the broker: async before sync,
    a shared connection before one per batch."""
    send, conn = mode
    return (
        MODE_ORDER.index(send) if send in MODE_ORDER else len(MODE_ORDER),
        0 if conn == "shared" else 1,
        str(mode),
    )


def _mode_text(mode: tuple[Any, Any]) -> str:
    return f"send={mode[0]}, connections={mode[1]}"


def _no_common_mode(broker: str, modes: dict[str, set[tuple[Any, Any]]]) -> str:
    """Why ``broker``'s broker-bound maximum has no counterpart: the modes each broker was."""
    said = []
    for b, m in sorted(modes.items(), key=lambda bm: bm[0] != broker):
        listed = " or ".join(_mode_text(k) for k in sorted(m, key=_mode_rank))
        lead = f"{title(b)} saturated with our client below its limit" if b == broker else title(b)
        said.append(f"{lead} only with {listed}" if m else f"{title(b)} in no such step")
    return "; ".join(said) + ": no send mode over shared connections in which both were"


def _send_frequency(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    # ONEWAY is RocketMQ's alone and has no acknowledgement: comparing it would be unfair.
    common_modes = set.intersection(*(set(_mode_keys(df)) for df in fr.values()))
    usable: dict[str, pd.DataFrame] = {}
    left: dict[str, list[str]] = {}
    for broker, df in fr.items():
        mine = df[[m in common_modes for m in _mode_keys(df)]]
        usable[broker], left[broker] = _usable(mine[mine["status"] != "skipped"], True)
    # 1. The broker-bound maximum: the highest achieved rate of a step that saturated the
    # broker while our client did not limit it, over shared connections (a new connection per
    # batch measures connection set-up, not what the broker carries) and in one send mode for
    # both (a sync curve tops out at its senders' concurrency over the round trip).
    shared = {
        b: _param(ok, "connection_mode").fillna("shared") == "shared" for b, ok in usable.items()
    }
    sat = {b: ok[_saturated(ok, s) & ~_bound_mask(ok) & shared[b]] for b, ok in usable.items()}
    modes = {b: set(_mode_keys(df)) for b, df in sat.items()}
    both = set.intersection(*modes.values())
    mode = min(both, key=_mode_rank) if both else None
    figs: list[Figure] = []
    for broker, ok in usable.items():
        mine = sat[broker]
        mine = mine[pd.Series([k == mode for k in _mode_keys(mine)], index=mine.index, dtype=bool)]
        vals, details = [], []
        for _, rep in _repetitions(mine):
            tps = _col(rep, "publish_tps")
            i = tps.idxmax()
            vals.append(float(tps[i]))
            details.append(_no_broker(str(rep.loc[i, "step_id"]), broker))
        problems = []
        if modes[broker] and not vals:
            problems.append(_no_common_mode(broker, modes))
        elif not vals and len(ok):
            tps = _col(ok, "publish_tps")
            i = tps.idxmax()
            problems.append(
                f"no step saturated the broker with our client below its limit (highest "
                f"{tps[i]:,.0f} msg/s at {_no_broker(str(ok.loc[i, 'step_id']), broker)}"
                f"{', client-bound' if _bound_mask(ok)[i] else ', not saturated'})"
            )
        figs.append(
            Figure(
                broker, vals, "; ".join(sorted(set(details))), problems, left_out=left[broker][:5]
            )
        )
    out = [
        decide(
            "broker-bound maximum: highest achieved publish TPS where the broker, not our "
            "client, was the limit (shared connections, one send mode for both)",
            "higher",
            figs[0],
            figs[1],
            s,
            unit="msg/s",
            fmt=_rate,
        )
    ]

    # 2-3. Latency at the highest offered rate both brokers carried without our client bound.
    def carried(ok: pd.DataFrame) -> pd.DataFrame:
        return ok[
            (_col(ok, "publish_tps") >= s.saturation_fraction * _offered(ok)) & ~_bound_mask(ok)
        ]

    def key(r: dict[str, Any]) -> tuple[Any, Any, float]:
        return (
            r.get("params.send_mode"),
            r.get("params.connection_mode"),
            float(_offered(pd.DataFrame([r])).iloc[0]),
        )

    keys = [{key(r) for r in carried(ok).to_dict("records")} for ok in usable.values()]
    common = keys[0] & keys[1]
    point = (
        max(
            common,
            key=lambda k: (k[2], -MODE_ORDER.index(k[0]) if k[0] in MODE_ORDER else -9, str(k[1])),
        )
        if common
        else None
    )
    for metric, name in (
        ("publish_latency_us.p99", "publish latency p99"),
        ("e2e_latency_us.p99", "end-to-end latency p99"),
    ):
        pair = []
        for broker, ok in usable.items():
            if point is None:
                pair.append(
                    Figure(
                        broker,
                        [],
                        problems=[
                            "no offered rate both brokers carried with our client below its limit"
                        ],
                    )
                )
                continue
            c = carried(ok)
            g = c[[key(r) == point for r in c.to_dict("records")]]
            vals = [float(v) for v in _col(g, metric).dropna()]
            bounds = []
            if metric.startswith("e2e"):
                # Receipts after the window are not in the histogram: when the consumers fell
                # behind, the window's p99 is only a lower bound.
                behind = _col(g, "received") < (1 - 0.005) * _col(g, "acked") * _col(
                    g, "params.subscriptions_per_topic"
                ).fillna(1)
                bounds = [
                    ">=" if x else ""
                    for x, v in zip(behind, _col(g, metric), strict=True)
                    if not math.isnan(v)
                ]
            detail = f"at {point[2]:,.0f} msg/s offered, send={point[0]}, connections={point[1]}"
            pair.append(Figure(broker, vals, detail, bounds=bounds))
        out.append(
            decide(
                f"{name} at the highest offered rate both carried without our client bound",
                "lower",
                pair[0],
                pair[1],
                s,
                unit="us",
                fmt=_us_ms,
            )
        )
    return out


def _mode_keys(df: pd.DataFrame) -> list[tuple[Any, Any]]:
    return list(zip(_param(df, "send_mode"), _param(df, "connection_mode"), strict=True))


def _subscribe_frequency(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    def sweep(name: str) -> dict[str, pd.DataFrame]:
        return {b: df[_param(df, "sweep") == name] for b, df in fr.items()}

    fan, churn = sweep("fanout"), sweep("churn")

    def fanout_x(df: pd.DataFrame) -> pd.Series:
        return _col(df, "fanout", "params.fanout")

    def churn_x(df: pd.DataFrame) -> pd.Series:
        return _col(df, "churn_per_s", "params.churn_per_s")

    out = []
    for frs, x_of, metric, name, direction, fmt in (
        (
            churn,
            churn_x,
            "subscribe_latency_us.p99",
            "subscribe latency p99 at the highest churn",
            "lower",
            _us_ms,
        ),
        (
            churn,
            churn_x,
            "first_message_latency_us.p99",
            "time to first message p99 at the highest churn",
            "lower",
            _us_ms,
        ),
        (
            fan,
            fanout_x,
            "delivered_share",
            "delivered share (consumed / published x fan-out) at the largest fan-out",
            "higher",
            lambda v: f"{100 * v:.1f}%",
        ),
    ):
        if metric == "delivered_share":
            frs = {
                b: df.assign(
                    delivered_share=_col(df, "consume_tps")
                    / (_col(df, "publish_tps") * fanout_x(df))
                )
                for b, df in frs.items()
            }
        figs = _figure_at_max(
            frs, x_of, metric, "fan-out" if frs is not churn else "churn/s", publish_side=True
        )
        if metric == "delivered_share":
            for f, df in zip(figs, frs.values(), strict=True):
                at = df[x_of(df) == (x_of(df).max())]
                cb = [str(r) for r in at.loc[_bound_mask(at), "step_id"]]
                if cb:
                    f.problems.append(
                        f"{', '.join(cb)} client-bound: our consumers may be the limit"
                    )
        out.append(decide(name, direction, *figs, s, fmt=fmt))  # type: ignore[arg-type]
    return out


def _param(df: pd.DataFrame, name: str) -> pd.Series:
    """The step parameter ``name`` (``params.<name>``, else the metric of that name)."""
    for col in (f"params.{name}", name):
        if col in df.columns:
            return df[col]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _recovery(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    # Standalone and cluster, and each path, are separate figures: the only broker dying and one
    # of two dying are different events. Restart policies are pooled only for the counts
    # (loss, self-recovery); outages are compared per policy.
    def keys(df: pd.DataFrame, with_policy: bool) -> list[tuple[Any, ...]]:
        cols = [df["topology"], _param(df, "path")] + (
            [_param(df, "restart_policy")] if with_policy else []
        )
        return list(zip(*cols, strict=True))

    def label(k: tuple[Any, ...]) -> str:
        return "/".join(str(x) for x in k)

    def not_recovered(df: pd.DataFrame) -> pd.Series:
        v = _param(df, "clients_recovered")
        return v.map(lambda r: 1.0 if r is False else (0.0 if r is True else math.nan))

    out: list[Verdict] = []
    for with_policy in (False, True):
        common = set.intersection(*(set(keys(df, with_policy)) for df in fr.values()))
        for k in sorted(common, key=str):
            sel = {b: df[[x == k for x in keys(df, with_policy)]] for b, df in fr.items()}
            if not with_policy:
                lost, nr = [], []
                for b, df in sel.items():
                    ran, left = _usable(df, publish_side=True)
                    undrained = frames.drain_unfinished(ran)
                    vals = [float(v) for v in _col(ran, "loss.lost").fillna(0)]
                    bounds = ["<=" if u else "" for u in undrained]
                    total = sum(vals)
                    n_b = int(undrained.sum())
                    detail = (
                        f"lost {'≤ ' if n_b else ''}{total:,.0f} over {len(vals)} step(s) at "
                        f"{label(k)}"
                        + (f" ({n_b} drain(s) unfinished: upper bounds)" if n_b else "")
                    )
                    lost.append(Figure(b, vals, detail, bounds=bounds, left_out=left[:5]))
                    col = not_recovered(ran).dropna()
                    nr.append(
                        Figure(
                            b,
                            [float(v) for v in col],
                            f"clients needed a restart in {int(col.sum())} of {len(col)} step(s) "
                            f"at {label(k)}",
                            left_out=left[:5],
                        )
                    )
                out.append(
                    decide(
                        f"acknowledged messages lost ({label(k)})",
                        "lower",
                        lost[0],
                        lost[1],
                        s,
                        fmt=_count,
                        zero_is_decisive=True,
                    )
                )
                out.append(
                    decide(
                        f"steps whose clients did not recover by themselves ({label(k)})",
                        "lower",
                        nr[0],
                        nr[1],
                        s,
                        fmt=lambda v: f"{100 * v:.0f}%",
                        zero_is_decisive=True,
                    )
                )
                continue
            outage = []
            for b, df in sel.items():
                ran, left = _usable(df, publish_side=True)
                exact, least = _col(ran, "unavailability_s"), _col(ran, "unavailability_at_least_s")
                vals = [
                    float(e if not math.isnan(e) else m)
                    for e, m in zip(exact, least, strict=True)
                    if not (math.isnan(e) and math.isnan(m))
                ]
                bounds = [
                    ("" if not math.isnan(e) else ">=")
                    for e, m in zip(exact, least, strict=True)
                    if not (math.isnan(e) and math.isnan(m))
                ]
                outage.append(
                    Figure(
                        b,
                        vals,
                        f"kill to first ack at {label(k)}",
                        bounds=bounds,
                        left_out=left[:5],
                    )
                )
            out.append(
                decide(
                    f"unavailability, kill to first ack ({label(k)})",
                    "lower",
                    outage[0],
                    outage[1],
                    s,
                    unit="s",
                    fmt=_secs,
                )
            )
    return out


CRITERIA: dict[str, Callable[[dict[str, pd.DataFrame], Settings], list[Verdict]]] = {
    "topic_growth": _topic_growth,
    "send_frequency": _send_frequency,
    "subscribe_frequency": _subscribe_frequency,
    "recovery": _recovery,
}


# -- the recommendation -------------------------------------------------------------------------


@dataclass
class DimensionVerdict:
    """The verdict on one dimension: outcome, winner, one sentence, and the criteria behind it."""

    dimension: str
    title: str
    weight: float
    outcome: Outcome
    winner: str | None
    text: str
    verdicts: list[Verdict]
    provisional: bool = False
    """Decided on figures of one repetition: the spread was not measured."""

    @property
    def deciding(self) -> Verdict | None:
        """The sub-verdict that decided the dimension (None when undecided or a tie)."""
        return next((v for v in self.verdicts if v.outcome == "better"), None)


@dataclass
class Recommendation:
    """Per-dimension verdicts and the weighted overall recommendation."""

    dimensions: list[DimensionVerdict]
    scores: dict[str, float]
    winner: str | None
    text: str
    cannot_decide: list[str]
    settings: Settings


def _dimension(
    dim: str, steps: pd.DataFrame, brokers: Sequence[str], s: Settings
) -> DimensionVerdict:
    name, w = DIMENSIONS[dim], s.weights.get(dim, 1.0)
    df = steps[steps["kind"] == DIMENSION_KIND[dim]] if len(steps) else steps
    present = [b for b in brokers if (df["broker"] == b).any()] if len(df) else []
    if len(present) < 2:
        missing = [title(b) for b in brokers if b not in present]
        why = (
            "no steps of this kind in the runs"
            if not present
            else f"no data for {', '.join(missing)}"
        )
        return DimensionVerdict(dim, name, w, "undecided", None, f"Cannot decide: {why}.", [])
    fr = {b: df[df["broker"] == b] for b in present[:2]}
    verdicts = CRITERIA[dim](fr, s)
    return _aggregate(dim, name, w, fr, verdicts)


def _aggregate(
    dim: str, name: str, w: float, fr: dict[str, pd.DataFrame], verdicts: list[Verdict]
) -> DimensionVerdict:
    """A dimension's verdict from its sub-verdicts (in priority order): the first decided one
    names the winner; sub-verdicts of higher priority left undecided, and decided ones that
    disagree, are named with it. Undecided only when no sub-verdict decides, with every
    sub-verdict's reason. Provisional when a deciding figure rests on one repetition."""
    decided = [v for v in verdicts if v.outcome == "better"]
    if not decided:
        if verdicts and all(v.outcome == "tie" for v in verdicts):
            return DimensionVerdict(
                dim,
                name,
                w,
                "tie",
                None,
                "A tie: no figure separates the brokers beyond the noise.",
                verdicts,
            )
        why = "; ".join(f"{v.criterion}: {v.reason}" for v in verdicts if v.outcome != "tie")
        return DimensionVerdict(dim, name, w, "undecided", None, f"Cannot decide: {why}.", verdicts)
    v = decided[0]
    assert v.winner is not None
    loser = next(b for b in fr if b != v.winner)
    ratio = f" ({_fmt_ratio(v.ratio)} {v.direction})" if v.ratio else ""
    text = (
        f"{title(v.winner)} did better{ratio}: {v.criterion} {v.shown(v.winner)} vs "
        f"{v.shown(loser)} for {title(loser)} ({v.direction} is better; {v.reason})"
    )
    agree = [x for x in decided[1:] if x.winner == v.winner]
    disagree = [x for x in decided[1:] if x.winner != v.winner]
    if agree:
        text += f"; also better on {len(agree)} more figure(s)"
    if disagree:
        text += "; but " + "; ".join(
            f"{title(x.winner or '')} better on {x.criterion}" for x in disagree
        )
    provisional = any("one repetition" in x.caveat for x in [v, *agree])
    if provisional:
        text += "; provisional: one repetition, the spread was not measured"
    return DimensionVerdict(
        dim, name, w, "better", v.winner, text + ".", verdicts, provisional=provisional
    )


def recommend(
    steps: pd.DataFrame,
    brokers: Sequence[str] = ("pulsar", "rocketmq"),
    settings: Settings | None = None,
) -> Recommendation:
    """Build the recommendation from a steps frame of one or more runs (``run_id`` column)."""
    s = settings or Settings()
    dims = [_dimension(d, steps, brokers, s) for d in DIMENSIONS]
    scores = dict.fromkeys(brokers, 0.0)
    for d in dims:
        if d.winner is not None:
            scores[d.winner] = scores.get(d.winner, 0.0) + d.weight
    undecided = [d for d in dims if d.outcome == "undecided"]
    open_weight = sum(d.weight for d in undecided)
    total = sum(d.weight for d in dims)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    lead = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0.0)
    cannot = [f"{d.title}: {d.text.removeprefix('Cannot decide: ')}" for d in undecided]
    parts = [f"{title(b)} {v:g}" for b, v in ranked]
    if lead == 0:
        winner = None
        text = (
            f"No overall recommendation: the weighted score is level ({', '.join(parts)} of "
            f"{total:g})."
        )
    else:
        winner = ranked[0][0]
        text = (
            f"{title(winner)} is recommended on the weighted criteria: "
            f"{', '.join(parts)} of {total:g} (weights from {s.source})."
        )
        if open_weight >= lead:
            text = (
                f"Leaning {title(ranked[0][0])} ({', '.join(parts)} of {total:g}), but not "
                f"settled: the undecided dimensions carry weight {open_weight:g}, enough to "
                "change the outcome."
            )
            winner = None
    return Recommendation(dims, scores, winner, text, cannot, s)
