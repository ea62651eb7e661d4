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
        if i > 0 and b < (1 - drop_pct / 100) * best:
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
    for o, a, f in pts:
        if f is True or a < fraction * o:
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
        text = self.fmt(f.mean)
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
            return verdict("undecided", None, f"no {title(f.broker)} data for this figure")
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


def _knee_figure(df: pd.DataFrame, broker: str, s: Settings) -> Figure:
    values: list[float] = []
    details: list[str] = []
    for _, rep in _repetitions(df):
        best: tuple[float, str] | None = None
        for group, g in rep.groupby("group", sort=True):
            x, y = _topic_x(g), _col(g, "publish_tps")
            if y.notna().sum() == 0:
                continue
            knee = find_knee(list(x), list(y), s.knee_drop_pct)
            held = knee.x if knee else float(x.max())
            label = f"knee at {knee.x:,.0f} topics" if knee else f"no knee up to {held:,.0f}"
            if best is None or held > best[0]:
                best = (held, f"{label} ({group})")
        if best is not None:
            values.append(best[0])
            details.append(best[1])
    return Figure(broker, values, "; ".join(sorted(set(details))), _problems(df, publish_side=True))


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
        vals: list[float] = []
        for _, rep in _repetitions(df[x_of(df) == x_max]):
            v = _col(rep, metric).dropna()
            if len(v):
                # Several groups (Pulsar bundle counts) at one x: take the broker's best.
                vals.append(
                    float(v.max() if metric.endswith("tps") or "rate" in metric else v.min())
                )
        out[b] = vals
    return x_max, out


def _figure_at_max(
    frames_: dict[str, pd.DataFrame],
    x_of: Callable[[pd.DataFrame], pd.Series],
    metric: str,
    label: str,
    publish_side: bool = False,
) -> tuple[Figure, Figure] | None:
    x_max, vals = _at_common_max(frames_, x_of, metric)
    a, b = frames_
    detail = f"at {label} {x_max:,.6g}" if x_max is not None else "no common point"
    return (
        Figure(a, vals[a], detail, _problems(frames_[a], publish_side)),
        Figure(b, vals[b], detail, _problems(frames_[b], publish_side)),
    )


