"""The in-browser page's speed (issue #48): time per plant in headless Chromium against the Python
forward pass of the same plants, in one run on one machine, and what the page adds to the book.

Both arms use one thread: the page's onnxruntime-web has no threads where the page is opened from
disk (no cross-origin isolation), and torch is set to 1 thread. Each arm runs every plant once to
warm up, then ``--repeats`` times; the median per plant is reported. Targets (issue #48): RIS <=
1.5 s and the embedding model <= 0.5 s per plant in the browser; the book grows by <= 30 MB.
Needs the built book (``make book``) and Debian's chromium (``make browser``).

    python benchmarks/bench_browser.py --out benchmarks/results/browser.json   # ~2 min
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_try_it import DESKTOP, open_page  # noqa: E402  (the test's browser: from disk, no network)

from ris_lite import RosetteDataset  # noqa: E402
from ris_lite.precision import cpu_name  # noqa: E402
from ris_lite.pretrained import DEFAULT_MODEL, load_model  # noqa: E402


def browser_ms(driver, call: str) -> float:
    return driver.execute_async_script(
        f"const done = arguments[0]; window.risDemo.{call}.then(r => done(r.ms), e => done(-1));")


def python_ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plants", type=int, default=6, help="the page's sample plants to time (it ships 6)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    ris = load_model(DEFAULT_MODEL["name"]).eval()
    emb = load_model("rosettes_embedding").eval()
    test = RosetteDataset("test")
    driver = open_page(DESKTOP)
    rows = []
    try:
        for i in range(a.plants):
            image = test[i][0]
            arms = {
                "browser_ris_ms": lambda i=i: browser_ms(driver, f"segmentSample({i})"),
                "browser_embedding_ms": lambda i=i: browser_ms(driver, f"segmentSampleEmbedding({i})"),
                "python_ris_ms": lambda x=image: python_ms(lambda: ris.predict(
                    x, assembly=DEFAULT_MODEL["assembly"], min_size=DEFAULT_MODEL["min_size"])),
                "python_embedding_ms": lambda x=image: python_ms(lambda: emb.predict(x)),
            }
            row = {"plant": i}
            for name, run in arms.items():
                run()  # warm-up
                row[name] = round(statistics.median(run() for _ in range(a.repeats)), 1)
            rows.append(row)
        version = driver.capabilities.get("browserVersion")
    finally:
        driver.quit()
    assets = ROOT / "_build" / "html" / "_static" / "ris_demo"
    mean = {k: round(statistics.mean(r[k] for r in rows), 1) for k in rows[0] if k != "plant"}
    out = {"command": "python benchmarks/bench_browser.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "torch": torch.__version__,
           "chromium": version, "model": DEFAULT_MODEL["name"], "threads": 1, "plants": rows, "mean": mean,
           "page_assets_mb": round(sum(f.stat().st_size for f in assets.iterdir()) / 2**20, 2),
           "targets": {"browser_ris_ms": 1500, "browser_embedding_ms": 500, "page_assets_mb": 30}}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
