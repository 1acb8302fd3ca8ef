"""RIS vs RIS+CRF on the 100 test plants, and what the CRF costs (book chapter ``09_crf``).

For each shipped model: SBD, |DiC|, DiC, FgBgDice of RIS, of RIS+CRF with the exact backend and
of RIS+CRF with the permutohedral lattice (the parameters tuned on the validation split,
``NAME_crf.json``, or the paper-faithful model's where a model has none), per plant and
averaged, and the share of pixels on which the two backends' label maps agree; then, in the same
run and on the same plants, seconds per plant of the RIS forward pass, of our exact CRF (10
iterations, kernel stored in float32 and in bfloat16) and of Krähenbühl's permutohedral-lattice
code (pydensecrf2), all on ``--threads`` threads.

Then the scaling table (``"scaling"``, for ``--scaling-model``): the same test plants drawn as
frames of each ``--sizes`` at the model's scale where it fits (106 x 100: the model's input;
191 x 180: a whole A1 frame as ``ris-lite`` reads it; 530 x 500: the frame at its file's own
resolution, plants 2.8 times larger than in training), and at each size the seconds per plant
of RIS's forward pass and of each backend and the share of pixels on which the backends agree.
The exact CRF is quadratic in pixels: above ``--exact-max-pixels`` it is not run, and the row
holds its time projected from the largest size measured (``crf_exact_projected``, by N^2).
Writes one JSON (shipped as ``ris_lite/pretrained/crf_test.json``; the book reads it).

    python benchmarks/bench_crf.py --threads 1 --out ris_lite/pretrained/crf_test.json
    python benchmarks/bench_crf.py --quick --out runs/crf_quick.json   # 1 plant: does it run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from ris_lite import RosetteDataset, load_pretrained
from ris_lite.data.rosette import DEFAULT_ZOOM
from ris_lite.evaluation.evaluate import ground_truth_labels
from ris_lite.evaluation.metrics import evaluate_labels, symmetric_best_dice
from ris_lite.model.crf import CRFConfig, lattice_marginals, refine, unary_probabilities
from ris_lite.model.ris import first_claim_labels
from ris_lite.precision import cpu_name


def lattice_seconds(image: torch.Tensor, masks: torch.Tensor, config: CRFConfig) -> float:
    t = time.perf_counter()
    unary = -torch.log(unary_probabilities(masks, config.unary).clamp_min(config.min_probability))
    lattice_marginals(image, unary, config).argmax(0)
    return time.perf_counter() - t


def lattice_config(config: CRFConfig) -> CRFConfig:
    return replace(config, backend="lattice")


def pixel_agreement(a: List[torch.Tensor], b: List[torch.Tensor]) -> float:
    """Share of all pixels on which two lists of label maps agree."""
    return float(sum(int((x == y).sum()) for x, y in zip(a, b)) / sum(x.numel() for x in a))


def scaling(model, config: CRFConfig, sizes: List[Tuple[int, int]], plants: int, exact_max_pixels: int) -> list:
    """One row per frame size: seconds per plant (median) of the forward pass and of each
    backend, and the backends' pixel agreement."""
    zoom = float(model.data_options.get("zoom", DEFAULT_ZOOM))
    rows, largest = [], None  # (h, w, seconds) of the exact CRF's largest measured size
    for h, w in sizes:
        # the model's scale where the frame holds the plant at it, else the whole frame
        frame_zoom = max(1.0, zoom * model.config.input_size[0] / h)
        test = RosetteDataset("test", length=plants, **{**model.data_options, "size": (h, w), "zoom": frame_zoom})
        seconds: Dict[str, list] = {"ris_forward": [], "crf_lattice": [], "crf_exact": []}
        lattice, exact = [], []
        for i in range(len(test)):
            image = test[i][0]
            t = time.perf_counter()
            kept = model.kept_masks(image)[0]
            seconds["ris_forward"].append(time.perf_counter() - t)
            t = time.perf_counter()
            lattice.append(refine(image, kept, lattice_config(config)))
            seconds["crf_lattice"].append(time.perf_counter() - t)
            if h * w <= exact_max_pixels:
                t = time.perf_counter()
                exact.append(refine(image, kept, replace(config, backend="exact")))
                seconds["crf_exact"].append(time.perf_counter() - t)
        row = {"size": [h, w], "pixels": h * w, "zoom": frame_zoom, "plants": plants,
               "seconds_per_plant": {k: float(np.median(v)) if v else None for k, v in seconds.items()},
               "pixel_agreement": pixel_agreement(exact, lattice) if exact else None}
        if exact:
            largest = (h, w, row["seconds_per_plant"]["crf_exact"])
        elif largest is not None:
            row["crf_exact_projected"] = largest[2] * (h * w / (largest[0] * largest[1])) ** 2
            row["crf_exact_projected_from"] = list(largest[:2])
        rows.append(row)
        t = row["seconds_per_plant"]
        print(f"   {h} x {w}: RIS forward {t['ris_forward']:.3f} s, lattice CRF {t['crf_lattice']:.3f} s, exact CRF "
              + (f"{t['crf_exact']:.3f} s, agreement {100 * row['pixel_agreement']:.2f} %" if exact else
                 f"not run (projected by N^2: {row.get('crf_exact_projected', float('nan')):.0f} s)"), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="rosettes,rosettes_canvas")
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--timed-plants", type=int, default=10, help="plants timed per arm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/crf_test.json")
    p.add_argument("--scaling-model", default="rosettes", help="the model of the scaling table ('' = none)")
    p.add_argument("--sizes", default="106x100,191x180,530x500", help="frame sizes of the scaling table")
    p.add_argument("--scaling-plants", type=int, default=3, help="plants timed per size")
    p.add_argument("--exact-max-pixels", type=int, default=40_000,
                   help="the scaling table runs the exact CRF up to this many pixels (191 x 180 = 34,380)")
    p.add_argument("--quick", action="store_true", help="one plant everywhere: checks that it runs")
    a = p.parse_args()
    if a.quick:
        a.plants = a.timed_plants = a.scaling_plants = 1
        a.models = a.models.split(",")[0]
        a.exact_max_pixels = min(a.exact_max_pixels, 106 * 100)
    torch.set_num_threads(a.threads)
    report = {"command": f"python benchmarks/bench_crf.py --plants {a.plants} --threads {a.threads} "
                         f"--sizes {a.sizes} --scaling-plants {a.scaling_plants} --exact-max-pixels {a.exact_max_pixels}",
              "machine": f"{cpu_name()}, {a.threads} threads, torch {torch.__version__}",
              "models": {}}
    for name in a.models.split(","):
        model = load_pretrained(name)
        source = f"{name}_crf.json"
        if model.crf_config is None:  # not tuned for this model: the paper-faithful model's values
            model.crf_config = load_pretrained("rosettes").crf_config
            source = "rosettes_crf.json (not tuned for this model)"
        config = model.crf_config
        exact = replace(config, backend="exact")  # the library's default is auto: this arm is the exact CRF
        test = RosetteDataset("test", length=a.plants, **model.data_options)
        images = [test[i][0] for i in range(len(test))]
        gts = [ground_truth_labels(test, i) for i in range(len(test))]
        kept = [model.kept_masks(im)[0] for im in images]
        ris = [first_claim_labels(m) for m in kept]
        crf = [refine(im, m, exact) for im, m in zip(images, kept)]
        crf_lattice = [refine(im, m, lattice_config(config)) for im, m in zip(images, kept)]
        row = {"crf_config": exact.to_dict(), "crf_config_source": source,
               "ris": evaluate_labels(ris, gts), "ris_crf": evaluate_labels(crf, gts),
               "ris_crf_lattice": evaluate_labels(crf_lattice, gts),
               "lattice_pixel_agreement": pixel_agreement(crf, crf_lattice),
               "sbd_per_plant": {"ris": [symmetric_best_dice(x, g) for x, g in zip(ris, gts)],
                                 "ris_crf": [symmetric_best_dice(x, g) for x, g in zip(crf, gts)],
                                 "ris_crf_lattice": [symmetric_best_dice(x, g) for x, g in zip(crf_lattice, gts)]}}
        # timing arms, interleaved plant by plant so the machine's state is shared
        seconds = {"ris_forward": [], "crf_float32": [], "crf_bfloat16": [], "pydensecrf2_lattice": []}
        for im, m in list(zip(images, kept))[:a.timed_plants]:
            t = time.perf_counter()
            model.kept_masks(im)
            seconds["ris_forward"].append(time.perf_counter() - t)
            for dtype in ("float32", "bfloat16"):
                t = time.perf_counter()
                refine(im, m, replace(exact, kernel_dtype=dtype))
                seconds[f"crf_{dtype}"].append(time.perf_counter() - t)
            seconds["pydensecrf2_lattice"].append(lattice_seconds(im, m, config))
        row["seconds_per_plant"] = {k: float(np.median(v)) for k, v in seconds.items()}
        report["models"][name] = row
        r, c, la = row["ris"], row["ris_crf"], row["ris_crf_lattice"]
        print(f"{name}: RIS SBD {100 * r['sbd']:.1f} |DiC| {r['abs_dic']:.2f} DiC {r['dic']:+.2f} | "
              f"RIS+CRF SBD {100 * c['sbd']:.1f} |DiC| {c['abs_dic']:.2f} DiC {c['dic']:+.2f} | "
              f"lattice SBD {100 * la['sbd']:.1f}, pixels as exact {100 * row['lattice_pixel_agreement']:.2f} %")
        print(f"   seconds per plant (median of {a.timed_plants}): "
              + ", ".join(f"{k} {v:.3f}" for k, v in row["seconds_per_plant"].items()), flush=True)
        if name == a.scaling_model:
            print(f"   scaling, {a.scaling_plants} plant(s) per size:")
            sizes = [tuple(int(v) for v in size.split("x")) for size in a.sizes.split(",")]
            report["scaling"] = {"model": name, "rows": scaling(model, config, sizes, a.scaling_plants,
                                                                 a.exact_max_pixels)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
