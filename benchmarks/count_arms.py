"""Issue #47: which RIS counts, at twice the shipped image budget with the lr held.

Chapter ``book/12_beyond`` (section "A model that counts") shows this benchmark's JSON; the arm it
ranks first by the count report is shipped as the default model (``ris_lite.pretrained``).
Every arm: 9,000 steps of batch 4 (36,000 images, twice the shipped ``rosettes``), one seed, the
plateau rule with ``--lr-hold-steps 4800`` (the last stage starts near step 2,000, so no lr cut
comes before the last quarter of the run, step 6,750):

* ``held``: ``count_scratch``'s recipe (union input, union-aware stop score, monotonic score
  loss from step 0; ours) with the lr held;
* ``painted``: ``held`` with the stop target of a step set by what it painted (``--score-target
  painted``, ours; ``ris_lite.training.loss.painted_leaf_targets``);
* ``fcn_init``: ``held`` with the plant FCN copied from the shipped embedding model's FCN
  (``--init-fcn rosettes_embedding``, ours), frozen for the first curriculum stage
  (``--fcn-frozen-stages 1``), then trained jointly;
* ``paper_held``: the paper's recipe (no lever), the shipped ``rosettes`` command with the lr held:
  is the paper's model under-trained or limited?

Two arms go on from a committed checkpoint of a run that had the same recipe and had not cut its
lr yet (a longer hold changes nothing before the first cut): ``held`` from ``count_scratch`` at
step 3,400 (commit 8c6fc38), ``paper_held`` from the shipped run's step 3,000
(``benchmarks/checkpoints/i24/hold/step3000.pt``). The branch is written into the run's events.
Runs live in ``runs/count36k/ARM``; a session ends by ``--commit``, which copies each arm's
``last.pt`` and ``log.csv`` to ``benchmarks/checkpoints/i47/ARM`` for the next session's
``--train`` to resume.

    python benchmarks/count_arms.py --train --arms held,paper_held       # background, hours, 1 thread each
    python benchmarks/count_arms.py --commit                              # before a session ends
    python benchmarks/count_arms.py --score --out ris_lite/pretrained/count_arms.json   # ~15 min per arm
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from ris_lite.model.checkpoint import load_checkpoint, run_summary, save_atomic
from ris_lite.precision import cpu_name

STEPS, HOLD = 9000, 4800
LEVERS = ["--union-input", "--score-sees-union", "--monotonic-weight", "1"]
RECIPE = ["--data", "synthetic", "--max-steps", str(STEPS), "--fcn-dilations", "1,2,4,8", "--batch-size", "4",
          "--eval-every", "50", "--stage-max-steps", "250", "--lr-hold-steps", str(HOLD)]
ARMS = {
    "held": RECIPE + LEVERS,
    "painted": RECIPE + LEVERS + ["--score-target", "painted"],
    "fcn_init": RECIPE + LEVERS + ["--init-fcn", "rosettes_embedding", "--fcn-frozen-stages", "1"],
    "paper_held": RECIPE,
}
#: arm -> (a git revision or None, the checkpoint, the log it continues): a run of the same recipe
#: before its first lr cut
BRANCHES = {
    "held": ("8c6fc38", "benchmarks/checkpoints/i38/count_scratch/last.pt",
             "benchmarks/checkpoints/i38/count_scratch/log.csv"),
    "paper_held": (None, "benchmarks/checkpoints/i24/hold/step3000.pt", "ris_lite/pretrained/rosettes_log.csv"),
}
RUNS = Path("runs/count36k")
COMMITTED = Path("benchmarks/checkpoints/i47")


def _read(rev, path: str) -> bytes:
    if rev is None:
        return Path(path).read_bytes()
    return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True).stdout


def branch(arm: str, out: Path) -> None:
    """Write ``out/last.pt``: the branch point of ``arm`` with its max_steps and lr hold, the plateau
    count cleared (under a longer hold it would be 0), and a note in its events; the log up to it."""
    rev, ckpt, log = BRANCHES[arm]
    state = torch.load(io.BytesIO(_read(rev, ckpt)), map_location="cpu", weights_only=False)
    step = state["trainer"]["step"]
    if any(e["event"].startswith("lr ->") for e in state["events"]):
        raise SystemExit(f"{ckpt}: its lr was cut before step {step}: not a branch point")
    before = {k: state["config"][k] for k in ("max_steps", "lr_hold_steps")}
    state["config"].update(max_steps=STEPS, lr_hold_steps=HOLD)
    state["trainer"]["bad_evals"] = 0
    state["events"].append({"step": step, "event": f"branched from {ckpt}{f' at {rev}' if rev else ''}: "
                            f"max_steps {before['max_steps']} -> {STEPS}, lr_hold_steps "
                            f"{before['lr_hold_steps']} -> {HOLD}"})
    out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.reader(io.StringIO(_read(rev, log).decode())))
    with open(out / "log.csv", "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
    save_atomic(state, out / "last.pt")
    (out / "last.json").write_text(run_summary(state))


def command(arm: str) -> list:
    out = RUNS / arm
    if not (out / "last.pt").is_file():
        if (COMMITTED / arm / "last.pt").is_file():  # a later session: go on from the committed checkpoint
            out.mkdir(parents=True, exist_ok=True)
            for name in ("last.pt", "log.csv"):
                shutil.copyfile(COMMITTED / arm / name, out / name)
        elif arm in BRANCHES:
            branch(arm, out)
    if (out / "last.pt").is_file():
        return ["ris-lite", "train", "--out", str(out), "--resume", "auto", "--quiet"]
    return ["ris-lite", "train", *ARMS[arm], "--quiet", "--out", str(out)]


def train(arms) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for arm in arms:
        cmd = command(arm)
        print("+", " ".join(cmd), file=sys.stderr)
        log = open(RUNS / f"{arm}.out", "a")
        procs.append(subprocess.Popen([sys.executable, "-m", "ris_lite", *cmd[1:]], env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
    failed = [arm for arm, p in zip(arms, procs) if p.wait()]
    if failed:
        raise SystemExit(f"training failed: {', '.join(failed)} (see {RUNS}/ARM.out)")


def commit(arms) -> None:
    """Copy each arm's ``last.pt`` (with its summary) and ``log.csv`` where git keeps them."""
    for arm in arms:
        run = RUNS / arm
        if not (run / "last.pt").is_file():
            continue
        dest = COMMITTED / arm
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("last.pt", "last.json", "log.csv"):
            shutil.copyfile(run / name, dest / name)
        print(f"{arm}: step {load_checkpoint(run / 'last.pt')['trainer']['step']} -> {dest}")


