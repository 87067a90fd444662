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


def test_the_report_card_figure_is_bilingual_and_draws_every_glyph(tmp_path):
    from minimind_lib.evals import ReportCard
    from minimind_lib.stats import Score

    def rate(right: int, n: int = 50) -> Score:
        return Score.of([1] * right + [0] * (n - right))

    card = ReportCard(tmp_path / "report.json")
    card.record("pretrain", {"fact_completion": (rate(0), rate(40))})
    card.record("sft", {"fact_qa_accuracy": (rate(5), rate(30))})
    card.record(
        "dpo",
        {"preference_accuracy": (rate(20), rate(40))},
        guards={"fact_qa_accuracy": (rate(30), rate(28))},
    )
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # no font set up beforehand: the figure does it itself
        fig = plots.report_card_figure(card)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a Han character without a glyph would warn here
            fig.canvas.draw()
    title = fig.get_suptitle()
    assert "成绩单" in title and "Report card" in title and "越低越好" in title
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0] == "训练前 · before the stage"
    assert all(" · " in t and t.startswith("训练后") and "after" in t for t in legend[1:])
    assert [ax.get_title() for ax in fig.axes] == [
        "预训练 · pretrain",
        "监督微调 · sft",
        "直接偏好优化 · dpo",
    ]
    ticks = [t.get_text() for t in fig.axes[2].get_xticklabels()]
    assert ticks[1].endswith("(护栏指标 · guard)") and "guard" not in ticks[0]
    plt.close(fig)
