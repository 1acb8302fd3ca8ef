"""Where RIS stands, measured: its two successor families trained on the same plants at the
same image budget, scored on the same 100 test plants in one run (book chapter 13, "From RIS
to DETR").

    python benchmarks/bench_successors.py                                  # 18,000 images each
    python benchmarks/bench_successors.py --images 36000        # continues those runs to 36,000 images
    python benchmarks/bench_successors.py --images 18000,36000  # both budgets of the same runs, scored in one run
    python benchmarks/bench_successors.py --images 36000 --families ris,set,embedding   # RIS trained too
    python benchmarks/bench_successors.py --images 18000,36000 --families set --lr-hold-steps 9000 \
        --runs runs/successors_hold --no-reference --probe-seconds 0      # the set model at a constant lr
    python benchmarks/bench_successors.py --images 16 --plants 4 --probe-seconds 2 --runs /tmp/s   # a check

1. Trains each family of ``--families`` with ``ris-lite train`` in ``RUNS/KIND``, one process
   of 1 thread each (``--parallel``: all at once), with the shipped RIS's recipe:
   ``--images / --batch-size`` steps (18,000 = 4,500 x 4, as ``rosettes``), the same encoder
   (``--channels 30 --fcn-dilations 1,2,4,8``), lr 2e-3, validation every 50 steps, the plateau
   rule with ``--lr-hold-steps 1000``; the model at the budget is kept as
   ``RUNS/KIND/images_IMAGES.pt``. A set or embedding model trains on the last curriculum stage's
   plants (11-20 leaves) from the start (``ris_lite.training.successors``). A run stopped early
   is resumed; a larger ``--images`` later CONTINUES the run (``--resume auto``): the plateau
   rule does not depend on the run's length, so that is the run a fresh command of the larger
   budget makes (resuming repeats a run step for step), at half the cost. Several budgets
   (``--images 18000,36000``) are trained in increasing order in the same runs, each model kept.
2. Scores every trained model and the shipped ``rosettes`` (RIS, 18,000 images) on the 100 test
   plants, in this process, on 1 thread: SBD, |DiC|, DiC, FgBgDice, the correlation of the
   predicted with the true counts, the share of each segment kind (``whole`` leaves, fragments,
   merges, spills; ``ris_lite.evaluation.diagnose.segment_kinds``) and inference plants/s.
   Each family's inference knobs are then chosen on the 64 validation plants, as the
   inference chapter does for RIS's assembly: the embedding model's clustering bandwidth and
   minimum cluster size, RIS's assembly and minimum segment size (``ris_lite.model.assembly``),
   the set model's score threshold. The rule: the lowest validation |DiC| among the settings
   within 0.5 SBD points of the best validation SBD. Each row holds the scores with the
   model's defaults (``default``) and with the chosen knobs (``tuned``).
3. Measures training images/s of every kind (RIS at its last curriculum stage, up to 22 steps)
   on this machine in this run: ``--probe-seconds`` of training steps at batch 4 on 1 thread;
   beside it each run's own images/s (its images over its training time, under whatever else
   ran beside it).

Writes one JSON (``--out``) with the rows, the commands that made them and the machine.
``--ship`` then exports each trained family (at the smallest budget) to
``ris_lite/pretrained/rosettes_KIND.pt`` (as
``ris-lite export`` does) with the knobs chosen on validation written into its model config
(the embedding model's ``bandwidth`` and ``min_cluster_size``), so that
``load_pretrained("rosettes_embedding").predict`` uses them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ris_lite.data.rosette import RosetteDataset
from ris_lite.evaluation.count_report import count_correlation
from ris_lite.evaluation.diagnose import SEGMENT_KINDS, segment_kinds
from ris_lite.evaluation.evaluate import predict_dataset
from ris_lite.evaluation.metrics import evaluate_labels
from ris_lite.model.checkpoint import export, load_checkpoint, run_summary, save_atomic
from ris_lite.model.embedding import EmbeddingConfig
from ris_lite.model.ris import RISConfig
from ris_lite.model.set_prediction import SetConfig
from ris_lite.precision import cpu_name
from ris_lite.pretrained import load_model, pretrained_path
from ris_lite.training.config import TrainConfig
from ris_lite.training.trainer import Trainer

ENCODER = ["--channels", "30", "--fcn-dilations", "1,2,4,8"]
#: the shipped RIS's recipe (ris_lite/pretrained/README.md), less its --max-steps
RECIPE = ["--data", "synthetic", *ENCODER, "--eval-every", "50", "--stage-max-steps", "250", "--quiet"]
#: the shipped RIS's lr hold at the last stage; a hold as long as the run keeps the lr constant
HOLD = 1000
CONFIGS = {"ris": RISConfig, "set": SetConfig, "embedding": EmbeddingConfig}


def one_thread_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


#: learning rates that differ from the recipe's 2e-3. The set model's attention decoder collapsed
#: at 2e-3 (matched IoU 0.06 after 1,090 steps of the first 18k run, every mask empty or full);
#: DETR's own recipe trains its transformer at 1e-4 (AdamW), so the set model gets 2e-4 here
FAMILY_LR = {"set": "2e-4"}


def fresh_command(kind: str, out: Path, steps: int, batch: int, hold: int = HOLD) -> list:
    """The ``ris-lite train`` command (as ``python -m ris_lite``) that starts one family's run."""
    lr = ["--lr", FAMILY_LR[kind]] if kind in FAMILY_LR else []
    return ([sys.executable, "-m", "ris_lite", "train", "--out", str(out), "--max-steps", str(steps),
             "--batch-size", str(batch), *RECIPE, "--lr-hold-steps", str(hold), *lr] + ([] if kind == "ris" else ["--model-kind", kind]))


