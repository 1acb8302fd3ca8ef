"""New data without new data: the whole-frame reader's scale rule and the held-out style gap.

Chapter ``book/10_your_data`` shows this benchmark's JSON. Two questions, one run, 1 thread:

1. **Does a larger input need another inhibition bias?** The spatial inhibition (eq. 5.1) takes
   a log-softmax over *all* pixels, so a whole A1 frame read at the model's scale (191 x 180
   for the 106 x 100 model at zoom 1.8, 3.24 times the pixels) might dilute every leaf's mass.
   The shipped ``rosettes`` is scored on the test plants drawn as whole frames at its scale
   (``make_rosette(size=(191, 180), zoom=1)``) with its bias b moved by -ln r, 0 and +ln r (r the
   ratio of areas), next to the standard 106 x 100 crops.
2. **How far does a model carry to a look it never saw?** Each model is scored on the test
   plants in the benchmark's look (``style="a1"``) and in the held-out look
   (``style="heldout"``: the same plants, another scene and camera), for ``rosettes`` and for
   ``rosettes_styles`` (fine-tuned from it on half randomised looks, ``style="random"``).

    python benchmarks/bench_transfer.py --out ris_lite/pretrained/transfer_test.json   # ~10 min
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from ris_lite import RosetteDataset, load_pretrained
from ris_lite.evaluation.evaluate import evaluate_model

KEYS = ("sbd", "sbd_std", "abs_dic", "dic", "fgbg_dice")


def scores(model, dataset) -> dict:
    r = evaluate_model(model, dataset)
    return {k: round(float(r[k]), 4) for k in KEYS} | {"n_images": len(dataset)}


def bias_shifts(plants: int) -> dict:
    """Question 1: the standard crops, and whole frames with b + delta."""
    model = load_pretrained("rosettes")
    h, w = model.config.input_size
    zoom = model.data_options.get("zoom", 1.8)
    whole = (round(zoom * h), round(zoom * w))
    ratio = whole[0] * whole[1] / (h * w)
    out = {"input_size": [h, w], "whole_size": list(whole), "area_ratio": round(ratio, 3),
           "crop": scores(model, RosetteDataset("test", length=plants))}
    b = model.inhibition.b.detach().clone()
    frames = RosetteDataset("test", length=plants, size=whole, zoom=1.0)
    for name, delta in (("whole, b - ln r", -math.log(ratio)), ("whole, b", 0.0), ("whole, b + ln r", math.log(ratio))):
        with torch.no_grad():
            model.inhibition.b.copy_(b + delta)
        out[name] = scores(model, frames) | {"delta": round(delta, 3)}
    return out


def styles(plants: int, models) -> dict:
    """Question 2: every model on the benchmark's look and on the held-out look."""
    return {name: {style: scores(load_pretrained(name), RosetteDataset("test", length=plants, style=style))
                   for style in ("a1", "heldout")} for name in models}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--models", default="rosettes,rosettes_styles")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/transfer_test.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    result = {"plants": a.plants, "scale_rule": bias_shifts(a.plants), "styles": styles(a.plants, a.models.split(","))}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