def curve(run: Path) -> list:
    """``[step, validation loss]`` at every evaluation of the run's log."""
    with open(run / "log.csv") as f:
        return [[int(r["step"]), round(float(r["val_loss"]), 4)] for r in csv.DictReader(f) if r["val_loss"]]


def score(arms, test_plants: int) -> dict:
    """Every finished-or-not arm's ``last.pt`` and the references, each with its assembly chosen on
    the 64 validation plants (``tune_assembly.run``), its test count report, the segment diagnosis and
    its validation curve; the arms ranked by |DiC| under their chosen assembly (SBD breaks ties)."""
    from tune_assembly import run as tune

    from ris_lite import RosetteDataset
    from ris_lite.evaluation.count_report import best_constant, training_counts
    from ris_lite.evaluation.diagnose import diagnose
    from ris_lite.pretrained import load_model

    torch.set_num_threads(1)
    constant = best_constant(training_counts(RosetteDataset("train")))
    test = RosetteDataset("test", length=test_plants)
    sources = {"rosettes": "rosettes", "count_scratch": "benchmarks/checkpoints/i38/count_scratch/last.pt",
               **{arm: str(RUNS / arm / "last.pt") for arm in arms if (RUNS / arm / "last.pt").is_file()}}
    out = {"constant": constant, "test_plants": test_plants, "steps": STEPS, "lr_hold_steps": HOLD,
           "commands": {arm: " ".join(["ris-lite", "train", *ARMS[arm], "--quiet", "--out", f"{RUNS}/{arm}"])
                        for arm in ARMS},
           "branches": {arm: {"revision": r, "checkpoint": c} for arm, (r, c, _) in BRANCHES.items()},
           "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "torch": torch.__version__, "models": {}}
    for name, source in sources.items():
        row = tune(source, constant, test_plants)
        d = diagnose(load_model(source).cpu().eval(), test, probe_plants=0)
        row.update(segment_kinds=d["segment_kinds"], duplicate_steps=d["duplicate_steps"])
        if Path(source).is_file():
            state = load_checkpoint(source)
            row.update(step=state["trainer"]["step"], images_seen=state["trainer"]["images_seen"],
                       events=state["events"], curve=curve(Path(source).parent))
        out["models"][name] = row
    ranked = [a for a in arms if a in out["models"]]
    out["ranking"] = sorted(ranked, key=lambda a: (out["models"][a]["test"]["chosen"]["abs_dic"],
                                                   -out["models"][a]["test"]["chosen"]["sbd"]))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", action="store_true")
    p.add_argument("--commit", action="store_true")
    p.add_argument("--score", action="store_true")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--test-plants", type=int, default=100)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    arms = a.arms.split(",")
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        p.error(f"unknown arm(s) {unknown}; the arms: {', '.join(ARMS)}")
    RUNS.mkdir(parents=True, exist_ok=True)
    if a.train:
        train(arms)
    if a.commit:
        commit(arms)
    if not a.score:
        return {}
    out = score(arms, a.test_plants)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
