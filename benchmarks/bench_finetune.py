"""Fine-tuning the shipped synthetic model vs training from scratch on a real-format folder.

No real data set can be downloaded here, so the folder is a stand-in written exactly as CVPPP
A1 stores its files (530 x 500 RGBA ``_rgb.png``, palette ``_label.png``): plants drawn with
generator settings the shipped model never trained on (younger plants of 6-12 leaves, no
clutter, less blur), split 80/20 by file id. Both arms go through ``ris-lite train`` with its
defaults, as a user would run them:

* scratch: a fresh model, the curriculum adapted to the folder's counts;
* fine-tune: ``--init rosettes``, last stage only;

each at every learning rate of ``--lrs``, the folder read whole at the shipped model's scale (530 x 500 frames
at 191 x 180, ``LabelledFolder``); all
are measured the same way: the RIS loss (eq. 5) on the validation images at the full
length ``max(n) + 2``, every ``--every`` steps, plus SBD / |DiC| on them at the end (at the
files' own resolution), next to the shipped model untouched. Writes ``OUT/finetune.csv``.

    python benchmarks/bench_finetune.py --steps 200 --every 40
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

import ris_lite
from ris_lite.cli import main as cli
from ris_lite.data.cvppp import write_plant
from ris_lite.evaluation.evaluate import evaluate_model
from ris_lite.model.checkpoint import model_from_checkpoint
from ris_lite.training.trainer import Trainer

PLANTS = dict(n_leaves=(6, 12), clutter=False, blur=False, size=(530, 500), zoom=1.0)


def write_folder(root: Path, n: int) -> None:
    for k in range(n):
        image, labels = ris_lite.make_rosette(400_000 + k, **PLANTS)
        write_plant(root, f"plant{k:03d}", image, labels)


@torch.no_grad()
def full_length_val_loss(ckpt: Path) -> float:
    """The validation loss at the last curriculum stage (the same for both arms)."""
    t = Trainer.resume(ckpt)
    t.stage = len(t.config.curriculum) - 1
    return t.validate()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plants", type=int, default=40)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--lrs", default="2e-3,5e-4", help="learning rates, each for both arms")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_finetune")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    data = out / "A1_like"
    if not (data / f"plant{a.plants - 1:03d}_rgb.png").is_file():
        write_folder(data, a.plants)
    arms = {(arm, lr): [*extra, "--zoom", "1.8", "--lr", lr]
            for lr in a.lrs.split(",") for arm, extra in (("scratch", []), ("fine-tune", ["--init", "rosettes"]))}
    rows = []
    for steps in range(a.every, a.steps + 1, a.every):
        for (arm, lr), extra in arms.items():  # arms interleaved, chunk by chunk
            run = out / f"{arm}_lr{lr}"
            if steps == a.every:
                argv = ["train", "--data", f"cvppp:{data}", "--out", str(run), "--quiet", *extra]
            else:
                argv = ["train", "--out", str(run), "--resume", "auto", "--quiet"]
            assert cli([*argv, "--max-steps", str(steps)]) == 0
            loss = full_length_val_loss(run / "last.pt")
            rows.append({"arm": arm, "lr": lr, "step": steps, "val_loss": round(loss, 4)})
            print(f"{arm:>9} lr {lr} step {steps:4d}: full-length validation loss {loss:.4f}", flush=True)
    some_run = out / f"{next(iter(arms))[0]}_lr{next(iter(arms))[1]}"
    split = json.loads((some_run / "split.json").read_text())
    val = ris_lite.CVPPP(data, size=(106, 100), zoom=1.8, ids=list(split["val"]))
    for key in [("shipped", ""), *arms]:
        arm, lr = key
        model = ris_lite.load_pretrained() if arm == "shipped" else model_from_checkpoint(out / f"{arm}_lr{lr}" / "last.pt")
        r = evaluate_model(model, val)
        rows.append({"arm": arm, "lr": lr, "step": a.steps if lr else 0, "val_loss": "", "sbd": round(r["sbd"], 4),
                     "abs_dic": round(r["abs_dic"], 3)})
        print(f"{arm:>9} lr {lr or '-':>4}: validation SBD {100 * r['sbd']:.1f}, |DiC| {r['abs_dic']:.2f}")
    with open(out / "finetune.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["arm", "lr", "step", "val_loss", "sbd", "abs_dic"])
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
