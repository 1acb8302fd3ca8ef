"""The built book in a real headless browser (Debian's chromium + chromedriver).

Every page of ``_build/html`` is opened from disk with no network, in a desktop window
(1280 px) and on a phone's screen (390 px). On both it must load without console errors,
typeset its math with the MathJax copy shipped in the book (no CDN) and without a TeX error
box, load every image, link only to files that exist, offer the Colab launch button (chapter
pages) and never make the page itself scroll sideways.

* At 1280 px nothing needs to scroll: no display equation and no printed output is wider than
  its column, and no chapter image is shown at less than 2/3 of its natural width (a figure
  drawn wider than the column is shrunk, and its text with it, until it cannot be read).
* At 390 px a wide equation or printed table scrolls inside its own box (``book_outputs.css``)
  instead of being cut at the screen's edge, and an equation's number does not lie on the
  equation. Images are not held to their natural width there: a phone shows every figure at
  the screen's width and the reader zooms in.

A screenshot of each page at each width goes to ``_build/screens/`` for a person to look at.
``make test`` builds the book and installs the browser first (``make browser``).
"""

from __future__ import annotations

import html as html_module
import pkgutil
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENS = ROOT / "_build" / "screens"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
DESKTOP, PHONE = 1280, 390
MIN_IMAGE_SCALE = 2 / 3


def book_pages() -> list:
    if not (HTML / "index.html").exists():
        return []
    return sorted(p for p in (HTML / "book").glob("*.html"))


def toc_pages() -> set:
    """The pages ``_toc.yml`` lists under ``book/`` (the root and every chapter and reference page)."""
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root"):
                    found.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    return {Path(f).name for f in found if f.startswith("book/")}


