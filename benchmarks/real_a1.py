"""Issue #50's real-A1 table, measured by one command on a reader's own copy of CVPPP A1.

    python benchmarks/real_a1.py --a1 data/CVPPP/A1 --out runs/real_a1.json      # the 128 training plants
    python benchmarks/real_a1.py --a1 data/CVPPP/A1 --test data/CVPPP/A1_test --out runs/real_a1.json
    python benchmarks/real_a1.py --a1 data/fixtures/cvppp_a1 --finetune-steps 2 --threads 1 \\
        --out /tmp/real_a1.json                                                  # a check: ~1 min

The split: the plants of ``--a1`` in the order of their plant ids, the first three quarters
``TRAIN`` (96 of A1's 128), the last quarter ``TEST`` (32); with ``--test`` (a folder in the same
format, e.g. the official A1 test set with its labels) all of ``--a1`` is ``TRAIN`` and ``--test``
is ``TEST``. Both are written as folders of links to the reader's files (copies where no link can
be made) in a working folder (``--work``; by default a temporary one, removed at the end), never
in the data folders, and every command runs there: each row's command is what a reader types,
``cvppp:TRAIN`` and ``cvppp:TEST`` being those two folders.

The rows, each with its commands, means, per-plant SBD / FgBgDice / DiC / |DiC| and seconds:

1. transfer: ``ris-lite evaluate --data cvppp:TEST --json`` for the default model, and with
   ``--model`` for every other shipped leaf model (``LEAF_MODELS``); the default also with
   ``--crf`` (the CRF's default backend, auto) and with ``--frame plant``;
2. ``--finetune-steps`` steps of batch ``--batch-size`` on TRAIN, each then scored with
   ``evaluate --checkpoint``: the default RIS (``ris-lite train --data cvppp:TRAIN --init
   DEFAULT``) and the embedding model (``--model-kind embedding --init rosettes_embedding``),
   whose clustering knobs (bandwidth, minimum cluster size) are then chosen on TRAIN's
   validation plants, the side ``train`` validated on, by the grid and rule of
   ``bench_successors.py`` and written into a copy of its checkpoint, ``tuned.pt``;
3. the watershed baseline tuned as ``ris-lite evaluate --data cvppp:TEST --baseline`` tunes it
   (on TEST's own validation side: not a fair test, and the row the book quoted), and tuned on
   TRAIN's validation plants;
4. the constant guess, ``count_report.best_constant`` of TRAIN's leaf counts, scored on TEST.

An ``evaluate`` row parses its command with the CLI's own parser and builds the model, data and
CRF with the helpers ``ris-lite evaluate`` calls, then keeps each plant's scores
(``tests/test_real_a1.py`` checks rows against the commands' own output). Everything is scored at
the label files' resolution, the official protocol.

The JSON is a superset of ``ris_lite/pretrained/real_a1_measured.json``, so book chapter 10 reads
either: ``rows`` holds the four rows the chapter prints (the default model, ``rosettes_styles``,
the fine-tuned default, the watershed as ``evaluate --baseline`` tunes it), in that order, and
``more_rows`` the others; beside them ``constant_guess``, ``data`` (the split's plant ids),
``machine`` and ``date``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from bench_successors import CONFIG_KNOBS, tune

from ris_lite.cli import build_parser
from ris_lite.cli import main as ris_lite_cli
from ris_lite.cli.options import check_kind, crf_of, dataset_of, load_cli_model, precision_of
from ris_lite.data.cvppp import CVPPP
from ris_lite.data.folder import split_ids
from ris_lite.device import pick_device
from ris_lite.evaluation.baseline import tune_baseline, watershed_leaves
from ris_lite.evaluation.count_report import best_constant
from ris_lite.evaluation.evaluate import predict_dataset, scoring_pair
from ris_lite.evaluation.metrics import (
    count_labels,
    diff_fg_labels,
    evaluate_labels,
    fg_bg_dice,
    symmetric_best_dice,
)
from ris_lite.model.checkpoint import load_checkpoint, model_from_checkpoint, save_atomic
from ris_lite.model.kinds import kind_of
from ris_lite.precision import cpu_name, resolve_precision
from ris_lite.pretrained import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
#: the shipped leaf models whose transfer is measured (the default model is measured first)
LEAF_MODELS = ("rosettes", "rosettes_styles", "rosettes_set", "rosettes_embedding")


def typed(argv: Sequence[str]) -> str:
    """A CLI argument list as the ``ris-lite`` command a reader types."""
    return shlex.join(["ris-lite", *argv])


def plant_order(ids: Sequence[str]) -> List[str]:
    """Plant ids in the order of their numbers (``plant9`` before ``plant10``; A1 pads them)."""
    return sorted(ids, key=lambda i: (int(re.sub(r"\D", "", i) or 0), i))


def split_plants(a1: Sequence[str], test: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """``(TRAIN ids, TEST ids)``: all of ``a1`` and ``test`` when a test folder is given, else the
    first three quarters of ``a1`` by plant id and the last quarter (96 / 32 of A1's 128)."""
    if test is not None:
        return plant_order(a1), plant_order(test)
    ids = plant_order(a1)
    n_test = math.ceil(len(ids) / 4)
    return ids[:-n_test], ids[-n_test:]


def link_plants(source: Path, ids: Sequence[str], folder: Path) -> None:
    """``folder`` holding the A1 files of ``ids`` from ``source``: links, copies where the file
    system makes none. Nothing is written in ``source``."""
    folder.mkdir(parents=True)
    for plant in ids:
        for path in sorted(source.glob(f"{plant}_*.png")):
            try:
                (folder / path.name).symlink_to(path.resolve())
            except OSError:
                shutil.copy2(path, folder / path.name)


def scores(preds: Sequence[torch.Tensor], gts: Sequence[torch.Tensor], names: Sequence[str]) -> dict:
    """Means and stds (``metrics.evaluate_labels``) and each plant's SBD, FgBgDice, DiC, |DiC|."""
    means = evaluate_labels(preds, gts)
    plants = []
    for name, p, g in zip(names, preds, gts):
        dic = diff_fg_labels(p, g)
        plants.append({"plant": name, "sbd": round(symmetric_best_dice(p, g), 4),
                       "fgbg_dice": round(fg_bg_dice(p, g), 4), "dic": dic, "abs_dic": abs(dic)})
    return {**{k: round(v, 4) for k, v in means.items() if k != "n_images"}, "n_images": means["n_images"],
            "per_plant": plants}


def evaluate_row(key: str, what: str, argv: List[str], before: Sequence[str] = ()) -> dict:
    """One ``ris-lite evaluate`` command, run as the CLI runs it, its scores kept per plant;
    ``before``: the commands that made its checkpoint."""
    t0 = time.perf_counter()
    a = build_parser().parse_args(argv)
    model = load_cli_model(a.checkpoint, a.device, a.model)
    check_kind(a, model)
    crf = crf_of(a, model)
    ds = dataset_of(a, model, a.split)
    preds, gts = predict_dataset(model, ds, a.max_steps, crf=crf, resolution=a.resolution,
                                 precision=precision_of(a, model))
    row = {"key": key, "what": what, "commands": [*before, ("then " if before else "") + typed(argv)],
           **scores(preds, gts, ds.names)}
    if crf:
        row["crf"] = crf.to_dict()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    log(row)
    return row


def log(row: dict) -> None:
    print(f"{row['key']:22s} SBD {100 * row['sbd']:5.1f}  FgBg {100 * row['fgbg_dice']:5.1f}  "
          f"|DiC| {row['abs_dic']:5.2f}  {row['seconds']:7.1f} s", file=sys.stderr, flush=True)


def watershed_row(key: str, what: str, tuned_on: str, commands: List[str]) -> dict:
    """The watershed pipeline with its knobs tuned on the validation side of ``tuned_on`` (a
    ``--data``), as ``evaluate --baseline`` tunes them, and scored on TEST; both read at the
    default model's scale, as ``evaluate`` reads them."""
    t0 = time.perf_counter()
    model = load_cli_model(None, "cpu", DEFAULT_MODEL["name"])
    val = dataset_of(build_parser().parse_args(["evaluate", "--data", tuned_on]), model, "val")
    params, _ = tune_baseline(val)
    test = dataset_of(build_parser().parse_args(["evaluate", "--data", "cvppp:TEST"]), model, None)
    pairs = [scoring_pair(test, i, watershed_leaves(test[i][0], params)) for i in range(len(test))]
    row = {"key": key, "what": what, "commands": commands,
           **scores([p for p, _ in pairs], [g for _, g in pairs], test.names),
           "params": {"min_distance": params.min_distance, "smooth": params.smooth},
           "tuned_on": [str(n) for n in val.names], "seconds": round(time.perf_counter() - t0, 1)}
    log(row)
    return row


def constant_guess() -> dict:
    """``best_constant`` of TRAIN's leaf counts (its label files), scored on TEST's."""
    train, test = CVPPP("TRAIN"), CVPPP("TEST")
    train_counts = [count_labels(train.original_labels(i)) for i in range(len(train))]
    test_counts = [count_labels(test.original_labels(i)) for i in range(len(test))]
    value = best_constant(train_counts)
    dic = [value - n for n in test_counts]
    return {"value": value, "command": "ris_lite.evaluation.count_report.best_constant(TRAIN's leaf counts)",
            "train_counts": train_counts, "test_counts": test_counts,
            "dic": round(float(np.mean(dic)), 4), "abs_dic": round(float(np.mean(np.abs(dic))), 4),
            "per_plant": [{"plant": p, "dic": d, "abs_dic": abs(d)} for p, d in zip(test.names, dic)]}


def finetune(argv: List[str]) -> dict:
    """Run one ``ris-lite train`` command; its seconds, training minutes and precision."""
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout: this benchmark's summary alone
        status = ris_lite_cli(argv)
    if status:
        raise SystemExit(f"{typed(argv)} failed (exit {status})")
    state = load_checkpoint(Path(argv[argv.index("--out") + 1]) / "last.pt")
    return {"train_seconds": round(time.perf_counter() - t0, 1),
            "train_minutes": round(state["trainer"]["elapsed"] / 60),  # the book prints whole minutes
            "precision": resolve_precision(state["config"]["precision"], pick_device(None))}  # train's device


def train_argv(init: str, steps: int, batch: int, out: str, kind: Sequence[str] = ()) -> List[str]:
    """``ris-lite train`` fine-tuning ``init`` on TRAIN, as issue #50 typed it."""
    return ["train", "--data", "cvppp:TRAIN", *kind, "--init", init, "--max-steps", str(steps),
            "--batch-size", str(batch), "--out", out, "--quiet"]


def choose_knobs(run: Path) -> Tuple[dict, str]:
    """The clustering knobs of the embedding run ``run`` chosen on TRAIN's validation plants
    (``bench_successors.tune``) and written into ``run/tuned.pt``, which ``predict`` then uses;
    the choice, and the step as a line of the row's commands."""
    t0 = time.perf_counter()
    argv = ["evaluate", "--data", "cvppp:TRAIN", "--split", "val", "--checkpoint", str(run / "last.pt")]
    model = model_from_checkpoint(run / "last.pt")
    chosen = tune(model, "embedding", dataset_of(build_parser().parse_args(argv), model, "val"))
    state = load_checkpoint(run / "last.pt")
    for knob, field in CONFIG_KNOBS["embedding"].items():
        state["config"]["model"][field] = chosen["knobs"][knob]
    save_atomic(state, run / "tuned.pt")
    chosen["seconds"] = round(time.perf_counter() - t0, 1)
    return chosen, (f"then the clustering knobs chosen on TRAIN's {chosen['val_plants']} validation plant(s), "
                    f"{typed(argv)} at each setting of benchmarks/bench_successors.py's grid, by its rule, and "
                    f"written into {run / 'tuned.pt'}")


def finetune_rows(name: str, steps: int, batch: int) -> List[dict]:
    """The default RIS and the embedding model fine-tuned on TRAIN, then scored on TEST."""
    test = ["evaluate", "--data", "cvppp:TEST", "--checkpoint"]
    train = train_argv(name, steps, batch, f"runs/finetune_{name}")
    timing = finetune(train)
    ris = evaluate_row("finetuned_default", f"{name} fine-tuned on TRAIN, {steps} steps",
                       [*test, f"runs/finetune_{name}/last.pt", "--json"], before=[typed(train)])
    ris.update(timing)
    run = Path("runs/finetune_rosettes_embedding")
    train = train_argv("rosettes_embedding", steps, batch, str(run), kind=["--model-kind", "embedding"])
    timing = finetune(train)
    chosen, step = choose_knobs(run)
    embedding = evaluate_row("finetuned_embedding", f"rosettes_embedding fine-tuned on TRAIN, {steps} steps",
                             [*test, str(run / "tuned.pt"), "--json"], before=[typed(train), step])
    embedding.update(timing, knobs=chosen.pop("knobs"), knobs_chosen_on=chosen)
    return [ris, embedding]


def all_rows(steps: int, batch: int) -> Tuple[List[dict], List[dict], dict]:
    """``(rows, more_rows, constant_guess)`` of the module docstring, run in the working folder."""
    name = DEFAULT_MODEL["name"]
    test = ["evaluate", "--data", "cvppp:TEST"]
    default = evaluate_row("default", f"shipped {name}, whole frame", [*test, "--json"])
    styles = evaluate_row("rosettes_styles", "shipped rosettes_styles (randomised looks)",
                          [*test, "--model", "rosettes_styles", "--json"])
    more = []
    if kind_of(load_cli_model(None, "cpu", name)) == "ris":  # RIS+CRF refines RIS's masks alone
        more.append(evaluate_row("default_crf", f"shipped {name} + CRF", [*test, "--crf", "--json"]))
    more.append(evaluate_row("default_frame_plant", f"shipped {name}, --frame plant",
                             [*test, "--frame", "plant", "--json"]))
    for other in LEAF_MODELS:
        if other not in (name, "rosettes_styles"):
            more.append(evaluate_row(other, f"shipped {other}", [*test, "--model", other, "--json"]))
    watershed = watershed_row("watershed", "watershed baseline, tuned on the folder's split", "cvppp:TEST",
                              [typed([*test, "--baseline", "--json"])])
    more.append(watershed_row(
        "watershed_train", "watershed baseline, tuned on TRAIN's validation plants", "cvppp:TRAIN",
        [typed(["evaluate", "--data", "cvppp:TRAIN", "--split", "val", "--baseline", "--json"]) + " (its knobs)",
         "then ris_lite.evaluation.baseline.evaluate_baseline on cvppp:TEST with them"]))
    finetuned, embedding = finetune_rows(name, steps, batch)
    more.append(embedding)
    return [default, styles, finetuned, watershed], more, constant_guess()


def inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or path.is_relative_to(f) for f in folders)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a1", required=True, help="a folder in the A1 format (plantNNN_rgb/_label/_fg.png)")
    p.add_argument("--test", default=None, help="a labelled test folder in the same format (then all of --a1 trains)")
    p.add_argument("--out", required=True, help="the JSON to write")
    p.add_argument("--finetune-steps", type=int, default=300, help="steps of each fine-tune (default 300)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--work", default=None, help="working folder, kept (default: a temporary one, removed)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    data = [Path(f).resolve() for f in (a.a1, a.test) if f]
    out = Path(a.out).resolve()
    train_ids, held_out = split_plants(CVPPP(data[0]).names, CVPPP(data[1]).names if a.test else None)
    if len(train_ids) < 2 or len(held_out) < 2:
        raise SystemExit(f"need at least 2 plants in TRAIN and in TEST, got {len(train_ids)} and {len(held_out)}")
    work = Path(a.work).resolve() if a.work else Path(tempfile.mkdtemp(prefix="real_a1_"))
    if inside(work, data):
        raise SystemExit(f"--work {work} lies in a data folder: nothing is written there")
    if any((work / side).exists() for side in ("TRAIN", "TEST")):
        raise SystemExit(f"--work {work} already holds TRAIN or TEST: give a new folder")
    link_plants(data[0], train_ids, work / "TRAIN")
    link_plants(data[-1], held_out, work / "TEST")
    start, here = time.perf_counter(), Path.cwd()
    os.chdir(work)  # the commands read cvppp:TRAIN and cvppp:TEST, as a reader types them
    try:
        rows, more, constant = all_rows(a.finetune_steps, a.batch_size)
    finally:
        os.chdir(here)
        if not a.work:
            shutil.rmtree(work)
    # the side of TRAIN that `train` validates on, and `--baseline` / the embedding knobs are tuned on
    validation = split_ids(train_ids, build_parser().parse_args(["evaluate"]).val_fraction)["val"]
    report = {
        "benchmark": "benchmarks/real_a1.py",
        "command": shlex.join(["python", "benchmarks/real_a1.py", *(sys.argv[1:] if argv is None else argv)]),
        # the reader's data (data/CVPPP/A1 is git-ignored), not the fixtures the repository ships:
        # what book chapter 10 asserts before it prints a file's rows as real A1
        "measured_outside_this_repository": not inside(data[0], [REPO / "data" / "fixtures"]),
        "note": "Made by benchmarks/real_a1.py from the reader's A1 folder: TRAIN and TEST are folders of links "
                "to its plants, every row's commands ran in the folder that holds them.",
        "data": {"source": f"the A1-format folder --a1 ({len(train_ids) + (0 if a.test else len(held_out))} labelled "
                           "plants)" + (" and the test folder --test" if a.test else ""),
                 "a1": str(data[0]), "test_folder": str(data[1]) if a.test else None,
                 "TRAIN": f"{len(train_ids)} plants: " + ("all of --a1" if a.test else "the first three quarters by plant id"),
                 "TEST": f"{len(held_out)} plants: " + ("--test" if a.test else "the last quarter by plant id"),
                 "train_ids": train_ids, "test_ids": held_out, "validation_ids": validation},
        "scored": f"at the label files' resolution (the official protocol), means over the {len(held_out)} TEST plants",
        "default_model": DEFAULT_MODEL["name"], "finetune_steps": a.finetune_steps, "batch_size": a.batch_size,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows, "more_rows": more, "constant_guess": constant}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for row in rows + more:
        print(f"{row['what']:60s} SBD {100 * row['sbd']:5.1f}  FgBg {100 * row['fgbg_dice']:5.1f}  "
              f"|DiC| {row['abs_dic']:5.2f}")
    print(f"{'constant guess ' + str(constant['value']) + ' (from TRAIN)':60s} {'':21s}|DiC| {constant['abs_dic']:5.2f}")
    return report


if __name__ == "__main__":
    main()
