"""Label assembly at inference, no retraining: first claim vs score-weighted argmax, and a minimum
segment size, chosen on the validation plants and scored on the test plants, for every model.

Chapter ``book/07_inference`` and ``book/08_evaluation`` show this benchmark's JSON
(``ris_lite.model.assembly``, ours). For each model, one forward pass of ``max_steps`` per plant
(fp32, 1 thread); then every (assembly, min_size) pair of the grid is applied to the same masks.
The choice, on the 64 validation plants only: the lowest validation |DiC| among the settings
within 0.5 SBD points of the best validation SBD (counting matters, but not at any cost in
segmentation). Test: the paper's rule ("first", 0) and the chosen one on the 100 test plants,
with the whole count report (``ris_lite.evaluation.count_report``) of each.

    python benchmarks/tune_assembly.py --out ris_lite/pretrained/counting_test.json   # ~10 min
    python benchmarks/tune_assembly.py --models runs/count_ft/last.pt --out runs/count_ft/assembly.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ris_lite import RosetteDataset
from ris_lite.evaluation.count_report import best_constant, count_report, training_counts
from ris_lite.evaluation.evaluate import ground_truth_labels
from ris_lite.evaluation.metrics import consecutive_labels, evaluate_labels
from ris_lite.model.assembly import ASSEMBLIES, assemble
from ris_lite.pretrained import load_model

MIN_SIZES = (0, 10, 20, 40, 80, 120)
KEYS = ("sbd", "abs_dic", "dic", "fgbg_dice")


@torch.no_grad()
def kept(model, dataset, max_steps: int = 30, batch_size: int = 8):
    """Per plant ``(masks (k, H, W), scores (k,))`` up to the stop, fp32."""
    out = []
    for s in range(0, len(dataset), batch_size):
        images = torch.stack([dataset[i][0] for i in range(s, min(s + batch_size, len(dataset)))])
        out.extend(model.kept_masks(images, max_steps, return_scores=True))
    return out


def grid(masks_scores, gts) -> list:
    rows = []
    for assembly in ASSEMBLIES:
        for min_size in MIN_SIZES:
            preds = [consecutive_labels(assemble(m, s, assembly, min_size=min_size)) for m, s in masks_scores]
            r = evaluate_labels(preds, gts)
            rows.append({"assembly": assembly, "min_size": min_size, **{k: round(float(r[k]), 4) for k in KEYS}})
    return rows


def choose(rows: list) -> dict:
    best_sbd = max(r["sbd"] for r in rows)
    near = [r for r in rows if r["sbd"] >= best_sbd - 0.005]
    return min(near, key=lambda r: (r["abs_dic"], -r["sbd"]))


def run(source: str, constant: int, test_plants: int = 100) -> dict:
    model = load_model(source).cpu().eval()
    # the benchmark's plants for every model: a model fine-tuned on other looks (rosettes_styles)
    # keeps its size and zoom, not its look
    options = {k: v for k, v in (getattr(model, "data_options", None) or {}).items() if k != "style"}
    val = RosetteDataset("val", **options)
    test = RosetteDataset("test", length=test_plants, **options)
    t0 = time.time()
    val_gts = [consecutive_labels(ground_truth_labels(val, i)) for i in range(len(val))]
    val_rows = grid(kept(model, val), val_gts)
    chosen = choose(val_rows)
    test_ms = kept(model, test)
    test_gts = [consecutive_labels(ground_truth_labels(test, i)) for i in range(len(test))]
    out = {"model": source, "val_plants": len(val), "test_plants": len(test), "validation": val_rows,
           "chosen": {"assembly": chosen["assembly"], "min_size": chosen["min_size"]}, "test": {}}
    for name, a, ms in (("paper", "first", 0), ("chosen", chosen["assembly"], chosen["min_size"])):
        preds = [consecutive_labels(assemble(m, s, a, min_size=ms)) for m, s in test_ms]
        r = evaluate_labels(preds, test_gts)
        counts = count_report(model, test, constant, assembly=a, min_size=ms)
        out["test"][name] = {"assembly": a, "min_size": ms, **{k: round(float(r[k]), 4) for k in KEYS},
                             "counts": counts}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="rosettes,rosettes_canvas,rosettes_styles",
                   help="comma-separated shipped names or checkpoint paths")
    p.add_argument("--test-plants", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    train_counts = training_counts(RosetteDataset("train"))
    constant = best_constant(train_counts)
    out = {"constant": constant, "train_plants": len(train_counts),
           "command": "python benchmarks/tune_assembly.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "models": [run(m, constant, a.test_plants) for m in a.models.split(",")]}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
