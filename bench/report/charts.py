"""Charts as inline SVG text, drawn with matplotlib's non-interactive SVG backend.

The functions here know nothing of runs or scenarios: they draw :class:`Line` objects and
:class:`Mark` annotations handed to them by :mod:`bench.report.html`. Each broker keeps one
colour in every chart (colour-blind safe), so curves side by side read the same way.

Text is emitted as SVG ``<text>`` (``svg.fonttype = none``): smaller files, selectable labels,
and matplotlib escapes it. Math-text parsing is off, so a ``$`` in a scenario or topic name is
drawn as is instead of failing the render.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # no display: the report is rendered in CI and on headless hosts

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

BROKER_COLORS: dict[str, str] = {"pulsar": "#0072B2", "rocketmq": "#D55E00"}
"""Okabe-Ito blue and vermillion: distinguishable with the common colour-vision deficiencies."""
_OTHER_COLORS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v")

_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "bench-report",  # stable ids: re-rendering the same data gives the same SVG
    "text.parse_math": False,
    "text.usetex": False,
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 96,
}


@dataclass(frozen=True)
class Line:
    """One curve: ``y`` against ``x`` (None values are gaps), drawn in its broker's colour."""

    label: str
    broker: str
    x: Sequence[float]
    y: Sequence[float | None]
    style: int = 0
    """Index into :data:`STYLES`/:data:`MARKERS` (e.g. the sweep group or percentile)."""
    step: bool = False
    """Draw as a step plot (per-second counters)."""


@dataclass(frozen=True)
class Mark:
    """A marked point (knee, saturation) or, with ``y`` None, a vertical line (kill, restart)."""

    x: float
    label: str
    broker: str = ""
    y: float | None = None


@dataclass(frozen=True)
class Panel:
    """One axes: its lines, marks and scales."""

    title: str
    xlabel: str
    ylabel: str
    lines: Sequence[Line]
    marks: Sequence[Mark] = ()
    logx: bool = False
    logy: bool = False
    diagonal: bool = False
    """Draw y = x (achieved = offered)."""


@dataclass
class Chart:
    """A rendered chart: its title, the SVG text to inline, and a caption (plain text)."""

    title: str
    svg: str
    caption: str = ""
    panels: list[str] = field(default_factory=list)


def color(broker: str) -> str:
    """The colour of ``broker`` in every chart."""
    if broker in BROKER_COLORS:
        return BROKER_COLORS[broker]
    return _OTHER_COLORS[sum(map(ord, broker)) % len(_OTHER_COLORS)]


def human(v: float, _pos: object = None) -> str:
    """A tick label: 1500 -> '1.5k', 2e6 -> '2M', 0.25 -> '0.25' (no math text needed)."""
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


_HUMAN = FuncFormatter(human)


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def _positive_only(panel: Panel) -> bool:
    # A log axis cannot show 0 or negatives; fall back to linear rather than dropping points.
    for line in panel.lines:
        if panel.logx and any(_finite(x) and x <= 0 for x in line.x):
            return False
        if panel.logy and any(_finite(y) and y is not None and y <= 0 for y in line.y):
            return False
    return True