def _need_the_book() -> None:
    if not (HTML / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make book` first (make test does)")


@pytest.fixture(scope="module", params=[DESKTOP, PHONE], ids=["1280px", "390px"])
def browser(request):
    _need_the_book()
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed: `make browser` installs Debian's packages")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    width = request.param
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    if width == PHONE:  # a phone's viewport, touch and pixel ratio, not only a narrow window
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": PHONE, "height": 844,
                                                                              "pixelRatio": 3.0}})
    else:
        options.add_argument(f"--window-size={DESKTOP},1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.width = width
    SCREENS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait_for_mathjax(driver) -> int:
    """Number of typeset formulas once MathJax's startup promise has settled (0 if no MathJax)."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const count = () => document.querySelectorAll('mjx-container').length;
        if (!window.MathJax || !window.MathJax.startup) { done(count()); return; }
        window.MathJax.startup.promise.then(() => done(count())).catch(() => done(-1));
    """)


def test_the_book_was_built_with_every_page_of_the_toc():
    pages = book_pages()
    if not pages:
        pytest.fail("no built book in _build/html: run `make book` first (make test does)")
    assert {p.stem for p in pages} == toc_pages(), [p.name for p in pages]


# what a wide box does at the phone's width: it must scroll itself, or sit in a box that does
_SCROLLS = """
    const scrolls = e => { for (let n = e; n && n !== document.body; n = n.parentElement) {
        if (['auto', 'scroll'].includes(getComputedStyle(n).overflowX) && n.scrollWidth > n.clientWidth - 1
            && n.getBoundingClientRect().right <= window.innerWidth + 1) return true; }
        return false; };
"""


@pytest.mark.parametrize("page", book_pages(), ids=lambda p: p.stem)
def test_page_in_a_real_browser(browser, page):
    width = browser.width
    browser.get(page.as_uri())
    formulas = _wait_for_mathjax(browser)
    browser.save_screenshot(str(SCREENS / f"{page.stem}_{width}.png"))

    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors on {page.name}: {errors[:3]}"

    html = page.read_text()
    has_math = "\\(" in html or "\\[" in html or 'class="math' in html
    if has_math:
        assert formulas > 0, f"{page.name}: math on the page but none typeset (MathJax not loaded offline?)"
        raw = browser.execute_script(
            "return Array.from(document.querySelectorAll('.math')).filter("
            "e => !e.querySelector('mjx-container')).length")
        assert raw == 0, f"{page.name}: {raw} formulas left as raw LaTeX"
        # a TeX error typesets as a red box (e.g. "\\tag not allowed in split environment")
        merrors = browser.execute_script(
            "return Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error')"
            " || e.textContent)")
        assert not merrors, f"{page.name}: MathJax errors {merrors[:3]}"
        wide = browser.execute_script(_SCROLLS + (
            "return Array.from(document.querySelectorAll('div.math, mjx-container[display=\"true\"]'))"
            ".filter(e => e.scrollWidth > e.clientWidth + 1 && " + ("true" if width == DESKTOP else "!scrolls(e)") + ")"
            ".map(e => `${e.scrollWidth} px in ${e.clientWidth} px: ${e.textContent.trim().slice(0, 40)}`)"))
        what = "wider than the column" if width == DESKTOP else "cut off (wider than the screen, not scrolling)"
        assert not wide, f"{page.name}: display equations {what} at {width} px: {wide[:3]}"
        # an equation's number beside (desktop) or above (phone) its equation, never on it
        overlaps = browser.execute_script(
            "return Array.from(document.querySelectorAll('div.math')).filter(d => {"
            "  const n = d.querySelector('span.eqno'), m = d.querySelector('mjx-container');"
            "  if (!n || !m) return false;"
            "  const a = n.getBoundingClientRect(), b = m.querySelector('mjx-math').getBoundingClientRect();"
            "  return a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;"
            "}).map(d => d.textContent.trim().slice(0, 40))")
        assert not overlaps, f"{page.name}: equation numbers on top of their equations at {width} px: {overlaps[:3]}"
    assert "cdn.jsdelivr" not in html and "mathjax@3" not in html, f"{page.name} loads MathJax from a CDN"

    # printed outputs: at 1280 px none is wider than its column (a long line wraps); at 390 px
    # they keep their lines (a wrapped table falls apart) and a wider one scrolls in its own box
    cut = browser.execute_script(_SCROLLS + (
        "return Array.from(document.querySelectorAll('div.cell_output pre'))"
        ".filter(e => e.scrollWidth > e.clientWidth + 1 && " + ("true" if width == DESKTOP else "!scrolls(e)") + ")"
        ".map(e => `${e.scrollWidth} px in ${e.clientWidth} px: ${e.textContent.trim().slice(0, 40)}`)"))
    what = "wider than the column" if width == DESKTOP else "cut off (wider than the screen, not scrolling)"
    assert not cut, f"{page.name}: printed outputs {what} at {width} px: {cut[:3]}"

    # the page itself never scrolls sideways: whatever is wide scrolls in its own box (on a
    # phone, a page wider than the screen makes the browser zoom out: innerWidth grows)
    overflow = browser.execute_script(
        f"return Math.max(document.documentElement.scrollWidth, window.innerWidth) - {width}")
    assert overflow <= 1, f"{page.name}: the page is {overflow} px wider than the {width} px screen"

    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.getAttribute('src'))")
    assert not broken, f"{page.name}: images that did not load: {broken[:3]}"
    if width == DESKTOP:
        shrunk = browser.execute_script(
            "return Array.from(document.querySelectorAll('article img')).filter(i => i.naturalWidth > 0)"
            f".map(i => [i.getBoundingClientRect().width / i.naturalWidth, i.naturalWidth,"
            " Math.round(i.getBoundingClientRect().width), (i.getAttribute('src') || '').slice(0, 60)])"
            f".filter(r => r[0] < {MIN_IMAGE_SCALE})")
        assert not shrunk, (f"{page.name}: images shown at less than 2/3 of their natural width at 1280 px "
                            f"(scale, natural px, shown px, src): {shrunk[:3]}")

    hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    missing = []
    for href in hrefs:
        url = urlparse(href)
        if url.scheme == "file" and not Path(unquote(url.path)).exists():
            missing.append(href)
    assert not missing, f"{page.name}: internal links to missing files: {missing[:3]}"

    if page.stem[:2].isdigit():  # a chapter: the Colab launch button must be there
        colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/github/")]
        assert colab and colab[0].endswith(f"book/{page.stem}.ipynb"), f"{page.name}: no Colab launch link"

    if width == PHONE:
        wrapped = browser.execute_script(
            "return Array.from(document.querySelectorAll('div.cell_output pre'))"
            ".filter(e => getComputedStyle(e).whiteSpace !== 'pre').length")
        assert wrapped == 0, f"{page.name}: {wrapped} printed outputs wrap their lines at 390 px (book_outputs.css?)"


def test_api_page_documents_every_module_and_links_its_chapter():
    """Every module of ris_lite (the CLI included) is on the API page, and its entry links to a
    chapter of the book: the module's docstring names it (tests/test_book.py), the API page's
    extension (``book/_ext/api_pages.py``) turns the name into a link. No docstring shows a raw
    role (one typed inside a literal prints as it was typed)."""
    _need_the_book()
    import ris_lite

    html = (HTML / "book" / "api.html").read_text()
    modules = {m.name for m in pkgutil.walk_packages(ris_lite.__path__, "ris_lite.") if not m.name.endswith("__main__")}
    modules.add("ris_lite")
    starts = {m.group(1): m.start() for m in re.finditer(r'id="module-([\w.]+)"', html)}
    assert modules <= set(starts), f"modules missing from the API page: {sorted(modules - set(starts))}"
    order = sorted(starts.values()) + [len(html)]
    unlinked = []
    for name, start in starts.items():
        section = html[start:order[order.index(start) + 1]]
        # the module's own text, up to its first member
        own = section.split('<dl class="py')[0]
        if name != "ris_lite" and not re.search(r'href="\d\d_\w+\.html(#[\w-]*)?"', own):
            unlinked.append(name)
    assert not unlinked, f"API entries with no link to the chapter that explains them: {unlinked}"
    # a role inside a ``literal`` (or a broken one) is printed as it was typed
    text = html_module.unescape(re.sub(r"<[^>]+>", "", html))
    raw = re.findall(r"\S{0,30}:(?:func|class|meth|mod|attr|data|obj|doc|ref):`[^`]*`", text)
    assert not raw, f"raw reST roles shown on the API page: {raw[:5]}"
