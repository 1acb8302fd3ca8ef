"""Time to reach the target (SBD >= 0.85 and |DiC| <= 0.8 on the synthetic test split,
the project's long-run goal: Ren and Zemel's 84.9 / 0.8 on real A1) on the CPU.

A training run made with ``--snapshot-minutes`` keeps the weights every few training minutes
(``OUT/snapshots/min_MMMM.mm.pt``); this script scores each snapshot on the fixed test split,
off the training clock, and prints the learning curve and the first time both targets hold.

    # the paper-faithful shipped command (4,500 steps: 83 minutes on one core of the project's CPU) plus snapshots
    python benchmarks/bench_time_to_target.py --train --run runs/ttt
    # or score an existing run
    python benchmarks/bench_time_to_target.py --run runs/rosettes [--limit 100]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ris_lite.cli import main as cli
from ris_lite.data.rosette import RosetteDataset
from ris_lite.evaluation.evaluate import evaluate_model
from ris_lite.model.checkpoint import load_checkpoint, model_from_checkpoint

#: ``ris-lite train`` arguments of the shipped checkpoint (ris_lite/pretrained/README.md).
SHIPPED_TRAIN_ARGS = ["--data", "synthetic", "--max-steps", "4500", "--fcn-dilations", "1,2,4,8",
                      "--batch-size", "4", "--eval-every", "50", "--stage-max-steps", "250",
                      "--lr-hold-steps", "1000", "--quiet"]
TARGET_SBD, TARGET_ABS_DIC = 0.85, 0.8


def learning_curve(run: Path, limit: int, max_steps: int = 30):
    """``[(training minutes, step, stage, scores)]`` for every snapshot of ``run`` and its last.pt."""
    paths = sorted((run / "snapshots").glob("min_*.pt")) + [run / "last.pt"]
    test = RosetteDataset("test", length=limit)
    rows, steps_seen = [], set()
    for path in paths:
        if not path.is_file():
            continue
        counters = load_checkpoint(path)["trainer"]
        if counters["step"] in steps_seen:  # last.pt saved at the same step as the final snapshot
            continue
        steps_seen.add(counters["step"])
        scores = evaluate_model(model_from_checkpoint(path), test, max_steps=max_steps)
        rows.append((counters["elapsed"] / 60, counters["step"], counters["stage"], scores))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="training output folder (with snapshots/)")
    p.add_argument("--train", action="store_true", help="first train with the shipped command into --run")
    p.add_argument("--snapshot-minutes", default="5")
    p.add_argument("--limit", type=int, default=100, help="test plants to score (the split has 100)")
    p.add_argument("--csv", default=None,
                   help="where to write the curve (default RUN/curve.csv, which `ris-lite export` ships)")
    a = p.parse_args()
    run = Path(a.run)
    if a.train:
        cli(["train", *SHIPPED_TRAIN_ARGS, "--out", str(run), "--snapshot-minutes", a.snapshot_minutes])
    if not (run / "snapshots").is_dir():
        raise SystemExit(f"{run}/snapshots not found: train with --snapshot-minutes (or pass --train)")
    rows = learning_curve(run, a.limit)
    print(f"test split, {a.limit} plants; target SBD >= {TARGET_SBD}, |DiC| <= {TARGET_ABS_DIC}")
    print(f"{'minutes':>8} {'step':>7} {'stage':>5} {'SBD':>6} {'|DiC|':>6} {'DiC':>6} {'FgBg':>6}")
    reached = None
    for minutes, step, stage, scores in rows:
        print(f"{minutes:8.1f} {step:7d} {stage:5d} {scores['sbd']:6.3f} {scores['abs_dic']:6.2f} "
              f"{scores['dic']:6.2f} {scores['fgbg_dice']:6.3f}")
        if reached is None and scores["sbd"] >= TARGET_SBD and scores["abs_dic"] <= TARGET_ABS_DIC:
            reached = minutes
    with open(a.csv or run / "curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["minutes", "step", "stage", "sbd", "abs_dic", "dic", "fgbg_dice"])
        for minutes, step, stage, scores in rows:
            w.writerow([f"{minutes:.2f}", step, stage, f"{scores['sbd']:.4f}", f"{scores['abs_dic']:.3f}",
                        f"{scores['dic']:.3f}", f"{scores['fgbg_dice']:.4f}"])
    if reached is not None:
        print(f"target reached after {reached:.1f} training minutes")
    else:
        best = max(rows, key=lambda r: r[3]["sbd"])
        print(f"target NOT reached in {rows[-1][0]:.1f} training minutes; best SBD {best[3]['sbd']:.3f} "
              f"(|DiC| {best[3]['abs_dic']:.2f}) at {best[0]:.1f} minutes")


if __name__ == "__main__":
    main()