def as_typed(cmd: list) -> str:
    """``python -m ris_lite ...`` as the ``ris-lite ...`` a reader types."""
    return " ".join(["ris-lite", *cmd[3:]])


def train_command(kind: str, out: Path, steps: int, batch: int, hold: int = HOLD) -> list:
    """:func:`fresh_command`, or ``--resume auto`` to ``steps`` when ``out`` holds the run."""
    if (out / "last.pt").is_file():
        return [sys.executable, "-m", "ris_lite", "train", "--out", str(out), "--max-steps", str(steps),
                "--resume", "auto", "--quiet"]
    return fresh_command(kind, out, steps, batch, hold)


def train_all(kinds, runs: Path, images: int, batch: int, parallel: bool, hold: int = HOLD) -> dict:
    """Train, resume or extend every family's run ``RUNS/KIND`` to ``images / batch`` steps and
    keep its model there as ``images_IMAGES.pt``; returns ``{kind: that file}``."""
    steps = images // batch
    kept, procs = {}, []
    for kind in kinds:
        out = runs / kind
        kept[kind] = out / f"images_{images}.pt"
        if kept[kind].is_file():
            continue
        done = load_checkpoint(out / "last.pt")["trainer"]["step"] if (out / "last.pt").is_file() else 0
        if done > steps:
            raise SystemExit(f"{out / 'last.pt'} is at step {done}, past {steps}: its {images}-image model was not "
                             "kept; train it in another --runs folder")
        if done < steps:
            cmd = train_command(kind, out, steps, batch, hold)
            print("+", as_typed(cmd), file=sys.stderr)
            procs.append((kind, subprocess.Popen(cmd, env=one_thread_env())))
            if not parallel and procs[-1][1].wait():
                raise SystemExit(f"training {kind} failed (exit {procs[-1][1].returncode})")
    for kind, proc in procs:
        if proc.wait():
            raise SystemExit(f"training {kind} failed (exit {proc.returncode})")
    for path in kept.values():
        if not path.is_file():  # a copy, then a rename: never half a file
            shutil.copyfile(path.parent / "last.pt", path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)
    return kept


def score(model, plants: int, max_steps: int = 30) -> dict:
    """The test-plant scores of one model on this process's threads (module docstring, 2)."""
    data = RosetteDataset("test", length=plants, **(getattr(model, "data_options", None) or {}))
    t0 = time.perf_counter()
    preds, gts = predict_dataset(model, data, max_steps=max_steps)
    seconds = time.perf_counter() - t0
    r = evaluate_labels(preds, gts)
    kinds = Counter(k for p, g in zip(preds, gts) for k in segment_kinds(p, g))
    segments = max(sum(kinds.values()), 1)
    pred_counts = [int(p.max()) for p in preds]  # consecutive ids: the largest is the count
    true_counts = [int(g.max()) for g in gts]
    corr = count_correlation(pred_counts, true_counts)
    return {"sbd": round(float(r["sbd"]), 4), "abs_dic": round(float(r["abs_dic"]), 3),
            "dic": round(float(r["dic"]), 3), "fgbg_dice": round(float(r["fgbg_dice"]), 4),
            "count_correlation": None if corr is None else round(corr, 3),
            "mean_count": round(float(np.mean(pred_counts)), 2),
            "segment_kinds": {k: round(kinds[k] / segments, 3) for k in SEGMENT_KINDS},
            "whole_leaf_share": round(kinds["whole"] / segments, 3), "segments": sum(kinds.values()),
            "inference_plants_per_s": round(len(data) / seconds, 2), "plants": len(data)}


