"""Which model changes speed up learning? A controlled 2 x 2 comparison on the CPU.

Arms: the paper's FCN vs dilated FCN (``fcn_dilations=(1, 2, 4, 8)``), each without and with
mask feedback (``feedback=True``); ``--arms dilated,dilated+coords`` compares coordinate input
channels (``coords=True``) instead. Everything else is equal: seed, data, a short curriculum
up to 10-14 leaves (300 steps per stage), lr 2e-3, batch 1, precision auto (bf16 where native). Two
arms run at a time, one thread each, for the same wall-clock budget; the table is the mean
matched soft IoU per window of 200 training steps, so arms are compared at equal steps.

    python benchmarks/ablate_training.py [--minutes 8] [--out runs/ablation] [--arms a,b,...]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from _pairs import run_in_pairs

from ris_lite.model.ris import RISConfig
from ris_lite.training.config import TrainConfig
from ris_lite.training.trainer import Trainer

ARMS = {
    "paper": dict(),
    "feedback": dict(feedback=True),
    "dilated": dict(fcn_dilations=(1, 2, 4, 8)),
    "dilated+feedback": dict(fcn_dilations=(1, 2, 4, 8), feedback=True),
    "dilated+coords": dict(fcn_dilations=(1, 2, 4, 8), coords=True),
}
CURRICULUM = [[2, 2, 4], [4, 2, 6], [6, 4, 8], [8, 6, 10], [10, 8, 12], [13, 10, 14]]
WINDOW = 200


def train_arm(name: str, out: str, minutes: float) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(model=RISConfig(**ARMS[name]).to_dict(), lr=2e-3, batch_size=1,
                         curriculum=CURRICULUM, eval_every=100, stage_max_steps=300, val_images=16,
                         precision="auto")
    Trainer(config, Path(out) / name).run(budget_minutes=minutes, progress=False)


def windows(log: Path) -> dict:
    """``{window start: (mean matched IoU, last length)}`` over the training log."""
    rows = list(csv.DictReader(open(log)))
    out = {}
    for r in rows:
        out.setdefault(int(r["step"]) // WINDOW * WINDOW, []).append((float(r["iou"]), r["length"]))
    return {k: (sum(i for i, _ in v) / len(v), v[-1][1]) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--arms", default="paper,feedback,dilated,dilated+feedback",
                   help=f"comma-separated, run two at a time; known: {', '.join(ARMS)}")
    a = p.parse_args()
    names = a.arms.split(",")
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    run_in_pairs(train_arm, names, a.out, a.minutes)
    tables = {n: windows(Path(a.out) / n / "log.csv") for n in names}
    common = sorted(set.intersection(*(set(t) for t in tables.values())))[:-1]  # last window is partial
    print(f"mean matched soft IoU per {WINDOW} steps (L = sequence length), {a.minutes:g} min per arm")
    print("steps      " + "".join(f"{n:>18}" for n in names))
    for w in common:
        print(f"{w:5d}-{w + WINDOW:<5d}" + "".join(f"{tables[n][w][0]:>12.3f} (L{tables[n][w][1]:>2})" for n in names))
    last = common[-3:]
    print("mean of the last 3 common windows: "
          + ", ".join(f"{n} {sum(tables[n][w][0] for w in last) / len(last):.3f}" for n in names))


if __name__ == "__main__":
    main()
