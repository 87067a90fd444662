"""One source, two languages: check that prose cells are paired, and split by language.

A course notebook (or a site page written as a MyST notebook) keeps every piece of prose
in a markdown cell tagged `lang-zh` or `lang-en`; each zh cell is followed at once by its
en twin, and the twins have the same structure (headings, formulas, figures, tables...).
Code cells are shared and untagged. `check` finds every broken rule, `split` keeps one
language's prose plus all code cells.

    python -m book.bilingual notebooks/*.ipynb book/*.md    # exit 1 on any problem
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

LANGS = ("zh", "en")
TAGS = {f"lang-{lang}": lang for lang in LANGS}

# Kinds of problem, each named in the message so a failing test says what to fix.
UNTAGGED = "untagged"
UNPAIRED = "unpaired"
STRUCTURE = "structure"
TITLE = "title"


@dataclass(frozen=True)
class Problem:
    path: str
    cell: int  # index in the notebook's cell list
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path} cell {self.cell}: {self.kind}: {self.detail}"


# ---- reading ---------------------------------------------------------------------------


def read(path: str | Path) -> nbformat.NotebookNode:
    """A notebook from .ipynb, or from a MyST markdown notebook (.md with `+++` cell breaks)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        from myst_nb.core.read import read_myst_markdown_notebook

        return read_myst_markdown_notebook(text, path=path)
    return nbformat.reads(text, as_version=4)


def lang_of(cell) -> str | None:
    """'zh' / 'en' for a tagged cell, None when untagged; ValueError when tagged twice."""
    found = [TAGS[t] for t in cell.get("metadata", {}).get("tags", []) if t in TAGS]
    if len(found) > 1:
        raise ValueError(f"tagged with more than one language: {found}")
    return found[0] if found else None


# ---- structure of one prose cell ---------------------------------------------------------

_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+\S")
_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")
_HTML_IMG = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)", re.IGNORECASE)
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(\s*<?([^)\s>]+)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")


def structure(source: str) -> dict:
    """What a translation must keep: headings, formulas, figures, tables, code blocks, links.

    Inline code spans are not compared: a translation may rightly change them
    (`{角色}` / `{role}` placeholders) or quote a little more or less of an expression.
    """
    headings, fences, images, links = [], [], [], set()
    math = table_rows = 0
    fence = None  # the open fence marker while inside a fenced block
    for line in source.splitlines():
        m = _FENCE.match(line)
        if fence is not None:
            if (
                m
                and m.group(1)[0] == fence[0]
                and len(m.group(1)) >= len(fence)
                and not m.group(2).strip()
            ):
                fence = None
            continue
        if m:
            fence = m.group(1)
            info = m.group(2).strip()
            fences.append(info)
            if info.startswith(("{figure}", "{image}")):
                images.append(info.split(None, 1)[1] if " " in info else "")
            continue
        h = _HEADING.match(line)
        if h:
            headings.append(len(h.group(1)))
        if _TABLE_ROW.match(line):
            table_rows += 1
        line = _CODE_SPAN.sub("", line)  # `$$` or `![x](y)` quoted in code is not markup
        math += line.count("$$")
        images += _IMAGE.findall(line) + _HTML_IMG.findall(line)
        links.update(_LINK.findall(line))
    return {
        "heading levels": headings,
        "display formulas ($$)": math // 2,
        "figures/images": images,
        "fenced blocks": fences,
        "table rows": table_rows,
        "link targets": sorted(links),
    }


def structure_diff(zh: str, en: str) -> list[str]:
    a, b = structure(zh), structure(en)
    return [f"{key} differ: zh {a[key]!r} vs en {b[key]!r}" for key in a if a[key] != b[key]]


# ---- the checker ---------------------------------------------------------------------------


def check_notebook(nb, path: str = "<notebook>") -> list[Problem]:
    """Every broken pairing rule in one notebook, in cell order."""
    problems: list[Problem] = []
    cells = nb.cells

    def langs_at(i: int) -> str | None:
        try:
            return lang_of(cells[i])
        except ValueError:
            return None

    first_prose = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), None)
    if first_prose is None:
        problems.append(
            Problem(
                path, 0, TITLE, "no prose at all: start with a `# NN · 标题` / `# NN · Title` pair"
            )
        )

    i = 0
    while i < len(cells):
        cell = cells[i]
        if cell.cell_type != "markdown":
            i += 1
            continue
        try:
            lang = lang_of(cell)
        except ValueError as err:
            problems.append(Problem(path, i, UNTAGGED, str(err)))
            i += 1
            continue
        if lang is None:
            problems.append(
                Problem(path, i, UNTAGGED, "prose cell without a lang-zh / lang-en tag")
            )
            i += 1
            continue
        if lang == "en":
            problems.append(
                Problem(path, i, UNPAIRED, "lang-en cell without a lang-zh cell right before it")
            )
            i += 1
            continue
        # a zh cell: its en twin must come next
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if nxt is None or nxt.cell_type != "markdown" or langs_at(i + 1) != "en":
            problems.append(
                Problem(path, i, UNPAIRED, "lang-zh cell not followed by its lang-en twin")
            )
            i += 1
            continue
        for detail in structure_diff(cell.source, nxt.source):
            problems.append(Problem(path, i, STRUCTURE, f"pair at cells {i}/{i + 1}: {detail}"))
        i += 2

    problems += _check_titles(cells, path, first_prose)
    return sorted(problems, key=lambda p: p.cell)


def _check_titles(cells, path: str, first: int | None) -> list[Problem]:
    """The first prose pair opens with the page title (one `#` heading); no other `#` later."""
    if first is None:
        return []
    problems = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        levels = structure(cell.source)["heading levels"]
        if i in (first, first + 1):
            if not cell.source.lstrip().startswith("# "):
                problems.append(
                    Problem(path, i, TITLE, "the first prose pair must start with a `# ` title")
                )
            if levels.count(1) > 1:
                problems.append(Problem(path, i, TITLE, "more than one `# ` title"))
        elif 1 in levels:
            problems.append(Problem(path, i, TITLE, "a `# ` title after the first pair (use `##`)"))
    return problems


def check(paths) -> list[Problem]:
    problems = []
    for path in paths:
        problems += check_notebook(read(path), str(path))
    return problems


# ---- splitting -------------------------------------------------------------------------------


def split(nb, lang: str):
    """A copy of `nb` with the prose of `lang` and every non-prose cell (code, raw)."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    out = nbformat.from_dict(nb)
    out.cells = [c for c in out.cells if c.cell_type != "markdown" or lang_of(c) == lang]
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    problems = check(argv)
    for p in problems:
        print(p)
    print(f"{len(argv)} file(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