def probe_speed(kind: str, seconds: float, batch: int) -> float:
    """Training images/s of a new ``kind`` model with the benchmark's encoder, at batch
    ``batch`` on this process's threads, after two warm-up steps; RIS at its last stage."""
    model = CONFIGS[kind](fcn_dilations=(1, 2, 4, 8)).to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(TrainConfig(model=model, model_kind=kind, batch_size=batch, val_images=1), tmp)
        t.curriculum.stage = len(t.curriculum.stages) - 1
        for _ in range(2):
            t.train_step()
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            t.train_step()
            steps += 1
        return steps * batch / (time.perf_counter() - t0)


#: the inference knobs of each family searched on the validation plants (module docstring, 2)
GRIDS = {"ris": [{"assembly": a, "min_size": m} for a in ("first", "argmax") for m in (0, 10, 20, 40, 80)],
         "set": [{"score_threshold": t} for t in (0.3, 0.4, 0.5, 0.6, 0.7)],
         "embedding": [{"bandwidth": b, "min_size": m} for b in (1.0, 1.25, 1.5, 1.75, 2.0)
                       for m in (8, 15, 30, 45, 60)]}


class WithKnobs:
    """A model whose ``predict`` always gets ``knobs`` (for ``predict_dataset``)."""

    def __init__(self, model, knobs: dict):
        self.model, self.knobs, self.data_options = model, knobs, getattr(model, "data_options", None)

    def predict(self, images, **kw):
        return self.model.predict(images, **kw, **self.knobs)


def tune(model, kind: str, val=None) -> dict:
    """The knobs of ``GRIDS[kind]`` chosen by the module's rule on ``val``: the synthetic
    validation plants by default, or any data set (``benchmarks/real_a1.py``: a real folder's
    validation side, scored at its files' resolution)."""
    if val is None:
        val = RosetteDataset("val", **(getattr(model, "data_options", None) or {}))
    rows = []
    for knobs in GRIDS[kind]:
        preds, gts = predict_dataset(WithKnobs(model, knobs), val)
        r = evaluate_labels(preds, gts)
        rows.append((knobs, float(r["sbd"]), float(r["abs_dic"])))
    best = max(sbd for _, sbd, _ in rows)
    knobs, sbd, abs_dic = min((r for r in rows if r[1] >= best - 0.005), key=lambda r: (r[2], -r[1]))
    return {"knobs": knobs, "val_sbd": round(sbd, 4), "val_abs_dic": round(abs_dic, 3), "val_plants": len(val)}


def validation_curve(log: Path, up_to_step: int) -> list:
    """``[[step, validation loss], ...]`` of a run's ``log.csv`` up to ``up_to_step`` (the kept
    model's step: a run continued past it logged more); ``[]`` without a log."""
    if not log.is_file():
        return []
    with log.open() as f:
        return [[int(r["step"]), round(float(r["val_loss"]), 4)] for r in csv.DictReader(f)
                if r["val_loss"] and int(r["step"]) <= up_to_step]


def run_row(source, name: str, plants: int, command: str) -> dict:
    """One row: scores, the run's own training images/s and images, its lr cuts and its
    validation loss curve."""
    model = load_model(source)
    path = Path(str(source)) if Path(str(source)).is_file() else pretrained_path(str(source))
    state = load_checkpoint(path)
    # a run folder holds log.csv; an exported model sits beside NAME_log.csv
    log = path.parent / "log.csv" if (path.parent / "log.csv").is_file() else path.with_name(f"{path.stem}_log.csv")
    counters = state.get("trainer", {})
    elapsed = counters.get("elapsed") or 0
    kind = state["config"].get("model_kind", "ris")
    chosen = tune(model, kind)
    return {"model": name, "kind": kind, "command": command,
            "images": counters.get("images_seen"), "steps": counters.get("step"),
            "train_minutes": round(elapsed / 60, 1),
            # the plateau rule's lr cuts: a run past its last cut trains at the floor
            "lr_cuts": [{"step": e["step"], "event": e["event"]} for e in state.get("events", [])
                        if e["event"].startswith("lr")],
            "validation_curve": validation_curve(log, counters.get("step", 0)),
            "run_images_per_s": round(counters["images_seen"] / elapsed, 2) if elapsed else None,
            "parameters": sum(p.numel() for p in model.parameters()), **score(model, plants),
            "tuned": {**chosen, **score(WithKnobs(model, chosen["knobs"]), plants)}}


