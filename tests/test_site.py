"""The built study site, opened in headless Chromium.

Runs after the site build (`python -m book.build`, i.e. `make site`); builds it first when
`_build/html` (or $SITE_DIR) has no manifest. Needs Debian's chromium and chromium-driver
(scripts/ensure_chromium.sh installs them). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from selenium import webdriver

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("SITE_DIR", ROOT / "_build" / "html"))
ARTIFACTS = ROOT / "test-artifacts"
STORAGE_KEY = "minimind-course-lang"  # book/static/lang-switch.js

pytestmark = pytest.mark.site


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def manifest() -> dict:
    if not (SITE / "site-manifest.json").exists():
        cmd = [sys.executable, "-m", "book.build", "--out", str(SITE)]
        subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads((SITE / "site-manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def base_url(manifest):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output readable
            pass

    handler = functools.partial(Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium / chromedriver missing: run scripts/ensure_chromium.sh")
    opts = Options()
    opts.binary_location = chromium  # given explicitly, selenium never tries to download one
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# ---- helpers ----------------------------------------------------------------------------------


def open_page(driver, url: str) -> list[str]:
    """Load `url`, wait for scripts and MathJax; return the SEVERE console messages."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    driver.set_script_timeout(30)
    driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        const mj = window.MathJax;
        if (mj && mj.startup && mj.startup.promise) mj.startup.promise.then(done, done);
        else done();"""
    )
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def page_state(driver) -> dict:
    return driver.execute_script(
        """const main = document.querySelector("main") || document.body;
        const norm = (s) => s.replace(/\\s+/g, " ").trim();
        const heads = [...main.querySelectorAll("h1, h2, h3, h4, h5, h6")].map((h) => {
            const c = h.cloneNode(true);
            c.querySelectorAll(".headerlink").forEach((a) => a.remove());
            return norm(c.textContent);
        });
        const link = document.querySelector(".lang-switch a.lang-switch-link");
        return {
            lang: document.documentElement.lang,
            text: norm(main.textContent),
            headings: heads,
            codeCells: main.querySelectorAll("div.cell div.cell_input").length,
            images: [...main.querySelectorAll("div.cell_output img")].map(
                (i) => [i.complete, i.naturalWidth, i.naturalHeight]),
            formulas: main.querySelectorAll("mjx-container[display='true']").length,
            mathErrors: main.querySelectorAll("mjx-merror").length,
            switchHref: link ? link.href : null,
            switchLang: link ? link.hreflang : null,
            sidebar: [...document.querySelectorAll(".bd-sidebar-primary nav a.reference.internal")]
                .map((a) => norm(a.textContent)),
        };"""
    )


def normalize(text: str) -> str:
    return " ".join(text.split())


def page_problems(state: dict, page: dict, lang: str, other: str, base: str) -> list[str]:
    """Everything wrong with one rendered page, compared with what the build recorded."""
    out = []
    if not state["lang"].lower().startswith(lang):
        out.append(f"<html lang> is {state['lang']!r}")
    own = page["headings"][lang]
    missing = [h for h in own if h not in state["headings"]]
    if missing:
        out.append(f"headings missing: {missing}")
    foreign = [h for h in page["headings"][other] if h not in own and h in state["headings"]]
    if foreign:
        out.append(f"{other} headings shown: {foreign}")
    text = state["text"]
    absent = [s for s in page["snippets"][lang] if normalize(s) not in text]
    if absent:
        out.append(f"{lang} prose missing: {absent}")
    leaked = [s for s in page["snippets"][other] if normalize(s) in text]
    if leaked:
        out.append(f"{other} prose shown: {leaked}")
    if state["codeCells"] != page["code_cells"]:
        out.append(f"{state['codeCells']} code cells shown, the notebook has {page['code_cells']}")
    if len(state["images"]) != page["images"]:
        out.append(f"{len(state['images'])} plots shown, the notebook has {page['images']}")
    broken = [i for i in state["images"] if not (i[0] and i[1] > 0 and i[2] > 0)]
    if broken:
        out.append(f"plots that did not load: {broken}")
    if state["formulas"] < page["formulas"] or state["mathErrors"]:
        out.append(
            f"{state['formulas']} display formulas typeset, {page['formulas']} expected, "
            f"{state['mathErrors']} MathJax errors"
        )
    sibling = f"{base}{other}/{page['name']}.html"
    if state["switchHref"] != sibling or state["switchLang"] != other:
        out.append(
            f"switch goes to {state['switchHref']!r} ({state['switchLang']}), not {sibling!r}"
        )
    return out


def screenshot(driver, name: str, max_height: int = 16000) -> Path:
    """Full-page screenshot under test-artifacts/: the viewport is stretched to the page.

    (Capturing "beyond the viewport" instead leaves scrollable code cells blank.)
    """
    ARTIFACTS.mkdir(exist_ok=True)
    width, height = driver.execute_script(
        "const e = document.documentElement; return [e.clientWidth, e.scrollHeight];"
    )
    metrics = {"width": width, "height": min(height, max_height), "deviceScaleFactor": 1}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False})
    try:
        driver.execute_async_script(  # two frames: relayout and paint at the new size
            "const done = arguments[0];"
            "requestAnimationFrame(() => requestAnimationFrame(() => done()));"
        )
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path = ARTIFACTS / name
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


# ---- tests ---------------------------------------------------------------------------------------


def test_manifest_lists_pages_in_order(manifest):
    names = [p["name"] for p in manifest["pages"]]
    assert names[0] == manifest["root"]
    chapters = [n for n in names if re.match(r"\d\d_", n)]
    assert chapters, "no chapter was built"
    assert chapters == sorted(chapters), "chapters out of pipeline order"
    for lang in manifest["langs"]:
        for name in names:
            assert (SITE / lang / f"{name}.html").is_file(), f"{lang}/{name}.html not built"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_renders_one_language(browser, base_url, manifest, lang):
    other = "en" if lang == "zh" else "zh"
    problems, sidebar = [], None
    for page in manifest["pages"]:
        errors = open_page(browser, f"{base_url}{lang}/{page['name']}.html")
        state = page_state(browser)
        sidebar = sidebar or state["sidebar"]
        found = [f"console: {e}" for e in errors] + page_problems(
            state, page, lang, other, base_url
        )
        problems += [f"{lang}/{page['name']}: {p}" for p in found]
    assert not problems, "\n".join(problems)
    # the sidebar lists every page but the root, in toc order, under its own-language title
    titles = [p["headings"][lang][0] for p in manifest["pages"][1:]]
    assert [t for t in sidebar if t in titles] == titles, sidebar


def test_plots_are_images(browser, base_url, manifest):
    with_plots = [p for p in manifest["pages"] if p["images"]]
    assert with_plots, "no built page has a plot: the image check would prove nothing"
    for lang in manifest["langs"]:
        for page in with_plots:
            open_page(browser, f"{base_url}{lang}/{page['name']}.html")
            sizes = page_state(browser)["images"]
            assert len(sizes) == page["images"] and all(w > 0 for _, w, _ in sizes), (lang, sizes)


def test_switch_goes_to_sibling_and_is_remembered(browser, base_url, manifest):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chapter = next(p["name"] for p in manifest["pages"] if p["kind"] == "chapter")
    root = manifest["root"]
    open_page(browser, f"{base_url}index.html")
    browser.execute_script("window.localStorage.clear()")

    open_page(browser, f"{base_url}index.html")
    assert browser.current_url == f"{base_url}zh/{root}.html", "the default language is Chinese"

    for here, there in (("zh", "en"), ("en", "zh")):
        start = f"{base_url}{here}/{chapter}.html"
        open_page(browser, start)
        browser.find_element(By.CSS_SELECTOR, ".lang-switch a.lang-switch-link").click()
        WebDriverWait(browser, 30).until(lambda d, start=start: d.current_url != start)
        assert browser.current_url == f"{base_url}{there}/{chapter}.html"
        stored = browser.execute_script(f"return window.localStorage.getItem('{STORAGE_KEY}')")
        assert stored == there
        open_page(browser, f"{base_url}index.html")
        assert browser.current_url == f"{base_url}{there}/{root}.html", "choice not remembered"


def test_screenshots(browser, base_url, manifest):
    """One chapter in each language (one with a plot when there is one), for a human to look at."""
    chapters = [p for p in manifest["pages"] if p["kind"] == "chapter"]
    page = next((p for p in chapters if p["images"]), chapters[0])
    for lang in manifest["langs"]:
        open_page(browser, f"{base_url}{lang}/{page['name']}.html")
        path = screenshot(browser, f"site-{lang}-{page['name']}.png")
        assert path.stat().st_size > 10_000, f"{path} looks empty"
