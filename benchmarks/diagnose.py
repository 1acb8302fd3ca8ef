"""Why a model's leaves come out in pieces: the diagnosis table of any model or checkpoint.

    python benchmarks/diagnose.py rosettes                      # a shipped model, 100 test plants
    python benchmarks/diagnose.py runs/i24/P/last.pt --json runs/i24/P/diagnose.json
    python benchmarks/diagnose.py rosettes --split train --plants 32
    python benchmarks/diagnose.py rosettes --counts --probe-plants 0   # with the count report

Prints segment kinds (whole / fragment / merge / spill / background), the share of steps that
repeat a leaf, untargeted leaves, the first step's Dice and leaves touched, per-leaf Dice by
area and the same-leaf probe AUC of raw pixels, ConvLSTM input features and first state
(``ris_lite.evaluation.diagnose``, book chapter 12), with SBD and |DiC| beside them.
``--counts`` adds the count report (``ris_lite.evaluation.count_report``, book chapter 8): |DiC|
beside the best constant guess chosen on the training split's counts, the count correlation,
the histogram of predicted vs true counts, the score around the true count and what the steps
after it do.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ris_lite.data.rosette import RosetteDataset
from ris_lite.evaluation.count_report import best_constant, count_report, training_counts
from ris_lite.evaluation.diagnose import diagnose
from ris_lite.evaluation.evaluate import evaluate_model
from ris_lite.pretrained import load_model


def run(source: str, split: str = "test", plants: int = 100, probe_plants: int = 40, counts: bool = False) -> dict:
    model = load_model(source).cpu()
    data = RosetteDataset(split, length=plants, **(getattr(model, "data_options", None) or {}))
    t0 = time.time()
    table = diagnose(model, data, probe_plants=probe_plants)
    scores = evaluate_model(model, data)
    if counts:  # the constant is chosen on the training split, never on the plants scored
        constant = best_constant(training_counts(RosetteDataset("train", **(getattr(model, "data_options", None) or {}))))
        table["counts"] = count_report(model, data, constant)
    return {"model": source, "split": split, **{k: round(float(scores[k]), 4) for k in ("sbd", "abs_dic")},
            "distance_to_goal": {"sbd": round(0.85 - float(scores["sbd"]), 4),
                                 "abs_dic": round(float(scores["abs_dic"]) - 0.8, 4)},
            **table, "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a shipped model name or a checkpoint path")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--probe-plants", type=int, default=40, help="plants for the same-leaf probe (0: skip)")
    p.add_argument("--counts", action="store_true", help="add the count report (chapter 8)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the table here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    out = run(a.model, a.split, a.plants, a.probe_plants, a.counts)
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
