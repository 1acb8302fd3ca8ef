"""The paper's Table 1 on the people stand-in, measured in one run (book chapter ``11_people``).

On the 200 test scenes, VOC/SDS region AP at IoU 0.5 and averaged over 0.1..0.9:

* the learned baseline: FCN-8s of the people configuration trained as a person / background
  segmenter (``training.segmenter``) with the budget of one curriculum stage of the people RIS
  (``people_config.json``: ``stage_max_steps`` steps of ``batch_size`` training scenes, its lr
  and clipping), its foreground split into instances by connected components and by a
  distance-transform watershed, each scored by its mean probability
  (``evaluation.people_baseline``; knobs tuned on the 64 validation scenes). Retrained with
  ``--seeds``: each seed's scores and their spread; the first seed's model makes the row;
* RIS (the shipped ``people``) and RIS+CRF (its ``people_crf.json``, tuned on the validation
  scenes by ``tune_people_crf.py``), each refined instance keeping its step's score;
* the non-learned row-median baseline and the oracle (connected components of the TRUE
  foreground) of ``bench_people.py``;
* the paper's Table 1 (Pascal VOC 2012 val), quoted, not measured.

Also: every method's scores on the scenes with 1-2, 3 and 4+ people (the paper's Figs. 3, 9, 10),
a few such scenes' predictions (packed label maps, ``people_baseline.unpack_labels``), the
occlusion test of ``bench_people.py`` for RIS and RIS+CRF, the share of test scenes whose depth
order is visible (``evaluation.people_crowds``) and, over the pairs where it is, how often the
front figure is emitted first. Writes ``--out`` (JSON).

    OMP_NUM_THREADS=1 python benchmarks/people_table1.py --out ris_lite/pretrained/people_table1.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import ris_lite
from ris_lite.data.people import PeopleDataset
from ris_lite.evaluation.people_baseline import (
    SPLITS,
    pack_labels,
    split_instances,
    tune_instance_split,
)
from ris_lite.evaluation.people_crowds import (
    CROWD_GROUPS,
    crowd_group,
    hidden_share,
    occluding_pairs_order,
    pairs_summary,
    region_ap_by_crowd,
    visible_order_share,
)
from ris_lite.evaluation.people_eval import (
    emission_vs_depth,
    occlusion_summary,
    predictions_region_ap,
    score_people,
    tune_people_baseline,
)
from ris_lite.model.crf import choose_backend
from ris_lite.precision import cpu_name
from ris_lite.training.segmenter import train_person_segmenter

ROOT = Path(__file__).resolve().parent.parent
PRETRAINED = ROOT / "ris_lite" / "pretrained"
#: the paper's Table 1 (Pascal VOC 2012 val, person; gaps are the paper's), as fractions
PAPER_TABLE1 = {
    "baseline (FCN-8s + Faster R-CNN proposals)": (0.458, 0.396), "Chen et al. 2015 [5]": (0.483, None),
    "SDS, Hariharan et al. 2014 [4]": (0.479, None), "PFN, Liang et al. 2015 [15]": (0.488, 0.429),
    "RIS": (0.467, 0.419), "RIS+CRF": (0.501, 0.437)}
#: a pair of figures shows its depth order when the front one visibly hides this share of the other
MIN_HIDDEN = 0.1


def spread(values) -> dict:
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def foreground_iou(probabilities, gts, threshold: float) -> float:
    """Mean over scenes of the IoU of ``p > threshold`` with the union of the true masks."""
    ious = []
    for p, g in zip(probabilities, gts):
        fg, truth = p.numpy() > threshold, g.any(0) if len(g) else np.zeros(p.shape, bool)
        union = (fg | truth).sum()
        ious.append((fg & truth).sum() / union if union else 1.0)
    return float(np.mean(ious))


def learned_baseline(seed: int, a, ris_config, train, val_images, val_gts, test_images, test_gts) -> dict:
    """Train one segmenter, tune both splits on validation, score them on test."""
    t = time.perf_counter()
    segmenter, losses = train_person_segmenter(ris_config, train, a.steps, a.batch_size, a.lr, a.clip, seed)
    trained = time.perf_counter() - t
    val_p, test_p = segmenter.foreground_probability(val_images), segmenter.foreground_probability(test_images)
    out = {"seed": seed, "train_seconds": round(trained, 1), "final_loss": float(np.mean(losses[-50:]))}
    for split in SPLITS:
        params = tune_instance_split(val_p, val_gts, split)
        dets = [split_instances(p, split, params) for p in test_p]
        out[split] = {**predictions_region_ap(dets, test_gts), "params": params, "detections": dets}
    out["foreground_iou"] = foreground_iou(test_p, test_gts, out["components"]["params"]["threshold"])
    print(f"  seed {seed}: trained {trained:.0f} s, loss {out['final_loss']:.3f}, " + ", ".join(
        f"{s} {100 * out[s]['ap50']:.1f} / {100 * out[s]['ap_mean']:.1f}" for s in SPLITS), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(PRETRAINED / "people_table1.json"))
    p.add_argument("--seeds", default="0,1,2", help="the learned baseline's retrainings (the first makes the row)")
    p.add_argument("--steps", type=int, default=None, help="default: one RIS stage, people_config.json")
    p.add_argument("--max-steps", type=int, default=10, help="RIS's steps, as bench_people.py")
    p.add_argument("--figures", type=int, default=2, help="scenes per crowd group whose predictions are stored")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    stored = json.loads((PRETRAINED / "people_config.json").read_text())["config"]
    a.steps = a.steps or stored["stage_max_steps"]
    a.batch_size, a.lr, a.clip = stored["batch_size"], stored["lr"], stored["clip"]
    seeds = [int(s) for s in a.seeds.split(",")]

    model = ris_lite.load_pretrained("people")
    if model.crf_config is None:
        sys.exit("people_crf.json is missing: run benchmarks/tune_people_crf.py --out ris_lite/pretrained first")
    size = tuple(model.config.input_size)
    val, test = PeopleDataset("val", size=size), PeopleDataset("test", size=size)
    val_images, val_gts = [val[i][0] for i in range(len(val))], [val[i][1].numpy() for i in range(len(val))]
    test_images = torch.stack([test[i][0] for i in range(len(test))])
    test_gts = [test[i][1].numpy() for i in range(len(test))]
    scenes = [test.scene(i) for i in range(len(test))]

    t = time.perf_counter()
    row_median = tune_people_baseline(val_images, val_gts)
    ris = score_people(model, test, row_median, a.max_steps, crf=model.crf_config)
    ris_seconds = time.perf_counter() - t
    print(f"RIS, RIS+CRF and the row-median baseline scored in {ris_seconds:.0f} s", flush=True)

    # RIS's training scenes: its data options (the stand-in's knobs) at its input size
    train = PeopleDataset("train", length=stored["train_images"], **{**stored["data"], "size": size})
    runs = [learned_baseline(s, a, model.config, train, torch.stack(val_images), val_gts, test_images, test_gts)
            for s in seeds]
    first = runs[0]

    predictions = {"ris": list(zip(ris["ris_labels"], ris["ris_scores"])),
                   "ris_crf": list(zip(ris["ris_crf_labels"], ris["ris_crf_scores"])),
                   **{f"learned_baseline_{s}": first[s]["detections"] for s in SPLITS}}
    table = {"learned_baseline_components": first["components"], "learned_baseline_watershed": first["watershed"],
             "ris": ris["ris"], "ris_crf": ris["ris_crf"], "row_median_baseline": {**ris["baseline"], "params": row_median},
             "oracle_foreground": ris["oracle_foreground"]}
    table = {k: {"ap50": v["ap50"], "ap_mean": v["ap_mean"],
                 **({"tuned_on_val": v["params"]} if "params" in v else {})} for k, v in table.items()}

    groups = {g: [i for i, s in enumerate(scenes) if crowd_group(len(s.amodal)) == g] for g in CROWD_GROUPS}
    figures = {"scenes": {g: idx[:a.figures] for g, idx in groups.items()},
               "labels": {name: {str(i): pack_labels(dets[i][0]) for idx in groups.values() for i in idx[:a.figures]}
                          for name, dets in predictions.items()}}

    crf_occlusion = [emission_vs_depth(lab, g, s.depth) for lab, g, s in zip(ris["ris_crf_labels"], test_gts, scenes)]
    occluding = sum(int((hidden_share(s.labels, s.amodal) >= MIN_HIDDEN).sum()) for s in scenes)
    occlusion = {
        "ris": occlusion_summary(ris["occlusion"]), "ris_crf": occlusion_summary(crf_occlusion),
        "visible_order_share": visible_order_share(scenes), "min_hidden": MIN_HIDDEN,
        "occluding_pairs_in_test": occluding,
        "pairs": {name: pairs_summary([occluding_pairs_order(lab, s, MIN_HIDDEN) for (lab, _), s in
                                       zip(predictions[name], scenes)]) for name in ("ris", "ris_crf")},
        "definition": f"a scene's depth order is visible when a nearer figure's visible pixels cover at least "
                      f"{MIN_HIDDEN:.0%} of a farther figure's whole silhouette; a pair counts for 'pairs' when "
                      "both figures are matched (IoU >= 0.5, one-to-one) by the method's instances"}

    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/people_table1.py --out ris_lite/pretrained/people_table1.json",
        "test_scenes": len(test), "val_scenes": len(val), "max_steps": a.max_steps,
        "protocol": "VOC/SDS region AP; fractions (the paper prints percent)",
        "table1": table,
        "paper_table1": {"quoted": True, "data": "Pascal VOC 2012 val, person (the paper's Table 1; not measured here)",
                         "rows": {k: {"ap50": v[0], "ap_mean": v[1]} for k, v in PAPER_TABLE1.items()}},
        "learned_baseline": {"seeds": seeds, "steps": a.steps, "batch_size": a.batch_size, "lr": a.lr,
                             "train_images": len(train),
                             "per_seed": [{"seed": r["seed"], "train_seconds": r["train_seconds"],
                                           "final_loss": r["final_loss"], "foreground_iou": r["foreground_iou"],
                                           **{s: {"ap50": r[s]["ap50"], "ap_mean": r[s]["ap_mean"],
                                                  "tuned_on_val": r[s]["params"]} for s in SPLITS}} for r in runs],
                             "spread": {s: {m: spread([r[s][m] for r in runs]) for m in ("ap50", "ap_mean")}
                                        for s in SPLITS}},
        "crf": {**model.crf_config.to_dict(), "backend_used": choose_backend(model.crf_config.backend, size[0] * size[1])},
        "by_crowd": {name: region_ap_by_crowd(dets, test_gts) for name, dets in predictions.items()},
        "figures": figures, "occlusion": occlusion,
        "machine": f"{cpu_name()}, {a.threads} thread(s), torch {torch.__version__}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": {"ris_and_crf": round(ris_seconds, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'':34s} AP^r(0.5)  AP^r Ave   ({len(test)} stand-in test scenes)")
    for name, v in table.items():
        print(f"{name:34s} {100 * v['ap50']:9.1f} {100 * v['ap_mean']:9.1f}")
    for s in SPLITS:
        sp = report["learned_baseline"]["spread"][s]
        print(f"learned baseline ({s}) over seeds {seeds}: AP^r(0.5) {100 * sp['ap50']['mean']:.1f} "
              f"[{100 * sp['ap50']['min']:.1f}, {100 * sp['ap50']['max']:.1f}]")
    print(f"depth order visible in {100 * occlusion['visible_order_share'][str(MIN_HIDDEN)]:.0f}% of test scenes; "
          f"pairs matched: RIS {occlusion['pairs']['ris']['pairs']}, RIS+CRF {occlusion['pairs']['ris_crf']['pairs']}"
          f" of {occluding}")
    print(f"wrote {a.out} ({report['seconds']['total']:.0f} s)")


if __name__ == "__main__":
    main()