def _draw(ax: Axes, panel: Panel) -> None:
    drawn = 0
    for line in panel.lines:
        pts = [(x, y) for x, y in zip(line.x, line.y, strict=True) if _finite(x) and _finite(y)]
        if not pts:
            continue
        xs = [float(p[0]) for p in pts]
        ys = [float(cast(float, p[1])) for p in pts]
        c = color(line.broker)
        if line.step:
            ax.step(
                xs,
                ys,
                where="post",
                color=c,
                linestyle=STYLES[line.style % 4],
                label=line.label,
                linewidth=1.2,
            )
        else:
            ax.plot(
                xs,
                ys,
                color=c,
                linestyle=STYLES[line.style % 4],
                marker=MARKERS[line.style % 5],
                markersize=4,
                label=line.label,
                linewidth=1.4,
            )
        drawn += 1
    logs_ok = _positive_only(panel)
    # Minor tick labels on log axes cost most of the render time and clutter the axes.
    if panel.logx and logs_ok:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    if panel.logy and logs_ok:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    # The default log formatter writes math text, which is off (see the module docstring).
    for axis, lim, log in (
        (ax.xaxis, ax.get_xlim(), panel.logx),
        (ax.yaxis, ax.get_ylim(), panel.logy),
    ):
        axis.set_major_formatter(_HUMAN)
        if log and logs_ok and lim[0] > 0 and lim[1] / lim[0] < 100:
            # Within two decades: major ticks at 1, 2 and 5 of each decade, labelled, and no
            # minor labels (they overlapped each other and the majors).
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_minor_formatter(NullFormatter())
    if not (panel.logy and logs_ok):
        # A linear value axis starts at 0: a 1% wobble is not drawn full height, and an axis
        # with nothing but zeros on it does not run to negative counts.
        lo, hi = ax.get_ylim()
        data_lo = min(
            (float(cast(float, y)) for line in panel.lines for y in line.y if _finite(y)),
            default=0.0,
        )
        data_hi = max(
            (float(cast(float, y)) for line in panel.lines for y in line.y if _finite(y)),
            default=0.0,
        )
        if data_lo >= 0:
            # Headroom above the highest value, so a flat curve is not drawn on the frame.
            ax.set_ylim(0.0, 1.12 * data_hi if data_hi > 0 else 1.0)
    if panel.diagonal and drawn:
        lo, hi = ax.get_xlim()
        ax.plot(
            [lo, hi],
            [lo, hi],
            color="#888888",
            linestyle=":",
            linewidth=1,
            label="achieved = offered",
        )
    vlines = points = 0
    labelled: set[tuple[str, float]] = set()
    for mark in panel.marks:
        c = color(mark.broker) if mark.broker else "#333333"
        if mark.y is None:
            # Vertical markers (kill, restarts) are named in the legend, not on the plot: labels
            # on the plot overlapped each other, the curves and the legend.
            ax.axvline(
                mark.x,
                color=c,
                linestyle=STYLES[(vlines + 1) % 4],
                linewidth=1,
                alpha=0.8,
                label=mark.label,
            )
            vlines += 1
        else:
            ax.plot(
                [mark.x],
                [mark.y],
                marker="*",
                markersize=13,
                color=c,
                markeredgecolor="black",
                linestyle="none",
                zorder=5,
            )
            if (mark.label, mark.x) in labelled:
                continue  # two curves of one broker with the same knee: one label is enough
            labelled.add((mark.label, mark.x))
            ax.annotate(
                mark.label,
                xy=(mark.x, mark.y),
                xytext=(-70, -20 - 13 * points),
                textcoords="offset points",
                fontsize=7,
                color=c,
                arrowprops={"arrowstyle": "-", "color": c, "lw": 0.6},
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.85},
            )
            points += 1
    if not drawn:
        ax.text(
            0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888888"
        )
    ax.set_title(panel.title, fontsize=9)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if drawn:
        ax.legend(fontsize=7, loc="best", framealpha=0.85)


_SVG_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def _to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    # Fixed margins instead of tight_layout/bbox_inches="tight": each of those draws the figure
    # once more just to measure it, which tripled the render time.
    # No date in the SVG: the same runs give the same report, byte for byte, but for its header.
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    # Drop the XML declaration and DOCTYPE: they are not allowed inside an HTML body.
    return _SVG_PROLOGUE.sub("", buf.getvalue(), count=1)


def render(title: str, panels: Sequence[Panel], *, caption: str = "", columns: int = 2) -> Chart:
    """Draw ``panels`` in a grid of ``columns`` and return the :class:`Chart`."""
    if not panels:
        raise ValueError("a chart needs at least one panel")
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    with plt.rc_context(cast(Any, _RC)):
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
        for i, panel in enumerate(panels):
            _draw(axes[i // cols][i % cols], panel)
        for j in range(len(panels), rows * cols):
            axes[j // cols][j % cols].set_visible(False)
        fig.subplots_adjust(
            left=0.07,
            right=0.99,
            bottom=0.22 / rows + 0.02,
            top=1 - 0.14 / rows,
            hspace=0.5,
            wspace=0.2,
        )
        svg = _to_svg(fig)
    return Chart(title=title, svg=svg, caption=caption, panels=[p.title for p in panels])
