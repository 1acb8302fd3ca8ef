"""Issue #24's ablation: the lr hold, the boundary skip and the overlap penalty, at equal steps.

Every arm is the shipped paper-faithful recipe (``SHIPPED_TRAIN_ARGS`` of
``bench_time_to_target.py``: dilated FCN, batch 4, validation every 50 steps, stage cap 250)
plus its own switches, trained from scratch with seed 0 for a fixed number of steps, two arms
side by side with one thread each (the project's CPU has two cores), so equal steps are equal
CPU time up to what an arm adds per step (the skip: +6 % here). Each arm's checkpoints are then
scored on the 100 test plants with the diagnosis of ``ris_lite.evaluation.diagnose``.

    python benchmarks/ablate_whole_leaves.py --train --arms hold,skip --steps 3000   # ~45 min, both at once
    python benchmarks/ablate_whole_leaves.py --train --arms hold,skip --steps 4500   # resumes them to 4,500
    python benchmarks/ablate_whole_leaves.py --score --arms hold,skip --out ris_lite/pretrained/ablation_whole_leaves.json

Both arms' checkpoints at 3,000 steps are kept in ``benchmarks/checkpoints/i24/ARM/step3000.pt``
(copy one to ``runs/i24/ARM/last.pt`` to resume it); ``hold`` at 4,500 steps is the shipped
``rosettes``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from diagnose import run as diagnose_run  # benchmarks/diagnose.py

#: the arms: extra ``ris-lite train`` arguments on top of the shipped recipe
ARMS = {
    "hold": ["--lr-hold-steps", "1000"],                                 # the schedule fix (paper's rule)
    "skip": ["--lr-hold-steps", "1000", "--skip", "both"],              # + boundary skip (ours)
    "skip_overlap": ["--lr-hold-steps", "1000", "--skip", "both", "--overlap-weight", "0.3"],  # + penalty
}
RECIPE = ["--data", "synthetic", "--fcn-dilations", "1,2,4,8", "--batch-size", "4", "--eval-every", "50",
          "--stage-max-steps", "250", "--snapshot-minutes", "5", "--quiet"]


def train(arms, steps: int, root: Path) -> None:
    """Start (or resume) every arm to ``steps``, all at once, one thread each; keep a copy of
    each arm's checkpoint at ``steps`` as ``step{steps}.pt``."""
    procs = []
    for arm in arms:
        out = root / arm
        args = (["--resume", "auto", "--snapshot-minutes", "5", "--quiet"] if (out / "last.pt").exists() else RECIPE + ARMS[arm])
        cmd = [sys.executable, "-c", "import sys; from ris_lite.cli import main; sys.exit(main(sys.argv[1:]))",
               "train", "--out", str(out), "--max-steps", str(steps), *args]
        log = open(root / f"{arm}.log", "a")
        procs.append((arm, subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})))
    for arm, p in procs:
        if p.wait() != 0:
            raise SystemExit(f"arm {arm} failed: see {root / arm}.log")
        shutil.copyfile(root / arm / "last.pt", root / arm / f"step{steps}.pt")


#: the ``rosettes`` shipped before this ablation (the plateau rule without a hold, 5,767 steps); the
#: ``hold`` arm at 4,500 steps replaced it
PREVIOUS = Path(__file__).parent / "checkpoints" / "i24" / "rosettes_plateau5767.pt"


def score(arms, root: Path, plants: int) -> dict:
    """The diagnosis of the previous ``rosettes`` and of every ``step*.pt`` of every arm."""
    table = {"previous rosettes@5767": {**diagnose_run(str(PREVIOUS), plants=plants),
                                        "model": "previous rosettes@5767"}}
    for arm in arms:
        for ckpt in sorted((root / arm).glob("step*.pt"), key=lambda p: int(p.stem[4:])):
            row = diagnose_run(str(ckpt), plants=plants)
            row["model"] = f"{arm}@{ckpt.stem[4:]}"
            table[row["model"]] = row
            print(json.dumps({k: row[k] for k in ("model", "sbd", "abs_dic", "segment_kinds", "duplicate_steps",
                                                   "untargeted_leaves", "probe_auc")}))
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="hold,skip", help=f"comma-separated, of {', '.join(ARMS)}")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--root", default="runs/i24")
    p.add_argument("--train", action="store_true")
    p.add_argument("--score", action="store_true")
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--out", default=None, help="write the scored table (JSON) here")
    a = p.parse_args(argv)
    arms = a.arms.split(",")
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    if a.train:
        train(arms, a.steps, root)
    if a.score:
        table = score(arms, root, a.plants)
        if a.out:
            Path(a.out).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
