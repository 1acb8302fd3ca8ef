"""What makes RIS learn? Every lever alone and combined, at equal CPU-minutes (book chapter 12).

Arms (all with the shipped recipe's dilated FCN, batch 4 -- 8 for canvas arms, whose samples
are one step each --, `precision="auto"` (bf16 where the CPU has it natively), seed 0):

* ``paper``          the shipped paper-faithful recipe: 22-step BPTT, curriculum, plateau lr cuts
* ``paper+cosine``   the same with a cosine lr spanning the budget (ours)
* ``paper+stride1``  the ConvLSTM on the 106 x 100 grid, as the authors' code, instead of 53 x 50
* ``canvas``         canvas input, one teacher-forced step per sample, plateau lr cuts (ours)
* ``canvas+cosine``  ... with the cosine schedule
* ``canvas+cosine+ss``          ... plus scheduled sampling (own canvas, chance rising to 0.5)
* ``canvas+cosine+ss+stride1``  ... plus the finer grid
* ``memory``         canvas input AND RIS's memory: whole sequences with the curriculum, the
                     canvas teacher-forced step by step (``canvas_memory=True``; ours): the
                     recipe of the shipped ``rosettes_canvas``
* ``memory+ss``      ... plus scheduled sampling (own canvas, chance rising to 0.5)

Each arm runs in its own process on ONE thread for ``--minutes`` of that process's CPU time
(``time.process_time``, so other load on the machine does not shift the comparison), two arms
at a time. A cosine or scheduled-sampling arm sizes its schedule to the budget: from the steps its sibling
(the family's first word: ``paper``, ``canvas``, ``memory``) made in an earlier round, when
there is one (a curriculum run speeds up and slows down with its sequence length), else from
30 CPU-seconds of its own speed. Each trained arm is then scored on the same 100 test plants (SBD, |DiC|).

    python benchmarks/ablate_learning.py [--minutes 12] [--out runs/ablate_learning] [--arms a,b]

Prints the table and writes it to ``OUT/table.csv`` (every arm with a result in OUT, so arms
run in separate invocations add up); the book's chapter 12 reads the copy shipped as
``ris_lite/pretrained/ablation_learning.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from _pairs import run_in_pairs

from ris_lite.data.rosette import RosetteDataset
from ris_lite.evaluation.evaluate import evaluate_model
from ris_lite.model.ris import RISConfig
from ris_lite.training.config import TrainConfig
from ris_lite.training.trainer import Trainer

PAPER = dict(lr=2e-3, batch_size=4, eval_every=50, stage_max_steps=250, val_images=64, patience=3)
CANVAS = dict(lr=1e-3, batch_size=8, eval_every=250, val_images=64, patience=3, warmup_steps=100)
ARMS = {
    "paper": ({}, dict(PAPER)),
    "paper+cosine": ({}, dict(PAPER, schedule="cosine")),
    "paper+stride1": ({"fcn_stride": 1}, dict(PAPER)),
    "canvas": ({"canvas": True}, dict(CANVAS)),
    "canvas+cosine": ({"canvas": True}, dict(CANVAS, schedule="cosine")),
    "canvas+cosine+ss": ({"canvas": True}, dict(CANVAS, schedule="cosine", sampling_final=0.5)),
    "canvas+cosine+ss+stride1": ({"canvas": True, "fcn_stride": 1},
                                 dict(CANVAS, schedule="cosine", sampling_final=0.5)),
    "memory": ({"canvas": True, "canvas_memory": True}, dict(PAPER)),
    "memory+ss": ({"canvas": True, "canvas_memory": True}, dict(PAPER, sampling_final=0.5)),
}
CALIBRATION_SECONDS = 30.0


def config_for(name: str, max_steps: int = 1_000_000) -> TrainConfig:
    model, train = ARMS[name]
    model = RISConfig(fcn_dilations=(1, 2, 4, 8), **model).to_dict()
    if train.get("schedule") == "cosine" or train.get("sampling_final"):
        train = dict(train, max_steps=max_steps)
    return TrainConfig(model=model, precision="auto", **train)


def steps_per_cpu_second(name: str, out: Path) -> float:
    """Speed of an arm over its first CPU-seconds, warm-up step excluded."""
    t = Trainer(config_for(name, max_steps=10_000), out / "calibration")
    t.clock = time.process_time
    t.train_step()
    t0, s0 = time.process_time(), t.step
    while time.process_time() - t0 < CALIBRATION_SECONDS:
        t.train_step()
    return (t.step - s0) / (time.process_time() - t0)


def run_arm(name: str, out: str, minutes: float) -> None:
    torch.set_num_threads(1)
    out = Path(out) / name.replace("+", "_")
    max_steps = 1_000_000
    if "cosine" in name or "ss" in name.split("+"):  # both are sized to the run
        sibling = out.parent / name.split("+")[0] / "result.json"
        if sibling.exists() and json.loads(sibling.read_text())["cpu_minutes"] >= minutes * 0.99:
            max_steps = json.loads(sibling.read_text())["steps"]
        else:
            max_steps = int(steps_per_cpu_second(name, out) * minutes * 60)
    trainer = Trainer(config_for(name, max_steps), out)
    trainer.clock = time.process_time
    trainer.run(budget_minutes=minutes, progress=False)
    scores = evaluate_model(trainer.model.eval(), RosetteDataset("test"), max_steps=30)
    result = {"arm": name, "steps": trainer.step, "images": trainer.images_seen,
              "cpu_minutes": round(trainer.elapsed / 60, 2), "planned_steps": max_steps, **scores}
    (out / "result.json").write_text(json.dumps(result, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=12.0, help="CPU-minutes of training per arm")
    p.add_argument("--out", default="runs/ablate_learning")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated; known: {', '.join(ARMS)}")
    a = p.parse_args()
    names = a.arms.split(",")
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    run_in_pairs(run_arm, names, a.out, a.minutes)
    print(f"{a.minutes:g} CPU-minutes per arm (1 thread), scored on the 100 synthetic test plants")
    print(f"{'arm':<26}{'steps':>7}{'images':>8}{'SBD %':>8}{'|DiC|':>7}{'DiC':>7}{'FgBg %':>8}")
    for n in names:
        path = Path(a.out) / n.replace("+", "_") / "result.json"
        if not path.exists():
            print(f"{n:<26} (no result: see {path.parent}/log.csv)")
            continue
        r = json.loads(path.read_text())
        print(f"{n:<26}{r['steps']:>7}{r['images']:>8}{100 * r['sbd']:>8.1f}{r['abs_dic']:>7.2f}"
              f"{r['dic']:>7.2f}{100 * r['fgbg_dice']:>8.1f}")
    results = [json.loads((Path(a.out) / n.replace("+", "_") / "result.json").read_text())
               for n in ARMS if (Path(a.out) / n.replace("+", "_") / "result.json").exists()]
    fields = ["arm", "cpu_minutes", "steps", "images", "sbd", "sbd_std", "abs_dic", "abs_dic_std",
              "dic", "fgbg_dice"]
    with open(Path(a.out) / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)


if __name__ == "__main__":
    main()
