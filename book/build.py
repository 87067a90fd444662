"""Build the two-language study site.

    python -m book.build                  # execute notebooks/ (tiny profile), build _build/html
    python -m book.build --executed DIR   # reuse executed copies DIR/<name>.ipynb
    python -m book.build --profile full   # what the kernels get as MINIMIND_PROFILE
    python -m book.build --chapters 01_tokenizer 02_model   # only these chapters

Steps: check the zh/en pairing of every page; execute the chapters in order (each stage
reads the previous one's checkpoint), from notebooks/ as working directory; split every
page into book/_generated/zh and book/_generated/en; build each tree with jupyter-book
(warnings are errors); put the two sites side by side under <out>/zh and <out>/en with a
landing page that opens the reader's language, and a manifest the browser test reads.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

from book import bilingual

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
GENERATED = BOOK / "_generated"
LANGS = bilingual.LANGS
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


# ---- the table of contents -------------------------------------------------------------


def read_toc(notebooks: Path, only: list[str] | None = None) -> dict:
    """Root `_toc.yml` resolved to files: {"root": page, "parts": [(captions, [pages])]}.

    A page is a dict(name, src, kind). Chapters that are not written yet are left out, and
    so are those not in `only` when given; a missing site page is an error.
    """
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))

    def page(entry: str) -> dict | None:
        folder, name = entry.rsplit("/", 1)
        if folder == "notebooks":
            src = notebooks / f"{name}.ipynb"
            wanted = src.exists() and (only is None or name in only)
            return {"name": name, "src": src, "kind": "chapter"} if wanted else None
        for suffix in (".md", ".ipynb"):
            if (ROOT / folder / f"{name}{suffix}").exists():
                return {"name": name, "src": ROOT / folder / f"{name}{suffix}", "kind": "page"}
        raise FileNotFoundError(f"_toc.yml names {entry}, which does not exist")

    parts = []
    for part in toc.get("parts", []):
        captions = dict(zip(LANGS, (c.strip() for c in part["caption"].split(" / ")), strict=True))
        pages = [p for p in (page(c["file"]) for c in part["chapters"]) if p is not None]
        if pages:
            parts.append((captions, pages))
    names = [p["name"] for _, pages in parts for p in pages] + [Path(toc["root"]).name]
    if len(names) != len(set(names)):
        raise ValueError(f"page names must be unique across book/ and notebooks/: {names}")
    return {"root": page(toc["root"]), "parts": parts}


def all_pages(toc: dict) -> list[dict]:
    return [toc["root"]] + [p for _, pages in toc["parts"] for p in pages]


# ---- executing -----------------------------------------------------------------------------


def execute(src: Path, dest: Path, timeout: int) -> nbformat.NotebookNode:
    """Run a notebook top to bottom with this interpreter, from its own folder."""
    import ipykernel.kernelspec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    class ThisPython(KernelSpecManager):
        # the venv running the build, whatever kernels happen to be installed elsewhere
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    nb = nbformat.read(src, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())
    client = NotebookClient(
        nb, km=km, timeout=timeout, resources={"metadata": {"path": str(src.parent)}}
    )
    client.execute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return nb


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def executed_chapters(
    toc: dict, executed: Path | None, timeout: int
) -> dict[str, nbformat.NotebookNode]:
    """name -> executed notebook, in chapter order; reused from `executed` when there."""
    out = {}
    for page in all_pages(toc):
        if page["kind"] != "chapter":
            continue
        name = page["name"]
        reuse = executed / f"{name}.ipynb" if executed else None
        if reuse and reuse.exists():
            copy = nbformat.read(reuse, as_version=4)
            if _cells(copy) == _cells(nbformat.read(page["src"], as_version=4)):
                print(f"[site] {name}: reusing {reuse}", flush=True)
                out[name] = copy
                continue
            print(f"[site] {name}: {reuse} is stale (the notebook changed since)", flush=True)
        print(f"[site] {name}: executing ...", flush=True)
        start = time.perf_counter()
        try:
            out[name] = execute(page["src"], GENERATED / "executed" / f"{name}.ipynb", timeout)
        except Exception as err:  # the traceback of the failing cell is in the message
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # no terminal colours in logs
            raise SystemExit(f"[site] {name} failed to execute:\n{plain}") from err
        print(f"[site] {name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
    return out


# ---- splitting into two trees --------------------------------------------------------------

_ASSET = re.compile(
    r"(!\[[^\]]*\]\(\s*<?|<img\b[^>]*\bsrc=[\"']|```\{(?:figure|image)\}\s+)([^)\s>\"']+)"
)


def localize_assets(source: str, src_dir: Path, tree: Path) -> str:
    """Copy images a prose cell references by relative path into the tree; point at the copy."""

    def repl(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^/|^#", target, re.IGNORECASE):
            return m.group(0)  # URL, absolute or anchor: nothing to copy
        path = (src_dir / target).resolve()
        if not path.is_file():
            return m.group(0)  # let Sphinx report the missing file
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else Path(path.name)
        dest = tree / "_assets" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        return m.group(1) + (Path("_assets") / rel).as_posix()

    return _ASSET.sub(repl, source)


def for_site(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop live-widget outputs: a static page cannot run them (and they pull CDN scripts).
    Join consecutive prints to one stream, as Jupyter shows them."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs = [o for o in cell.get("outputs", []) if WIDGET_MIME not in o.get("data", {})]
            cell.outputs = merge_streams(outputs)
    return nb


def merge_streams(outputs: list) -> list:
    """Consecutive outputs to the same stream as one. Text printed piece by piece (a streamed
    reply in 07_chat) arrives as one output a piece, which Sphinx would show one per line."""
    merged = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            out.get("output_type") == "stream"
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == out.get("name")
        ):
            last["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def write_if_changed(path: Path, text: str) -> None:
    # unchanged files keep their mtime, so jupyter-book rebuilds only what changed
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def split_tree(toc: dict, notebooks: dict[str, nbformat.NotebookNode]) -> list[dict]:
    """Write book/_generated/<lang>/<page>.ipynb; return what the browser test checks per page."""
    manifest = []
    for page in all_pages(toc):
        nb = notebooks.get(page["name"]) or bilingual.read(page["src"])
        nb = for_site(nb)
        entry = {"name": page["name"], "kind": page["kind"], **page_facts(nb)}
        for lang in LANGS:
            tree = GENERATED / lang
            one = bilingual.split(nb, lang)
            for cell in one.cells:
                if cell.cell_type == "markdown":
                    cell.source = localize_assets(cell.source, page["src"].parent, tree)
            write_if_changed(tree / f"{page['name']}.ipynb", nbformat.writes(one) + "\n")
        manifest.append(entry)
    return manifest


def page_facts(nb) -> dict:
    """Headings, text snippets, code cells, plots and formulas a correct page must show."""
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    images = sum(
        1
        for c in code
        for o in c.get("outputs", [])
        if any(m in o.get("data", {}) for m in IMAGE_MIMES)
    )
    formulas = 0
    headings = {lang: [] for lang in LANGS}
    snippets = {lang: [] for lang in LANGS}
    prose = [c for c in nb.cells if c.cell_type == "markdown"]
    for i, cell in enumerate(prose):
        lang = bilingual.lang_of(cell)
        if lang is None:
            continue
        twin = prose[i + 1] if lang == "zh" and i + 1 < len(prose) else prose[i - 1]
        headings[lang] += heading_texts(cell.source)
        if lang == "zh":  # the twin has as many (the checker made sure)
            formulas += bilingual.structure(cell.source)["display formulas ($$)"]
        snippet = distinctive_snippet(cell.source, twin.source)
        if snippet:
            snippets[lang].append(snippet)
    return {
        "code_cells": len(code),
        "images": images,
        "formulas": formulas,
        "headings": headings,
        "snippets": snippets,
    }


def heading_texts(source: str) -> list[str]:
    """Plain text of the ATX headings, as the rendered page shows them (math skipped)."""
    out, fenced = [], False
    for line in source.splitlines():
        if re.match(r"^\s*(```|~~~|:::)", line):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not fenced and "$" not in m.group(1):
            text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # links -> their text
            out.append(re.sub(r"[`*_]", "", text).strip())
    return out


# markup, and what Sphinx's smartquotes rewrites (quotes, -- and ...), ends a plain run
_MARKUP = re.compile(r"[*_`\[\]()$<>|{}\\&#~\"']|--|\.\.\.")


def distinctive_snippet(source: str, twin: str, min_len: int = 6) -> str | None:
    """The longest plain-text run of a paragraph line that the twin cell does not contain.

    Found verbatim in the rendered page's text when this language is shown, and absent
    from the other language's page: a cheap, exact test that prose was split right.
    """
    best = ""
    fenced = False
    for line in source.splitlines():
        if re.match(r"^\s*(```|~~~|:::)", line):
            fenced = not fenced
            continue
        if fenced or re.match(r"^\s*(#|\||\+\+\+)", line):
            continue
        line = re.sub(r"^\s*(?:[-+*>]|\d+[.)])\s+", "", line)
        for run in _MARKUP.split(line):
            run = " ".join(run.split())
            if len(run) > len(best) and len(run) >= min_len and run not in twin:
                best = run
    return best or None


# ---- configuration and jupyter-book -------------------------------------------------------


def write_configs(toc: dict) -> None:
    base = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    languages = base.pop("languages")
    for lang in LANGS:
        conf = copy.deepcopy(base)
        own = languages[lang]
        conf["title"], conf["author"] = own["title"], own["author"]
        sphinx = conf.setdefault("sphinx", {})
        sphinx["local_extensions"] = {
            name: str((ROOT / path).resolve())
            for name, path in sphinx.get("local_extensions", {}).items()
        }
        sphinx.setdefault("config", {}).update(language=own["sphinx_language"], site_lang=lang)
        parts = [
            {"caption": captions[lang], "chapters": [{"file": p["name"]} for p in pages]}
            for captions, pages in toc["parts"]
        ]
        lang_toc = {"format": "jb-book", "root": toc["root"]["name"], "parts": parts}
        header = "# Generated by book/build.py from the root _config.yml / _toc.yml: edit those.\n"
        for name, data in (("_config.yml", conf), ("_toc.yml", lang_toc)):
            text = header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
            write_if_changed(GENERATED / lang / name, text)


def jupyter_book(lang: str) -> None:
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    tree = GENERATED / lang
    cmd = [exe, "build", str(tree), "-W", "-n", "--keep-going"]
    print(f"[site] {lang}: {' '.join(cmd[1:])}", flush=True)
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"[site] jupyter-book failed for the {lang} tree (see the warnings above)")


LANDING = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>MiniMind</title>
<link rel="icon" href="zh/_static/favicon.svg">
<script>
  // open the language the reader chose last (lang-switch.js stores it); Chinese by default
  var lang = "zh";
  try { lang = window.localStorage.getItem("minimind-course-lang") || "zh"; } catch (e) {}
  if (lang !== "en") lang = "zh";
  window.location.replace(lang + "/ROOT.html");
</script>
</head>
<body>
<p><a href="zh/ROOT.html">中文</a> · <a href="en/ROOT.html" lang="en">English</a></p>
</body>
</html>
"""


