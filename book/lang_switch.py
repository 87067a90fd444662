"""Sphinx extension for the two-language site: sibling links, the switch, offline MathJax.

The site is built twice from the split trees, once per language, into `<out>/zh/` and
`<out>/en/`, with the same page names. Each page gets `<link rel="alternate" hreflang>`
to its sibling in the other language; `static/lang-switch.js` turns that link into the
switch and remembers the choice. MathJax is served from the site itself (the reader may
be offline, and the build must not fetch anything), from the `sphinx-mathjax-offline` wheel.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util.fileutil import copy_asset

STATIC = Path(__file__).resolve().parent / "static"
LABELS = {"zh": "中文", "en": "English"}
# Only what tex-chtml.js loads (input extensions, CHTML fonts, menu): not the whole 24 MB.
MATHJAX_PARTS = ["tex-chtml.js", "input", "output/chtml", "ui", "a11y"]


def _mathjax_dir() -> Path:
    try:
        dist = metadata.distribution("sphinx-mathjax-offline")
    except metadata.PackageNotFoundError as err:
        raise ExtensionError(
            "the site serves MathJax itself: pip install sphinx-mathjax-offline==0.0.2"
        ) from err
    return Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))


def _config_inited(app, config) -> None:
    if config.site_lang not in LABELS:
        raise ExtensionError(f"site_lang must be one of {sorted(LABELS)}, got {config.site_lang!r}")
    config.html_static_path.append(str(STATIC))
    config.mathjax_path = "mathjax/tex-chtml.js"
    config.html_favicon = str(STATIC / "favicon.svg")
    _mathjax_dir()  # fail early, not after the whole build


def _page_context(app, pagename, templatename, context, doctree) -> None:
    # pages sit under <out>/<lang>/; the sibling has the same name under the other language
    up = "../" * (pagename.count("/") + 1)
    tags = [f'<meta name="site-lang" content="{app.config.site_lang}">']
    tags += [
        f'<link rel="alternate" hreflang="{lang}" href="{up}{lang}/{pagename}.html" '
        f'title="{label}">'
        for lang, label in LABELS.items()
        if lang != app.config.site_lang
    ]
    context["metatags"] = context.get("metatags", "") + "\n".join(tags) + "\n"


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    # Under jupyter-book 1, sphinx-thebe's `const THEBE_JS_URL` inline script is added twice
    # (once with filename None, once with ""), a SyntaxError in the console of every page.
    # The list is shared with later handlers, so dedupe it in place.
    files = context.get("script_files")
    if not isinstance(files, list):
        return
    seen, unique = set(), []
    for js in files:
        attrs = getattr(js, "attributes", {})
        key = (getattr(js, "filename", js) or "", tuple(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    files[:] = unique


def _copy_mathjax(app, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    src, dest = _mathjax_dir(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        if (src / part).is_dir():
            copy_asset(str(src / part), str(dest / part))
        else:
            dest.mkdir(parents=True, exist_ok=True)
            copy_asset(str(src / part), str(dest))


def setup(app):
    app.add_config_value("site_lang", "zh", "html")
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context)
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after the others
    app.connect("build-finished", _copy_mathjax)
    app.add_js_file("lang-switch.js")
    app.add_css_file("lang-switch.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
