"""RIS vs RIS+CRF on the 100 test plants, and what the CRF costs (book chapter ``09_crf``).

For each shipped model: SBD, |DiC|, DiC, FgBgDice of RIS and of RIS+CRF (the parameters tuned on
the validation split, ``NAME_crf.json``, or the paper-faithful model's where a model has none),
per plant and averaged; then, in the same run and on
the same plants, seconds per plant of the RIS forward pass, of our exact CRF (10 iterations,
kernel stored in float32 and in bfloat16) and of Krähenbühl's permutohedral-lattice code
(pydensecrf2), all on ``--threads`` threads. Writes one JSON (shipped as
``ris_lite/pretrained/crf_test.json``; the book reads it).

    python benchmarks/bench_crf.py --out ris_lite/pretrained/crf_test.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ris_lite import RosetteDataset, load_pretrained
from ris_lite.evaluation.evaluate import ground_truth_labels
from ris_lite.evaluation.metrics import evaluate_labels, symmetric_best_dice
from ris_lite.model.crf import CRFConfig, lattice_marginals, refine, unary_probabilities
from ris_lite.model.ris import first_claim_labels


def lattice_seconds(image: torch.Tensor, masks: torch.Tensor, config: CRFConfig) -> float:
    t = time.perf_counter()
    unary = -torch.log(unary_probabilities(masks, config.unary).clamp_min(config.min_probability))
    lattice_marginals(image, unary, config).argmax(0)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="rosettes,rosettes_canvas")
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--timed-plants", type=int, default=10, help="plants timed per arm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/crf_test.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    report = {"command": f"python benchmarks/bench_crf.py --plants {a.plants} --threads {a.threads}",
              "machine": f"{platform.processor() or platform.machine()}, {a.threads} threads, torch {torch.__version__}",
              "models": {}}
    for name in a.models.split(","):
        model = load_pretrained(name)
        source = f"{name}_crf.json"
        if model.crf_config is None:  # not tuned for this model: the paper-faithful model's values
            model.crf_config = load_pretrained("rosettes").crf_config
            source = "rosettes_crf.json (not tuned for this model)"
        config = model.crf_config
        test = RosetteDataset("test", length=a.plants, **model.data_options)
        images = [test[i][0] for i in range(len(test))]
        gts = [ground_truth_labels(test, i) for i in range(len(test))]
        kept = [model.kept_masks(im)[0] for im in images]
        ris = [first_claim_labels(m) for m in kept]
        crf = [refine(im, m, config) for im, m in zip(images, kept)]
        row = {"crf_config": config.to_dict(), "crf_config_source": source,
               "ris": evaluate_labels(ris, gts), "ris_crf": evaluate_labels(crf, gts),
               "sbd_per_plant": {"ris": [symmetric_best_dice(x, g) for x, g in zip(ris, gts)],
                                 "ris_crf": [symmetric_best_dice(x, g) for x, g in zip(crf, gts)]}}
        # timing arms, interleaved plant by plant so the machine's state is shared
        seconds = {"ris_forward": [], "crf_float32": [], "crf_bfloat16": [], "pydensecrf2_lattice": []}
        for im, m in list(zip(images, kept))[:a.timed_plants]:
            t = time.perf_counter()
            model.kept_masks(im)
            seconds["ris_forward"].append(time.perf_counter() - t)
            for dtype in ("float32", "bfloat16"):
                t = time.perf_counter()
                refine(im, m, replace(config, kernel_dtype=dtype))
                seconds[f"crf_{dtype}"].append(time.perf_counter() - t)
            seconds["pydensecrf2_lattice"].append(lattice_seconds(im, m, config))
        row["seconds_per_plant"] = {k: float(np.median(v)) for k, v in seconds.items()}
        report["models"][name] = row
        r, c = row["ris"], row["ris_crf"]
        print(f"{name}: RIS SBD {100 * r['sbd']:.1f} |DiC| {r['abs_dic']:.2f} DiC {r['dic']:+.2f} | "
              f"RIS+CRF SBD {100 * c['sbd']:.1f} |DiC| {c['abs_dic']:.2f} DiC {c['dic']:+.2f}")
        print(f"   seconds per plant (median of {a.timed_plants}): "
              + ", ".join(f"{k} {v:.3f}" for k, v in row["seconds_per_plant"].items()), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
