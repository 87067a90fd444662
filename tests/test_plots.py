"""Figures can carry Chinese text: the bundled CJK font is found and used."""

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from minimind_lib import plots  # noqa: E402


def test_han_characters_are_drawn_without_missing_glyphs():
    plots.use_bilingual_fonts()
    fig, ax = plt.subplots()
    ax.set_title("训练损失 · training loss")
    ax.set_xlabel("优化器步数 · optimizer step")
    ax.legend(handles=[plt.Line2D([], [], label="留出损失 · held-out loss")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        fig.canvas.draw()
    plt.close(fig)


def test_the_cjk_font_is_a_fallback_behind_dejavu():
    path = plots.use_bilingual_fonts()
    assert plt.rcParams["font.family"] == ["DejaVu Sans", plots.CJK_FONT]
    assert font_manager.FontProperties(fname=path).get_name() == plots.CJK_FONT
    # calling it again registers nothing twice
    plots.use_bilingual_fonts()
    assert sum(f.name == plots.CJK_FONT for f in font_manager.fontManager.ttflist) == 1
