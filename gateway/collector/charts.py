"""The signals report's charts: grouped bars drawn by matplotlib as inline SVG.

Text stays text in the SVG (readable, searchable, scalable). A suppressed
count is drawn as a hatched grey bar reaching the threshold, labelled
"afgeschermd", so it cannot be mistaken for a small number; a region that
did not answer gets "geen antwoord" where its bars would be.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

PALETTE = (
    "#154273",
    "#e17000",
    "#39870c",
    "#a90061",
    "#8fcae7",
    "#ffb612",
    "#42145f",
    "#94710a",
    "#76d2b6",
    "#d52b1e",
)
SUPPRESSED_COLOUR = "#9a9a9a"


class Value:
    """What one bar shows: a count, a suppressed count, or no answer."""

    SUPPRESSED = "afgeschermd"
    MISSING = "geen antwoord"


Bar = int | str
"""A count, :attr:`Value.SUPPRESSED` or :attr:`Value.MISSING`."""


@dataclass(frozen=True)
class Series:
    """One bar per group, for one legend entry."""

    label: str
    values: Sequence[Bar]


def grouped_bars(
    groups: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    k: int,
    width_px: int = 860,
) -> str:
    """Grouped vertical bars as an ``<svg>`` element: one group per entry of ``groups``."""
    with mpl.rc_context(
        {
            "svg.fonttype": "none",  # text stays text
            "svg.hashsalt": title,  # ids differ between the charts of one page
            "font.family": "DejaVu Sans",
            "font.size": 11,
        }
    ):
        fig = Figure(figsize=(width_px / 96, 3.6), dpi=96, layout="constrained")
        ax = fig.add_subplot()
        n = max(len(series), 1)
        width = 0.8 / n
        top = max([v for s in series for v in s.values if isinstance(v, int)] + [k, 1])
        for i, s in enumerate(series):
            colour = PALETTE[i % len(PALETTE)]
            for g, value in enumerate(s.values):
                x = g - 0.4 + width * (i + 0.5)
                if isinstance(value, int):
                    ax.bar(x, value, width * 0.92, color=colour)
                    if value:
                        ax.annotate(
                            str(value),
                            (x, value),
                            ha="center",
                            va="bottom",
                            fontsize=8,
                            xytext=(0, 1),
                            textcoords="offset points",
                        )
                elif value == Value.SUPPRESSED:
                    ax.bar(
                        x,
                        k,
                        width * 0.92,
                        facecolor="none",
                        edgecolor=SUPPRESSED_COLOUR,
                        hatch="////",
                        linewidth=0.8,
                    )
                    ax.annotate("a", (x, k), ha="center", va="bottom", fontsize=8, color="#555")
        for g in range(len(groups)):
            if all(s.values[g] == Value.MISSING for s in series):
                ax.text(g, top * 0.05, "geen antwoord", ha="center", color="#a4262c", fontsize=9)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylim(0, top * 1.15)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.set_ylabel(y_label)
        ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
        ax.grid(axis="y", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        handles = [
            Patch(color=PALETTE[i % len(PALETTE)], label=s.label) for i, s in enumerate(series)
        ]
        handles.append(
            Patch(
                facecolor="none",
                edgecolor=SUPPRESSED_COLOUR,
                hatch="////",
                label=f"a = afgeschermd (minder dan {k}, of zou een klein aantal verraden)",
            )
        )
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False, fontsize=9)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    svg = out.getvalue()
    return svg[svg.index("<svg") :]