def assemble(out: Path, toc: dict, manifest: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for lang in LANGS:
        shutil.rmtree(out / lang, ignore_errors=True)
        shutil.copytree(GENERATED / lang / "_build" / "html", out / lang)
    root = toc["root"]["name"]
    (out / "index.html").write_text(LANDING.replace("ROOT", root), encoding="utf-8")
    (out / ".nojekyll").write_text("", encoding="utf-8")  # serve _static/ on GitHub Pages
    info = {"root": root, "langs": list(LANGS), "pages": manifest}
    (out / "site-manifest.json").write_text(
        json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8"
    )


# ---- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m book.build", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--profile",
        default=os.environ.get("MINIMIND_PROFILE", "tiny"),
        help="MINIMIND_PROFILE for the kernels (default: $MINIMIND_PROFILE, else tiny)",
    )
    ap.add_argument(
        "--executed", type=Path, help="folder of already executed <name>.ipynb to reuse"
    )
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="chapter folder")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "html", help="site folder")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell (900)")
    ap.add_argument(
        "--chapters", nargs="+", metavar="NAME", help="only these chapters, e.g. 01_tokenizer"
    )
    args = ap.parse_args(argv)

    start = time.perf_counter()
    toc = read_toc(args.notebooks.resolve(), args.chapters)
    pages = all_pages(toc)
    problems = bilingual.check(p["src"] for p in pages)
    if problems:
        print("\n".join(map(str, problems)), file=sys.stderr)
        raise SystemExit(f"[site] {len(problems)} bilingual problem(s): fix the pairing first")
    print(f"[site] pages: {', '.join(p['name'] for p in pages)}", flush=True)

    os.environ.update(QUIET_ENV, MINIMIND_PROFILE=args.profile)
    notebooks = executed_chapters(toc, args.executed, args.timeout)
    manifest = split_tree(toc, notebooks)
    write_configs(toc)
    for lang in LANGS:
        jupyter_book(lang)
    assemble(args.out.resolve(), toc, manifest)
    print(f"[site] built {args.out} in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
