"""Tune the dense CRF of RIS+CRF for the people model on the stand-in's VALIDATION scenes only
(book chapter ``11_people``; the rosettes' search is ``tune_crf.py``, chapter ``09_crf``).

RIS's kept soft masks and step scores are computed once on the 64 validation scenes; then the
same coordinate search as ``tune_crf.py`` (one parameter at a time over a short list, ``--rounds``
passes; its ``SEARCH``, widened where a first people search ended on the edge of a list) keeps a
change when it raises the validation criterion, the sum of Table 1's two numbers, APʳ(0.5) +
APʳ Ave (VOC/SDS rule), with each refined instance scored by its step
(``people_eval.refined_detections``). Mean field runs on Krähenbühl's permutohedral
lattice (a 128 x 128 scene has 16,384 pixels, over ``AUTO_EXACT_MAX_PIXELS``); the file stores
``backend="auto"``, which picks the lattice there. The test scenes are never read. Writes
``OUT/people_crf.json`` (``load_pretrained("people").crf_config``) and
``OUT/people_crf_search.csv`` (every trial).

    python benchmarks/tune_people_crf.py --rounds 2 --out ris_lite/pretrained
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import torch
from tune_crf import SEARCH

from ris_lite import load_pretrained
from ris_lite.data.people import PeopleDataset
from ris_lite.evaluation.people_eval import (
    predictions_region_ap,
    refined_detections,
    ris_detections,
)
from ris_lite.model.crf import CRFConfig

#: ``tune_crf.SEARCH`` with longer-range, stronger appearance kernels: the first search for people
#: (2 rounds) ended on the largest weight (24) and width (16 px) of the rosettes' lists
PEOPLE_SEARCH = {**SEARCH, "appearance_xy": [*SEARCH["appearance_xy"], 24.0, 32.0],
                 "appearance_weight": [*SEARCH["appearance_weight"], 32.0, 48.0, 64.0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=10, help="as benchmarks/bench_people.py")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/crf_tuning")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    model = load_pretrained("people")
    val = PeopleDataset("val", size=tuple(model.config.input_size))
    images = torch.stack([val[i][0] for i in range(len(val))])
    gts = [val[i][1].numpy() for i in range(len(val))]
    kept = []
    for s in range(0, len(images), 16):
        kept += model.kept_masks(images[s:s + 16], a.max_steps, return_scores=True)
    ris = predictions_region_ap(ris_detections(model, images, a.max_steps), gts)
    print(f"RIS alone on {len(val)} validation scenes: AP^r(0.5) {100 * ris['ap50']:.1f}, "
          f"AP^r Ave {100 * ris['ap_mean']:.1f}")

    trials = []

    def score(config: CRFConfig) -> dict:
        t = time.perf_counter()
        r = predictions_region_ap([refined_detections(im, m, sc, config) for im, (m, sc) in zip(images, kept)], gts)
        trials.append({**config.to_dict(), "ap50": r["ap50"], "ap_mean": r["ap_mean"],
                       "seconds_per_scene": (time.perf_counter() - t) / len(images)})
        print(f"  AP^r(0.5) {100 * r['ap50']:.2f} AP^r Ave {100 * r['ap_mean']:.2f}  {config}", flush=True)
        return r

    def criterion(r: dict) -> float:
        return r["ap50"] + r["ap_mean"]

    best = CRFConfig(backend="lattice")
    best_r = score(best)
    for _ in range(a.rounds):
        for name, values in PEOPLE_SEARCH.items():
            for v in values:
                if getattr(best, name) == v:
                    continue
                candidate = replace(best, **{name: v})
                r = score(candidate)
                if criterion(r) > criterion(best_r):
                    best, best_r = candidate, r
    with open(out / "people_crf_search.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(trials[0]))
        w.writeheader()
        w.writerows(trials)
    replace(best, backend="auto").save(out / "people_crf.json")
    print(f"chosen on validation: AP^r(0.5) {100 * best_r['ap50']:.1f} (RIS {100 * ris['ap50']:.1f}), "
          f"AP^r Ave {100 * best_r['ap_mean']:.1f} (RIS {100 * ris['ap_mean']:.1f}) -> {out / 'people_crf.json'}")


if __name__ == "__main__":
    main()
