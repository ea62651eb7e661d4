"""The dimensions, the thresholds (:class:`Settings`) and the comparison of two brokers' figures on
one criterion (:func:`decide`)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import ConfigError
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


def _us_ms(v: float) -> str:
    return f"{v / 1000:,.1f} ms"


def _rate(v: float) -> str:
    return f"{v:,.0f} msg/s"


def _secs(v: float) -> str:
    return f"{v:,.1f} s"


def _count(v: float) -> str:
    return f"{v:,.0f}"
