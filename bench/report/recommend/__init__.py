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

The rules live in submodules (:mod:`.verdict`, :mod:`.curves`, one per dimension); they share
underscore helpers within the package, and its public names are those re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from bench.report.recommend.curves import Knee, Saturation, find_knee, find_saturation
from bench.report.recommend.recovery import _recovery
from bench.report.recommend.send import _send_frequency
from bench.report.recommend.steps import is_client_bound
from bench.report.recommend.subscribe import _subscribe_frequency
from bench.report.recommend.topics import _topic_growth
from bench.report.recommend.verdict import (
    BROKER_TITLES,
    DIMENSION_KIND,
    DIMENSIONS,
    Figure,
    Outcome,
    Settings,
    Verdict,
    _fmt_ratio,
    decide,
    load_settings,
    title,
)

CRITERIA: dict[str, Callable[[dict[str, pd.DataFrame], Settings], list[Verdict]]] = {
    "topic_growth": _topic_growth,
    "send_frequency": _send_frequency,
    "subscribe_frequency": _subscribe_frequency,
    "recovery": _recovery,
}


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


__all__ = [
    "BROKER_TITLES",
    "CRITERIA",
    "DIMENSIONS",
    "DIMENSION_KIND",
    "DimensionVerdict",
    "Figure",
    "Knee",
    "Outcome",
    "Recommendation",
    "Saturation",
    "Settings",
    "Verdict",
    "decide",
    "find_knee",
    "find_saturation",
    "is_client_bound",
    "load_settings",
    "recommend",
    "title",
]
