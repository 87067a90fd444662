"""The zh/en pairing rules (book/bilingual.py) and the split the site is built from."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `book` is not an installed package

from book import bilingual, build  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
PAGES = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").glob("*.md"))


def zh(text: str):
    return new_markdown_cell(text, metadata={"tags": ["lang-zh"]})


def en(text: str):
    return new_markdown_cell(text, metadata={"tags": ["lang-en"]})


def kinds(nb) -> list[tuple[int, str]]:
    return [(p.cell, p.kind) for p in bilingual.check_notebook(nb, "nb")]


# ---- the real pages --------------------------------------------------------------------------


def test_site_pages_exist():
    names = {p.name for p in PAGES}
    assert {"intro.md", "own_data.md", "glossary.md", "gpu.md"} <= names


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_is_paired(path):
    problems = bilingual.check([path])
    assert not problems, "\n".join(map(str, problems))


# ---- the checker finds each kind of problem ----------------------------------------------------


def test_broken_fixture_names_every_problem():
    path = FIXTURES / "broken.ipynb"
    problems = bilingual.check([path])
    found = {(p.cell, p.kind) for p in problems}
    assert found == {
        (2, bilingual.UNTAGGED),
        (3, bilingual.UNPAIRED),
        (5, bilingual.UNPAIRED),
        (6, bilingual.STRUCTURE),
        (8, bilingual.STRUCTURE),
        (10, bilingual.TITLE),
        (11, bilingual.TITLE),
    }
    text = "\n".join(map(str, problems))
    for cell, kind in found:
        assert f"{path} cell {cell}: {kind}:" in text
    assert "heading levels differ" in text and "display formulas ($$) differ" in text
    assert "figures/images differ" in text


def test_good_fixtures_pass():
    assert bilingual.check(sorted((FIXTURES / "notebooks").glob("*.ipynb"))) == []


def test_command_line_exit_status(capsys):
    assert bilingual.main([str(FIXTURES / "broken.ipynb")]) == 1
    assert "untagged" in capsys.readouterr().out
    assert bilingual.main([str(FIXTURES / "notebooks" / "01_tokenizer.ipynb")]) == 0


def test_code_cells_need_no_tag_and_may_sit_between_pairs():
    nb = new_notebook(
        cells=[zh("# 标题"), en("# Title"), new_code_cell("x = 1"), zh("说明"), en("Note")]
    )
    assert kinds(nb) == []


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([zh("# 标题"), en("# Title"), new_markdown_cell("no tag")], [(2, "untagged")]),
        ([en("# Title"), zh("# 标题")], [(0, "unpaired"), (1, "unpaired")]),
        ([zh("# 标题"), new_code_cell("1"), en("Title")], [(0, "unpaired"), (2, "unpaired")]),
        ([zh("# 标题"), en("# Title"), zh("一"), zh("二"), en("two")], [(2, "unpaired")]),
        ([zh("## 没有标题"), en("## No title")], [(0, "title"), (1, "title")]),
        ([new_code_cell("1")], [(0, "title")]),
    ],
)
def test_pairing_rules(cells, expected):
    assert kinds(new_notebook(cells=cells)) == expected


def test_cell_tagged_with_both_languages():
    cell = new_markdown_cell("# x", metadata={"tags": ["lang-zh", "lang-en"]})
    assert (0, "untagged") in kinds(new_notebook(cells=[cell]))


@pytest.mark.parametrize(
    "zh_text, en_text, what",
    [
        ("## 一\n### 二", "## One\n## Two", "heading levels"),
        ("$$a$$\n\n$$b$$", "$$a$$", "display formulas"),
        ("![图](a.png)", "![fig](b.png)", "figures/images"),
        ("```{figure} a.png\n说明\n```", "```{figure} b.png\ncaption\n```", "figures/images"),
        ("| a |\n|---|\n| 1 |\n| 2 |", "| a |\n|---|\n| 1 |", "table rows"),
        ("```python\nx\n```", "no code", "fenced blocks"),
        ("见 [文档](https://a.example)", "See [docs](https://b.example)", "link targets"),
    ],
)
def test_structure_differences(zh_text, en_text, what):
    nb = new_notebook(cells=[zh("# 标题"), en("# Title"), zh(zh_text), en(en_text)])
    problems = bilingual.check_notebook(nb, "nb")
    assert problems and {(p.cell, p.kind) for p in problems} == {(2, "structure")}
    assert any(what in p.detail for p in problems)


def test_code_spans_may_differ():
    nb = new_notebook(cells=[zh("# 标题 `{角色}`"), en("# Title `{role}` and `x=1`")])
    assert kinds(nb) == []


def test_structure_ignores_code():
    text = "```python\n# a comment, not a heading\nx = '$$'\n```\nquoted `$$` and `![a](b.png)`"
    s = bilingual.structure(text)
    assert s["heading levels"] == [] and s["display formulas ($$)"] == 0
    assert s["figures/images"] == [] and s["fenced blocks"] == ["python"]


def test_myst_markdown_pages_are_read_as_notebooks():
    nb = bilingual.read(ROOT / "book" / "intro.md")
    tags = [bilingual.lang_of(c) for c in nb.cells]
    assert tags[:2] == ["zh", "en"] and len(tags) % 2 == 0


# ---- splitting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_split_keeps_one_language_and_every_code_cell(lang):
    nb = nbformat.read(FIXTURES / "notebooks" / "01_tokenizer.ipynb", as_version=4)
    one = bilingual.split(nb, lang)
    assert [c.source for c in one.cells if c.cell_type == "code"] == [
        c.source for c in nb.cells if c.cell_type == "code"
    ]
    prose = [c for c in one.cells if c.cell_type == "markdown"]
    assert prose and all(bilingual.lang_of(c) == lang for c in prose)
    assert len(prose) == sum(c.cell_type == "markdown" for c in nb.cells) // 2
    assert len(nb.cells) == len(one.cells) + len(prose)  # the original is untouched


def test_split_rejects_unknown_language():
    with pytest.raises(ValueError):
        bilingual.split(new_notebook(), "fr")


def test_toc_keeps_existing_chapters_in_order():
    toc = build.read_toc(FIXTURES / "notebooks")
    names = [p["name"] for p in build.all_pages(toc)]
    assert names == ["intro", "01_tokenizer", "02_model", "own_data", "glossary", "gpu"]
    captions = [c for c, _ in toc["parts"]]
    assert captions[0] == {"zh": "课程", "en": "Course"}


def test_snippet_is_plain_text_the_twin_lacks():
    src = "这是 **分词器** 的说明，byte-level BPE 是它的算法。"
    twin = "This explains the **tokenizer**; byte-level BPE is its algorithm."
    snippet = build.distinctive_snippet(src, twin)
    assert snippet == "的说明，byte-level BPE 是它的算法。"
    assert snippet not in twin


def test_heading_texts_as_rendered():
    src = "# 01 · `BPE` 分词器\n\n```\n# not a heading\n```\n## [链接](x.md) 与 *强调*\n## $x$ 公式"
    assert build.heading_texts(src) == ["01 · BPE 分词器", "链接 与 强调"]


def test_widget_outputs_are_dropped_for_the_site():
    cell = new_code_cell("box")
    cell.outputs = [
        nbformat.from_dict(
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {build.WIDGET_MIME: {"model_id": "1"}, "text/plain": "VBox()"},
            }
        ),
        nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "ok\n"}),
    ]
    nb = new_notebook(cells=[cell], metadata={"widgets": {"state": {}}})
    out = build.for_site(nb)
    assert [o.output_type for o in out.cells[0].outputs] == ["stream"]
    assert "widgets" not in out.metadata and len(nb.cells[0].outputs) == 2


def test_consecutive_prints_become_one_stream_for_the_site():
    def stream(name, text):
        return nbformat.from_dict({"output_type": "stream", "name": name, "text": text})

    table = nbformat.from_dict(
        {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": "| a |"}}
    )
    cell = new_code_cell("stream()")
    cell.outputs = [
        stream("stdout", "达|"),
        stream("stdout", "拉|"),
        stream("stdout", " x\n"),
        stream("stderr", "warn\n"),
        table,
        stream("stdout", "after"),
    ]
    out = build.for_site(new_notebook(cells=[cell])).cells[0].outputs
    assert [(o.output_type, o.get("text")) for o in out] == [
        ("stream", "达|拉| x\n"),
        ("stream", "warn\n"),
        ("display_data", None),
        ("stream", "after"),
    ]
    assert len(cell.outputs) == 6  # the executed notebook itself is left as it was


def test_images_referenced_by_prose_are_copied(tmp_path):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    (src_dir / "fig.png").write_bytes(b"png")
    tree = tmp_path / "tree"
    out = build.localize_assets("![图](fig.png) ![远程](https://x.example/a.png)", src_dir, tree)
    copied = list((tree / "_assets").rglob("fig.png"))
    assert len(copied) == 1 and copied[0].read_bytes() == b"png"
    assert "](_assets/" in out and "https://x.example/a.png" in out
