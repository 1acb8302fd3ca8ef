"""Issue #38's counting levers (ours) against the paper's recipe at equal steps, with the count report.

Chapter ``book/12_beyond`` (section "A model that counts") shows this benchmark's JSON. The arms,
each one process of 1 thread, with the same seed, plants and lr rule:

* ``paper_ft``: the shipped ``rosettes`` trained on at its last curriculum stage (the paper's
  model and loss; also the question "is it under-trained?" at +1,000 steps);
* ``count_ft``: the same, with the union of emitted masks into the ConvLSTM and the stop score
  and the monotonic score loss (``--union-input --score-sees-union --monotonic-weight 1``),
  zero-initialised so it starts as ``rosettes``;
* ``count_scratch``: the levers from scratch on the shipped recipe (4,500 steps; resumed over
  sessions from the checkpoint committed in ``benchmarks/checkpoints/i38/count_scratch``).

``--score`` scores every arm's ``last.pt`` (and ``rosettes``) on the 100 test plants: SBD,
|DiC|, the diagnosis (segment kinds, duplicate steps) and the count report against the best
constant guess chosen on the training counts, for the paper's label assembly and for the
assembly chosen on validation by ``benchmarks/tune_assembly.py``.

    python benchmarks/ablate_counting.py --train --arms count_ft,paper_ft          # ~35 min each, 1 thread
    python benchmarks/ablate_counting.py --score --out ris_lite/pretrained/ablation_counting.json   # ~10 min
    python benchmarks/ablate_counting.py --score --arms count_scratch --merge --out ris_lite/pretrained/ablation_counting.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from ris_lite import RosetteDataset
from ris_lite.evaluation.count_report import best_constant, count_report, training_counts
from ris_lite.evaluation.diagnose import diagnose
from ris_lite.evaluation.evaluate import ground_truth_labels
from ris_lite.evaluation.metrics import consecutive_labels, evaluate_labels
from ris_lite.model.assembly import assemble
from ris_lite.model.checkpoint import load_checkpoint
from ris_lite.precision import cpu_name
from ris_lite.pretrained import load_model

LEVERS = ["--union-input", "--score-sees-union", "--monotonic-weight", "1"]
FINE_TUNE = ["--data", "synthetic", "--init", "rosettes", "--curriculum", "22,11,20", "--max-steps", "1000",
             "--batch-size", "4", "--eval-every", "50", "--stage-max-steps", "250", "--lr-hold-steps", "600"]
SCRATCH = ["--data", "synthetic", "--max-steps", "4500", "--fcn-dilations", "1,2,4,8", "--batch-size", "4",
           "--eval-every", "50", "--stage-max-steps", "250", "--lr-hold-steps", "1000"]
ARMS = {"paper_ft": FINE_TUNE, "count_ft": FINE_TUNE + LEVERS, "count_scratch": SCRATCH + LEVERS}
KEYS = ("sbd", "abs_dic", "dic", "fgbg_dice")


#: where a session commits an arm's checkpoint for the next session to resume
COMMITTED = Path("benchmarks/checkpoints/i38")


def command(arm: str, runs: Path) -> list:
    out = runs / arm
    if not (out / "last.pt").is_file() and (COMMITTED / arm / "last.pt").is_file():
        out.mkdir(parents=True, exist_ok=True)  # a later session: go on from the committed checkpoint
        for name in ("last.pt", "log.csv"):
            shutil.copyfile(COMMITTED / arm / name, out / name)
    if (out / "last.pt").is_file():
        return ["ris-lite", "train", "--out", str(out), "--resume", "auto", "--quiet"]
    return ["ris-lite", "train", *ARMS[arm], "--quiet", "--out", str(out)]


def train(arms, runs: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for arm in arms:
        cmd = command(arm, runs)
        print("+", " ".join(cmd), file=sys.stderr)
        procs.append(subprocess.Popen([sys.executable, "-m", "ris_lite", *cmd[1:]], env=env))
    for p in procs:
        if p.wait():
            raise SystemExit(f"training failed (exit {p.returncode})")


@torch.no_grad()
def score(source: str, constant: int, chosen: dict, test) -> dict:
    model = load_model(source).cpu().eval()
    kept = []
    for s in range(0, len(test), 8):
        images = torch.stack([test[i][0] for i in range(s, min(s + 8, len(test)))])
        kept.extend(model.kept_masks(images, 30, return_scores=True))
    gts = [consecutive_labels(ground_truth_labels(test, i)) for i in range(len(test))]
    out = {"model": source}
    if Path(source).is_file():
        state = load_checkpoint(source)
        out["step"] = state["trainer"]["step"]
        out["images_seen"] = state["trainer"]["images_seen"]
    for name, a, ms in (("paper", "first", 0), ("tuned", chosen["assembly"], chosen["min_size"])):
        r = evaluate_labels([consecutive_labels(assemble(m, s, a, min_size=ms)) for m, s in kept], gts)
        c = count_report(model, test, constant, assembly=a, min_size=ms)
        out[name] = {"assembly": a, "min_size": ms, **{k: round(float(r[k]), 4) for k in KEYS},
                     **{k: c[k] for k in ("count_correlation", "constant_abs_dic", "after_true_count",
                                          "stop_minus_true", "score_by_offset")}}
    d = diagnose(model, test, probe_plants=0)
    out["segment_kinds"], out["duplicate_steps"] = d["segment_kinds"], d["duplicate_steps"]
    out["untargeted_leaves"] = d["untargeted_leaves"]
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", action="store_true")
    p.add_argument("--score", action="store_true")
    p.add_argument("--arms", default="count_ft,paper_ft,count_scratch")
    p.add_argument("--runs", default="runs")
    p.add_argument("--plants", type=int, default=100)
    p.add_argument("--assembly-json", default="ris_lite/pretrained/counting_test.json",
                   help="tune_assembly.py's output: the assembly chosen on validation for rosettes")
    p.add_argument("--out", default=None)
    p.add_argument("--merge", action="store_true",
                   help="keep the arms of an existing --out that this run does not score (runs/ is not "
                        "committed, so a later session may hold only some arms); each arm records its run")
    a = p.parse_args(argv)
    runs, arms = Path(a.runs), a.arms.split(",")
    if a.train:
        train(arms, runs)
    if not a.score:
        return {}
    torch.set_num_threads(1)
    t0 = time.time()
    constant = best_constant(training_counts(RosetteDataset("train")))
    tuned = json.loads(Path(a.assembly_json).read_text())
    chosen = next(m["chosen"] for m in tuned["models"] if m["model"] == "rosettes")
    test = RosetteDataset("test", length=a.plants)
    out = {"constant": constant, "assembly_chosen_for_rosettes": chosen,
           "commands": {arm: " ".join(["ris-lite", "train", *ARMS[arm], "--quiet", "--out", f"runs/{arm}"])
                        for arm in arms},
           "arms": {"rosettes": score("rosettes", constant, chosen, test)}}
    for arm in arms:
        if (runs / arm / "last.pt").is_file():
            out["arms"][arm] = score(str(runs / arm / "last.pt"), constant, chosen, test)
    out["seconds"] = round(time.time() - t0, 1)
    this_run = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(),
                "torch": torch.__version__}
    for arm in out["arms"].values():
        arm["run"] = this_run
    if a.merge and a.out and Path(a.out).is_file():
        earlier = json.loads(Path(a.out).read_text())
        kept = {k: {**v, "run": v.get("run", "an earlier run of this benchmark")}
                for k, v in earlier["arms"].items() if k not in out["arms"]}
        out["arms"] = {**out["arms"], **kept}
        out["commands"] = {**earlier.get("commands", {}), **out["commands"]}
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
