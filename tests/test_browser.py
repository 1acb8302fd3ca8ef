"""The built book in a real headless browser (Debian's chromium + chromedriver).

Every page of ``_build/html`` is opened from disk with no network: it must load without
console errors, typeset its math with the MathJax copy shipped in the book (no CDN) without a
TeX error box or a display equation wider than its column (cut off) at 1280 px, keep every
printed output inside its column, load every image, link only to files that exist, and
(chapter pages) offer the Colab launch button. A screenshot of each page goes to
``_build/screens/`` for a person to look at.

``make test`` builds the book and installs the browser first (``make browser``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENS = ROOT / "_build" / "screens"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def book_pages() -> list:
    if not (HTML / "index.html").exists():
        return []
    return sorted(p for p in (HTML / "book").glob("*.html"))


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make book` first (make test does)")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed: `make browser` installs Debian's packages")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
                "--allow-file-access-from-files", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
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


def test_the_book_was_built_with_every_chapter():
    pages = book_pages()
    if not pages:
        pytest.fail("no built book in _build/html: run `make book` first (make test does)")
    assert len(pages) >= 9, [p.name for p in pages]


@pytest.mark.parametrize("page", book_pages(), ids=lambda p: p.stem)
def test_page_in_a_real_browser(browser, page):
    browser.get(page.as_uri())
    formulas = _wait_for_mathjax(browser)
    browser.save_screenshot(str(SCREENS / f"{page.stem}.png"))

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
        # a display equation wider than its column is cut off (centred, the left edge goes first)
        wide = browser.execute_script(
            "return Array.from(document.querySelectorAll('div.math, mjx-container[display=\"true\"]'))"
            ".filter(e => e.scrollWidth > e.clientWidth + 1)"
            ".map(e => `${e.scrollWidth} px in ${e.clientWidth} px: ${e.textContent.trim().slice(0, 40)}`)")
        assert not wide, f"{page.name}: display equations wider than the column at 1280 px: {wide[:3]}"
    assert "cdn.jsdelivr" not in html and "mathjax@3" not in html, f"{page.name} loads MathJax from a CDN"

    # a printed output wider than its box hides its end behind a scrollbar (book_outputs.css
    # wraps long lines; this fails if the stylesheet is lost or a token cannot be broken)
    cut = browser.execute_script(
        "return Array.from(document.querySelectorAll('div.cell_output pre'))"
        ".filter(e => e.scrollWidth > e.clientWidth + 1)"
        ".map(e => `${e.scrollWidth} px in ${e.clientWidth} px: ${e.textContent.trim().slice(0, 40)}`)")
    assert not cut, f"{page.name}: printed outputs wider than the column at 1280 px: {cut[:3]}"

    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.getAttribute('src'))")
    assert not broken, f"{page.name}: images that did not load: {broken[:3]}"

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
