"""``ris-lite evaluate``: SBD, FgBgDice, DiC and |DiC| over a split or a real folder (the
baseline and RIS+CRF beside it), or region AP for people (RIS+CRF beside it too).

Explained in the book chapters ``book/08_evaluation``, ``book/09_crf``, ``book/10_your_data``
and ``book/11_people``.
"""

from __future__ import annotations

import argparse
import json

from ..data.people import PeopleDataset
from ..data.people_readers import VOCPeople
from ..evaluation.baseline import evaluate_baseline, tune_baseline
from ..evaluation.evaluate import evaluate_model
from ..evaluation.people_eval import (
    baseline_detections,
    model_region_ap,
    predictions_region_ap,
    tune_people_baseline,
)
from ..model.kinds import kind_of
from .options import (
    CLIError,
    check_data,
    check_kind,
    common,
    crf_of,
    crf_options,
    data_errors,
    dataset_of,
    is_people,
    kind_option,
    load_cli_model,
    precision_of,
    precision_option,
    splits,
)


def _baseline(a, model, ds) -> dict:
    """The watershed pipeline tuned on the data's own validation split, then scored on ``ds``."""
    val = dataset_of(argparse.Namespace(**{**vars(a), "limit": None}), model, "val")
    if not len(val):
        raise CLIError(f"--baseline tunes the watershed on the validation split of --data {a.data}, which is empty: "
                       f"its {len(ds)} image(s) are too few to split (--val-fraction {a.val_fraction}); give at least "
                       "2 images, or leave out --baseline")
    params, _ = tune_baseline(val, resolution=a.resolution)
    result = evaluate_baseline(ds, params, a.resolution)
    result["params"] = {"min_distance": params.min_distance, "smooth": params.smooth}
    # a real folder's validation images are among those scored unless --split train
    scored = set(getattr(val, "names", ())) & set(getattr(ds, "names", ()))
    result["tuned_on"] = f"{len(val)} validation image{'s' * (len(val) != 1)}" + (
        f" ({len(scored)} of them among the images scored: not a fair test)" if scored else "")
    return result


def _print_table(rows, resolution_note: str) -> None:
    print(f"{'method':<10} {'DiC':>12} {'|DiC|':>12} {'SBD':>14} {'FgBgDice':>14}  n")
    for name, r in rows:
        print(f"{name:<10} {r['dic']:>5.2f} ({r['dic_std']:.2f}) {r['abs_dic']:>5.2f} ({r['abs_dic_std']:.2f}) "
              f"{100 * r['sbd']:>6.1f} ({100 * r['sbd_std']:.1f}) {100 * r['fgbg_dice']:>6.1f} "
              f"({100 * r['fgbg_dice_std']:.1f})  {r['n_images']}")
        if "params" in r:
            print(f"{'':<10} tuned on {r['tuned_on']}: " + ", ".join(f"{k}={v}" for k, v in r["params"].items()))
    print(resolution_note)


def _resolution_note(a, model) -> str:
    if a.data == "synthetic":
        return "scored at the model's input size (where the synthetic plants are drawn)"
    if a.resolution == "original":
        return "scored at each label file's own resolution (the official protocol)"
    h, w = model.config.input_size
    return f"scored at the model's input size {h}x{w}, NOT the official protocol (labels resized)"


def _evaluate_people(a, model) -> int:
    """Region AP (the paper's Table 1 measure) of a people model on the stand-in or on VOC, and
    of RIS+CRF with ``--crf`` (each refined instance keeps its step's score)."""
    crf = crf_of(a, model)
    h, w = model.config.input_size
    try:
        if a.data == "people":
            ds = PeopleDataset(a.split or "test", length=a.limit, size=(h, w))
        else:
            root = a.data.partition(":")[2]
            ds = VOCPeople(root, a.split or "val", size=h)
            if a.limit:
                ds = VOCPeople(root, ids=ds.names[:a.limit], size=h)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    result = {"ris": model_region_ap(model, ds, a.max_steps), "n_images": len(ds),
              "protocol": "VOC/SDS region AP, void excluded"}
    if crf:
        result["ris+crf"], result["crf"] = model_region_ap(model, ds, a.max_steps, crf=crf), crf.to_dict()
    if a.baseline:
        if a.data != "people":
            raise CLIError("--baseline for people is tuned on the stand-in's validation scenes: use --data people")
        val = PeopleDataset("val", size=(h, w))
        params = tune_people_baseline([val[i][0] for i in range(len(val))], [val[i][1].numpy() for i in range(len(val))])
        items = [ds[i] for i in range(len(ds))]
        dets = baseline_detections([image for image, _ in items], params["threshold"], params["min_area"])
        result["baseline"] = predictions_region_ap(dets, [masks.numpy() for _, masks in items])
        result["baseline_params"] = params
    if a.json:
        print(json.dumps(result))
        return 0
    print(f"{'method':<10} {'AP^r(0.5)':>10} {'AP^r Ave':>10}  n")
    for name in ("ris", "ris+crf", "baseline"):
        if name in result:
            r = result[name]
            print(f"{name:<10} {100 * r['ap50']:>10.1f} {100 * r['ap_mean']:>10.1f}  {len(ds)}")
    print(result["protocol"])
    return 0


def cmd_evaluate(a) -> int:

    check_data(a.data)
    if is_people(a.data):  # the people model by default
        model = load_cli_model(a.checkpoint, a.device, a.model or (None if a.checkpoint else "people"))
        check_kind(a, model)
        with data_errors():
            return _evaluate_people(a, model)
    model = load_cli_model(a.checkpoint, a.device, a.model)
    check_kind(a, model)
    crf = crf_of(a, model)
    ds = dataset_of(a, model, a.split)
    with data_errors():  # a truncated image or a label of the wrong size: one line, as in train
        result = evaluate_model(model, ds, max_steps=a.max_steps, progress=not a.json and not a.quiet, crf=crf,
                                resolution=a.resolution, precision=precision_of(a, model))
        method = "ris+crf" if crf else kind_of(model)  # "ris", or (ours) "set" / "embedding"
        if crf:
            result["crf"] = crf.to_dict()
        if a.baseline:
            result = {method: result, "watershed": _baseline(a, model, ds)}
    result["resolution"] = a.resolution if a.data != "synthetic" else "input"
    result["model"] = model.cli_name
    if a.json:
        print(json.dumps(result))
    else:
        rows = [(k, v) for k, v in result.items() if isinstance(v, dict) and "sbd" in v] if a.baseline else [(method, result)]
        _print_table(rows, _resolution_note(a, model))
    return 0


def add_parser(sub) -> None:
    """The ``evaluate`` sub-command."""
    e = sub.add_parser("evaluate", help="SBD, FgBgDice, DiC, |DiC| over a split or a CVPPP folder")
    common(e)
    splits(e)
    e.add_argument("--resolution", default="original", choices=["original", "input"],
                   help="real data: score at each label file's own size (official) or at the model's input")
    e.add_argument("--checkpoint", default=None, help="a training checkpoint (default: the shipped model)")
    e.add_argument("--model", default=None, help="a shipped model by name (default: the package's default model, see load_pretrained)")
    kind_option(e)
    e.add_argument("--limit", type=int, default=None, help="only the first N images")
    e.add_argument("--max-steps", type=int, default=30)
    precision_option(e, "fp32")
    e.add_argument("--baseline", action="store_true", help="also score the watershed baseline")
    crf_options(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)