#: knobs that live in a family's model config (the rest are arguments of ``predict``)
CONFIG_KNOBS = {"embedding": {"bandwidth": "bandwidth", "min_size": "min_cluster_size"}}


def ship(path: Path, kind: str, knobs: dict, where: Path = Path("ris_lite/pretrained")) -> Path:
    """Export the run of ``path`` as ``where/rosettes_KIND.pt`` with its config-held knobs set."""
    out = where / f"rosettes_{kind}.pt"
    export(path, out)
    state = load_checkpoint(out)
    for knob, field in CONFIG_KNOBS.get(kind, {}).items():
        state["config"]["model"][field] = knobs[knob]
    save_atomic(state, out)
    (where / f"rosettes_{kind}_config.json").write_text(run_summary(state))
    shutil.copyfile(path.parent / "log.csv", where / f"rosettes_{kind}_log.csv")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="18000",
                   help="training images per family, or several budgets of the same runs, comma-separated "
                        "(default: the shipped RIS's 18000)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--families", default="set,embedding", help="families to train: ris, set, embedding")
    p.add_argument("--runs", default="runs/successors", help="where the runs are written (and resumed)")
    p.add_argument("--parallel", action="store_true", help="train the families at once, one thread each")
    p.add_argument("--lr-hold-steps", type=int, default=HOLD,
                   help="steps each lr is held at the last stage (default: the shipped RIS's); as many as the run's "
                        "steps keep the lr constant (a new --runs folder: a run keeps the hold it started with)")
    p.add_argument("--plants", type=int, default=100, help="test plants scored")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the shipped RIS's row (scored by another run of this benchmark)")
    p.add_argument("--probe-seconds", type=float, default=20.0, help="seconds of each training-speed probe (0: skip)")
    p.add_argument("--out", default=None, help="the JSON (default benchmarks/results/successors_IMAGESk.json)")
    p.add_argument("--ship", action="store_true",
                   help="export each family to ris_lite/pretrained/rosettes_KIND.pt with its validation-chosen knobs")
    a = p.parse_args(argv)
    kinds = [k for k in a.families.split(",") if k]
    if not set(kinds) <= set(CONFIGS):
        raise SystemExit(f"--families: choose from {', '.join(CONFIGS)}, got {a.families!r}")
    try:
        budgets = sorted({int(v) for v in a.images.split(",")})
    except ValueError:
        raise SystemExit(f"--images: whole numbers of images, comma-separated, got {a.images!r}") from None
    if budgets[0] < a.batch_size:
        raise SystemExit(f"--images: each budget needs at least one batch ({a.batch_size} images), got {budgets[0]}")
    # the smaller budgets first: a larger one continues the same runs (module docstring, 1)
    models = {b: train_all(kinds, Path(a.runs), b, a.batch_size, a.parallel, a.lr_hold_steps) for b in budgets}
    torch.set_num_threads(1)  # scoring and probes: 1 thread, as the runs
    shipped_cmd = ("ris-lite train --data synthetic --out runs/rosettes --max-steps 4500 --fcn-dilations 1,2,4,8 "
                   "--batch-size 4 --eval-every 50 --stage-max-steps 250 --lr-hold-steps 1000 "
                   "--snapshot-minutes 5 --quiet")
    rows = [] if a.no_reference else [run_row("rosettes", "rosettes (shipped RIS)", a.plants, shipped_cmd)]
    for images, kept in models.items():
        for kind, path in kept.items():
            cmd = as_typed(fresh_command(kind, path.parent, images // a.batch_size, a.batch_size, a.lr_hold_steps))
            held = "" if a.lr_hold_steps == HOLD else f", lr held {a.lr_hold_steps} steps"
            rows.append(run_row(path, f"{kind} ({images} images{held})", a.plants, cmd))
    probes = {k: round(probe_speed(k, a.probe_seconds, a.batch_size), 2) for k in CONFIGS} if a.probe_seconds else {}
    out = {"images": budgets[-1], "budgets": budgets, "lr_hold_steps": a.lr_hold_steps, "batch_size": a.batch_size, "threads": 1, "test_plants": a.plants,
           "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__},
           "train_images_per_s_probe": probes, "rows": rows}
    if a.ship:  # the smallest budget's models: the shipped RIS's own budget by default
        for row, (kind, path) in zip(rows[0 if a.no_reference else 1:], models[budgets[0]].items()):
            ship(path, kind, row["tuned"]["knobs"])
    text = json.dumps(out, indent=1)
    print(text)
    path = Path(a.out or f"benchmarks/results/successors_{budgets[-1] // 1000}k.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
