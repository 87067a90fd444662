"""Figures shared by the notebooks."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from .evals import GUARD_MARGIN, ReportCard

BEFORE, BETTER, WORSE = "#b0b0b0", "#2a9d5c", "#d1495b"


def report_card_figure(card: ReportCard | str | Path, guard_margin: float = GUARD_MARGIN):
    """Every stage's probes before vs after, one panel per stage (each on its own scale),
    two panels a row.

    Grey bar = before the stage, coloured bar = after it: green when the probe moved the
    right way (up, or down for a loss marked ↓), red when it moved the wrong way. Guards
    (probes a stage only has to leave roughly intact) are marked "(guard)".
    Returns the matplotlib figure.
    """
    card = card if isinstance(card, ReportCard) else ReportCard(card)
    verdicts = card.verdicts(guard_margin)
    stages = list(dict.fromkeys(v["stage"] for v in verdicts))
    if not stages:
        raise ValueError(f"the report card {card.path} has no stages yet")
    ncols = min(len(stages), 2)
    nrows = -(-len(stages) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.4 * nrows + 0.5), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(stages) :]:
        fig.delaxes(ax)  # an odd number of stages leaves one cell empty
    for ax, stage in zip(axes, stages, strict=False):
        rows = [v for v in verdicts if v["stage"] == stage]
        xs = range(len(rows))
        ax.bar(
            [x - 0.2 for x in xs], [r["before"] for r in rows], 0.4, color=BEFORE, label="before"
        )
        colours = [BETTER if r["gain"] > 0 else WORSE for r in rows]
        ax.bar([x + 0.2 for x in xs], [r["after"] for r in rows], 0.4, color=colours, label="after")
        top = max(max(r["before"], r["after"]) for r in rows) or 1.0
        for x, r in zip(xs, rows, strict=True):
            for dx, value in ((-0.2, r["before"]), (0.2, r["after"])):
                ax.text(
                    x + dx, value + top * 0.01, f"{value:.2f}", ha="center", va="bottom", fontsize=7
                )
        labels = [
            r["metric"].replace("_", " ")
            + (" ↓" if r["lower_is_better"] else "")
            + ("\n(guard)" if r["role"] == "guard" else "")
            for r in rows
        ]
        ax.set_xticks(list(xs), labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, top * 1.15)
        ax.set_title(stage)
        ax.spines[["top", "right"]].set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (BEFORE, BETTER, WORSE)]
    fig.legend(
        handles,
        ["before the stage", "after: better", "after: worse"],
        loc="upper right",
        fontsize=8,
        ncols=3,
        frameon=False,
    )
    fig.suptitle(
        "Report card: each stage's probes before and after it (↓ lower is better)",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