def _topic_growth(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    a, b = fr
    out = [
        decide(
            f"largest topic count before TPS falls more than {s.knee_drop_pct:g}% (the knee)",
            "higher",
            _knee_figure(fr[a], a, s),
            _knee_figure(fr[b], b, s),
            s,
            unit="topics",
            fmt=_count,
        )
    ]
    for metric, name, direction, fmt in (
        ("publish_tps", "publish TPS at the largest topic count both reached", "higher", _rate),
        ("lookup_latency_us.p99", "lookup latency p99 at the largest topic count", "lower", _us_ms),
        (
            "create_rate_per_s",
            "topic-creation rate at the largest topic count",
            "higher",
            lambda v: f"{v:,.0f} topics/s",
        ),
    ):
        # Publish TPS, lookups and creation: figures of the publish side only.
        figs = _figure_at_max(fr, _topic_x, metric, "topics", publish_side=True)
        assert figs is not None
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


def _send_frequency(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    a, b = fr
    # ONEWAY is RocketMQ's alone and has no acknowledgement: comparing it would be unfair.
    common_modes = set.intersection(*(set(_mode_keys(df)) for df in fr.values()))
    figs: list[Figure] = []
    for broker, df in fr.items():
        mine = df[[m in common_modes for m in _mode_keys(df)]]
        vals, details, bound = [], [], []
        for _, rep in _repetitions(mine):
            tps = _col(rep, "publish_tps")
            if tps.notna().any():
                i = tps.idxmax()
                vals.append(float(tps[i]))
                details.append(_no_broker(str(rep.loc[i, "step_id"]), broker))
                if is_client_bound(rep.loc[i].get("client_bound")):
                    bound.append(
                        f"{rep.loc[i, 'step_id']} client-bound (our workers took the CPU the "
                        "broker needed: a floor, not the broker's limit)"
                    )
        problems = _problems(mine, publish_side=True) + bound
        figs.append(Figure(broker, vals, "; ".join(sorted(set(details))), problems))
    out = [
        decide(
            "highest achieved publish TPS (send modes both brokers have)",
            "higher",
            figs[0],
            figs[1],
            s,
            unit="msg/s",
            fmt=_rate,
        )
    ]
    # Publish p99 at the highest offered rate both brokers sustained, on the same sweep point.
    sustained: list[dict[str, pd.DataFrame]] = []
    for broker, df in fr.items():
        offered = _col(df, "offered_rate_per_s").fillna(_col(df, "params.rate_per_s"))
        ok = df[_col(df, "publish_tps") >= s.saturation_fraction * offered]
        sustained.append({_no_broker(str(sid), broker): g for sid, g in ok.groupby("step_id")})
    common = set(sustained[0]) & set(sustained[1])
    if common:

        def rate_of(key: str) -> float:
            g = sustained[0][key]
            return float(_col(g, "offered_rate_per_s").fillna(_col(g, "params.rate_per_s")).max())

        point = max(sorted(common), key=rate_of)
        pair = []
        for broker, by_point in zip(fr, sustained, strict=True):
            g = by_point[point]
            pair.append(
                Figure(
                    broker,
                    [float(v) for v in _col(g, "publish_latency_us.p99").dropna()],
                    f"at {point}",
                    _problems(g, publish_side=True),
                )
            )
        out.append(
            decide(
                "publish latency p99 at the highest offered rate both sustained",
                "lower",
                pair[0],
                pair[1],
                s,
                unit="us",
                fmt=_us_ms,
            )
        )
    else:
        out.append(
            decide(
                "publish latency p99 at the highest offered rate both sustained",
                "lower",
                Figure(a, []),
                Figure(b, []),
                s,
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
        (fan, fanout_x, "consume_tps", "consume TPS at the largest fan-out", "higher", _rate),
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
    ):
        figs = _figure_at_max(frs, x_of, metric, "fan-out" if frs is fan else "churn/s")
        assert figs is not None
        out.append(decide(name, direction, *figs, s, fmt=fmt))  # type: ignore[arg-type]
    return out


def _param(df: pd.DataFrame, name: str) -> pd.Series:
    """The step parameter ``name`` (``params.<name>``, else the metric of that name)."""
    for col in (f"params.{name}", name):
        if col in df.columns:
            return df[col]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def _recovery(fr: dict[str, pd.DataFrame], s: Settings) -> list[Verdict]:
    # Compare only the (path, restart policy) points both brokers ran, pooling repetitions:
    # pooling different points would count their difference as noise.
    def keys(df: pd.DataFrame) -> list[tuple[Any, Any]]:
        return list(zip(_param(df, "path"), _param(df, "restart_policy"), strict=True))

    common = set.intersection(*(set(keys(df)) for df in fr.values()))
    label = ", ".join(f"{p}/{r}" for p, r in sorted(common, key=str)) or "no common point"
    sel = {b: df[[k in common for k in keys(df)]] for b, df in fr.items()}

    def per_step(b: str, col: pd.Series, detail: str) -> Figure:
        # Send errors are what kill-9 measures; only failed steps make its figures unusable.
        return Figure(
            b, [float(v) for v in col.dropna()], detail, _problems(sel[b], publish_side=True)
        )

    def not_recovered(df: pd.DataFrame) -> pd.Series:
        v = _param(df, "clients_recovered")
        return v.map(lambda r: 1.0 if r is False else (0.0 if r is True else math.nan))

    a, b = fr
    lost = [per_step(x, _col(sel[x], "loss.lost"), "") for x in (a, b)]
    for x, f in zip((a, b), lost, strict=True):
        f.detail = f"lost {sum(f.values):,.0f} acknowledged message(s) over {label}"
        # A drain that did not finish leaves "lost" an upper bound, not a confirmed loss.
        undrained = sel[x][frames.drain_unfinished(sel[x])]
        f.problems += [
            f"{r.step_id}: drain unfinished, lost is an upper bound" for r in undrained.itertuples()
        ][:5]
    out = [
        decide(
            "acknowledged messages lost",
            "lower",
            lost[0],
            lost[1],
            s,
            fmt=_count,
            zero_is_decisive=True,
        )
    ]
    nr = [
        per_step(x, not_recovered(sel[x]), f"needed client restarts over {label}") for x in (a, b)
    ]
    out.append(
        decide(
            "repetitions in which clients did not recover by themselves",
            "lower",
            nr[0],
            nr[1],
            s,
            fmt=_count,
            zero_is_decisive=True,
        )
    )
    for metric, name in (
        ("unavailability_s", "unavailability window (kill to first ack)"),
        ("time_to_recover_tps_s", "time back to 90% of the pre-kill TPS"),
    ):
        pair = [per_step(x, _outage(sel[x], metric), label) for x in (a, b)]
        out.append(decide(name, "lower", pair[0], pair[1], s, unit="s", fmt=_secs))
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
    for v in verdicts:
        if v.outcome == "tie":
            continue
        if v.outcome == "undecided":
            text = f"Cannot decide: {v.criterion}: {v.reason}."
            return DimensionVerdict(dim, name, w, "undecided", None, text, verdicts)
        assert v.winner is not None
        loser = next(b for b in fr if b != v.winner)
        ratio = f" ({_fmt_ratio(v.ratio)} {v.direction})" if v.ratio else ""
        text = (
            f"{title(v.winner)} did better{ratio}: {v.criterion} {v.shown(v.winner)} vs "
            f"{v.shown(loser)} for {title(loser)} ({v.direction} is better; {v.reason})"
        )
        if v.caveat:
            text += f"; caveat: {v.caveat}"
        return DimensionVerdict(dim, name, w, "better", v.winner, text + ".", verdicts)
    return DimensionVerdict(
        dim,
        name,
        w,
        "tie",
        None,
        "A tie: no criterion separates the brokers beyond the noise.",
        verdicts,
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
