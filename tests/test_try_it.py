"""The in-browser page (``book/try_it.md``) in a real headless Chromium, opened from disk with the
browser's default file rules (no ``--allow-file-access-from-files``) and no network.

The page's RIS must give ``RIS.predict``'s label maps (the default model and its rule) on test
plants, its embedding model ``EmbeddingModel.predict``'s; a photo from the test fixtures is
uploaded and runs to the end; no console error; at 390 px nothing runs past the screen.
``make test`` builds the book first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ris_lite import RosetteDataset
from ris_lite.pretrained import DEFAULT_MODEL, load_model

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "_build" / "html" / "book" / "try_it.html"
PHOTO = ROOT / "data" / "fixtures" / "cvppp_a1" / "plant003_rgb.png"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
DESKTOP, PHONE = 1280, 390


def open_page(width: int):
    """A headless Chromium showing the page from disk, every host name unresolvable and every
    request through a proxy that does not exist: a page that needs the network fails here."""
    if not PAGE.exists():
        pytest.fail("no built page _build/html/book/try_it.html: run `make book` first (make test does)")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed: `make browser` installs Debian's packages")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)
    if width == PHONE:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": PHONE, "height": 844,
                                                                              "pixelRatio": 3.0}})
    else:
        options.add_argument(f"--window-size={DESKTOP},1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(180)
    driver.get(PAGE.as_uri())
    driver.execute_async_script("const done = arguments[0]; window.risDemo.ready.then(() => done(true), "
                                "e => done(String(e)));")
    return driver


@pytest.fixture(scope="module", params=[DESKTOP, PHONE], ids=["1280px", "390px"])
def page(request):
    driver = open_page(request.param)
    driver.width = request.param
    yield driver
    driver.quit()


def run(driver, call: str) -> dict:
    """``window.risDemo.<call>``'s result, labels as a list."""
    out = driver.execute_async_script(
        "const done = arguments[0];"
        f"window.risDemo.{call}.then(r => done({{...r, labels: Array.from(r.labels)}}), e => done({{error: String(e)}}));")
    assert "error" not in out, out
    return out


def severe(driver) -> list:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_pages_ris_gives_predicts_label_maps(page):
    if page.width != DESKTOP:
        pytest.skip("the model's arithmetic does not depend on the screen: checked once, at 1280 px")
    model = load_model(DEFAULT_MODEL["name"]).eval()
    test = RosetteDataset("test")
    for i in range(3):
        got = run(page, f"segmentSample({i})")
        want = model.predict(test[i][0], assembly=DEFAULT_MODEL["assembly"], min_size=DEFAULT_MODEL["min_size"])[0]
        assert (got["height"], got["width"]) == tuple(want.shape)
        labels = torch.tensor(got["labels"]).view(want.shape)
        assert got["count"] == int(want.max()), f"plant {i}: the page counts {got['count']}, predict {int(want.max())}"
        assert float((labels == want).float().mean()) >= 0.99
        assert len(got["scores"]) >= got["count"] and min(got["scores"]) >= 0.5 and got["ms"] > 0
    emb = run(page, "segmentSampleEmbedding(0)")
    want = load_model("rosettes_embedding").eval().predict(test[0][0])[0]
    labels = torch.tensor(emb["labels"]).view(want.shape)
    assert emb["count"] == int(want.max()) and float((labels == want).float().mean()) >= 0.99
    assert not severe(page)


def test_an_uploaded_photo_runs_to_the_end(page):
    page.find_element("id", "ris-demo-file").send_keys(str(PHOTO))
    page.execute_async_script(
        "const done = arguments[0]; const t0 = Date.now();"
        "(function wait() { const s = document.getElementById('ris-demo-status').textContent;"
        "  if (s.endsWith('done.') || s.includes('Error') || Date.now() - t0 > 150000) done(s);"
        "  else setTimeout(wait, 200); })();")
    status = page.find_element("id", "ris-demo-status").text
    assert status == f"{PHOTO.name}: done.", status
    steps = page.find_elements("css selector", "#ris-demo-steps figure")
    assert steps, "no step was drawn"
    caption = page.find_element("id", "ris-demo-ris-caption").text
    assert f"{len(steps)} steps" not in caption and "leaves in" in caption
    size = page.execute_script("const c = document.getElementById('ris-demo-input'); return [c.height, c.width];")
    assert size == run_settings(page)["ris"]["photo_size"]
    assert not severe(page)


def run_settings(driver) -> dict:
    return driver.execute_script("return window.risDemo.settings;")


def test_the_page_fits_the_screen(page):
    overflow = page.execute_script(
        f"return Math.max(document.documentElement.scrollWidth, window.innerWidth) - {page.width}")
    assert overflow <= 1, f"the page is {overflow} px wider than the {page.width} px screen"
    right = page.execute_script("return Math.max(...Array.from(document.querySelectorAll('#ris-demo canvas'))"
                                ".map(c => c.getBoundingClientRect().right));")
    assert right <= page.width + 1
