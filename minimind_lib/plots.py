"""Figures shared by the notebooks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib import font_manager

from .evals import GUARD_MARGIN, ReportCard, stage_label

BEFORE, BETTER, WORSE = "#b0b0b0", "#2a9d5c", "#d1495b"

# Figure text is bilingual ("词元 · token"): Latin letters from matplotlib's own DejaVu Sans, Han
# characters from Noto Sans CJK SC, which the pinned mplfonts package ships (few machines have a
# CJK font installed, and without one every Chinese character is drawn as an empty box).
CJK_FONT = "Noto Sans CJK SC"


def use_bilingual_fonts() -> str:
    """Register Noto Sans CJK SC with matplotlib and make it the fallback behind DejaVu Sans.

    matplotlib picks a font glyph by glyph along `font.family`, so one label may mix both
    scripts. Returns the font file's path.
    """
    path = resources.files("mplfonts") / "fonts" / "NotoSansCJKsc-Regular.otf"
    if CJK_FONT not in {f.name for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(str(path))
    plt.rcParams["font.family"] = ["DejaVu Sans", CJK_FONT]
    return str(path)


def report_card_figure(card: ReportCard | str | Path, guard_margin: float = GUARD_MARGIN):
    """Every stage's probes before vs after, one panel per stage (each on its own scale),
    two panels a row.

    Grey bar = before the stage, coloured bar = after it: green when the probe improved by
    more than its 95% interval (up, or down for a loss marked ↓; for a guard: held), red
    otherwise. The black lines are the 95% intervals, and each label gives the number of items
    n. Guards (probes a stage only has to leave roughly intact) are marked "(护栏指标 · guard)".
    The title, the legend and each panel's stage ("预训练 · pretrain") are bilingual. Observed
    probes (measured, not judged: a reply's length in tokens, say, on a scale of its own) are in
    the card's table only.
    Returns the matplotlib figure.
    """
    use_bilingual_fonts()  # the figure's text is partly Chinese
    card = card if isinstance(card, ReportCard) else ReportCard(card)
    verdicts = [v for v in card.verdicts(guard_margin) if v["ok"] is not None]
    stages = list(dict.fromkeys(v["stage"] for v in verdicts))
    if not stages:
        raise ValueError(f"the report card {card.path} has no stages yet")
    ncols = 2  # also for one stage: the title and the legend need the width of two panels
    nrows = -(-len(stages) // ncols)
    header = 0.75  # inches above the panels: the title's two lines and the legend's three
    height = 3.6 * nrows + header
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.8 * ncols, height), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(stages) :]:
        fig.delaxes(ax)  # an odd number of stages leaves one cell empty
    for ax, stage in zip(axes, stages, strict=False):
        rows = [v for v in verdicts if v["stage"] == stage]
        xs = list(range(len(rows)))
        for dx, key, colours in (
            (-0.2, "before", [BEFORE] * len(rows)),
            (0.2, "after", [BETTER if r["ok"] else WORSE for r in rows]),
        ):
            values = [r[key] for r in rows]
            # max(0, ...): a bootstrap interval of near-constant items may miss its value by a rounding
            errors = [
                [max(0.0, v - r[f"{key}_ci"][0]) for v, r in zip(values, rows, strict=True)],
                [max(0.0, r[f"{key}_ci"][1] - v) for v, r in zip(values, rows, strict=True)],
            ]
            ax.bar(
                [x + dx for x in xs],
                values,
                0.4,
                color=colours,
                yerr=errors,
                capsize=2,
                error_kw={"elinewidth": 0.8, "ecolor": "black"},
            )
        top = max(max(r["before_ci"][1], r["after_ci"][1]) for r in rows) or 1.0
        for x, r in zip(xs, rows, strict=True):
            for dx, key in ((-0.2, "before"), (0.2, "after")):
                ax.text(
                    x + dx,
                    r[f"{key}_ci"][1] + top * 0.01,
                    f"{r[key]:.2f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        labels = [
            r["metric"].replace("_", " ")
            + (" ↓" if r["lower_is_better"] else "")
            + f"\nn={r['n']}"
            + (" (护栏指标 · guard)" if r["role"] == "guard" else "")
            for r in rows
        ]
        ax.set_xticks(xs, labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, top * 1.18)
        ax.set_title(stage_label(stage))
        ax.spines[["top", "right"]].set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (BEFORE, BETTER, WORSE)]
    fig.suptitle(
        "成绩单：各阶段的探针在训练前后的值，带 95% 区间（↓ 越低越好）\n"
        "Report card: each stage's probes before and after it, with 95% intervals (↓ lower is better)",
        x=0.01,
        y=1 - 0.05 / height,
        ha="left",
        fontsize=11,
    )
    fig.legend(  # under the title, so the two never overlap
        handles,
        [
            "训练前 · before the stage",
            "训练后：变好，超出 95% 区间（护栏指标：守住了） · "
            "after: better beyond the 95% interval (guard: held)",
            "训练后：没有（护栏指标：没守住） · after: not (guard: not held)",
        ],
        loc="upper left",
        bbox_to_anchor=(0.01, 1 - 0.5 / height),
        fontsize=8,
        ncols=1,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - header / height))
    return fig
