# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Your own data: CVPPP A1 and any labelled folder
#
# Everything so far ran on synthetic plants. The paper's leaf experiment ran on photographs:
# CVPPP A1, 128 labelled top-view images of Arabidopsis at 530 × 500 pixels. This chapter takes
# the tools of the earlier chapters to real files: reading them, bringing them to the model's
# input and back, splitting them, fine-tuning the shipped model on them, and scoring the way
# the challenge scores. The same code reads any folder of images with instance-label images,
# for coursework on cells, nuclei or fruit.
#
# **What you will learn**
#
# * how A1 stores a plant, and how a generic folder is described by two file-name patterns;
# * the one geometric map between a file and the model's input, and why the *scale* a model
#   learned matters more than the resolution (eq. 11.1);
# * how predictions go back to the file's resolution (eq. 11.2), and why scoring there can
#   disagree with scoring at the model's input;
# * a train/validation split that depends only on file names;
# * fine-tuning the shipped synthetic model on real-format data, compared with training from
#   scratch at equal steps;
# * the commands: `ris-lite train --data cvppp:… --init rosettes`, `evaluate`, `predict`, `score`.
#
# No data set can be downloaded where this book is tested, so the cells below run on
# `data/fixtures/`: six synthetic plants written **exactly as A1 writes its files**, and a small
# folder with 16-bit labels. Point `DATA` at your A1 folder and every cell runs on it unchanged.

# %%
# Colab: clone the repository (for data/fixtures) and install ris_lite from it. Optionally
# mount Google Drive, where you can keep the A1 folder (the CVPPP download needs registration):
# upload it to MyDrive/CVPPP/A1 and set RIS_LITE_A1 below. Locally this cell does nothing.
import os
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run(["git", "clone", "-q", "--depth", "1", REPO, "/content/ris_lite"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "/content/ris_lite"], check=True)
    os.chdir("/content/ris_lite")
    # from google.colab import drive; drive.mount("/content/drive")
    # os.environ["RIS_LITE_A1"] = "/content/drive/MyDrive/CVPPP/A1"

# %%
import csv
import json
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

import ris_lite
from ris_lite.cli import main as ris_lite_cli
from ris_lite.data.folder import LabelledFolder, split_ids, upsample_labels
from ris_lite.evaluation.evaluate import evaluate_model, scoring_pair
from ris_lite.evaluation.metrics import evaluate_labels
from ris_lite.viz import label_rgb, overlay

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "data" / "fixtures").is_dir())
FIXTURES = ROOT / "data" / "fixtures"
PRETRAINED = Path(ris_lite.__file__).resolve().parent / "pretrained"
# your A1 folder (e.g. data/CVPPP/A1) through RIS_LITE_A1, else the A1-format fixture
DATA = Path(os.environ.get("RIS_LITE_A1", FIXTURES / "cvppp_a1"))
print("reading", DATA.relative_to(ROOT) if DATA.is_relative_to(ROOT) else DATA)
model = ris_lite.load_pretrained()

# %% [markdown]
# ## 1. What is on disk
#
# An A1 plant is three files named after it: `plantXXX_rgb.png`, the photograph, stored as RGBA
# with an opaque alpha channel; `plantXXX_label.png`, a *palette* PNG whose pixel values are leaf
# ids (0 is background; the palette only colours them for viewers); and `plantXXX_fg.png`, the
# plant's foreground mask. Plant numbers skip, and leaf ids may skip too, when an annotator
# deleted a leaf. Here is one plant as PIL sees it:

# %%
name = sorted(p.name[:-8] for p in DATA.glob("plant*_rgb.png"))[0]
rgb, label, fg = (Image.open(DATA / f"{name}_{part}.png") for part in ("rgb", "label", "fg"))
ids = np.unique(np.asarray(label))
print(f"{name}_rgb.png   mode {rgb.mode:5s} size {rgb.size}")
print(f"{name}_label.png mode {label.mode:5s} ids {ids.tolist()}")
print(f"{name}_fg.png    mode {fg.mode:5s} foreground pixels {int((np.asarray(fg) > 0).sum())}")

fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
for ax, (title, img) in zip(axes, [("_rgb.png (RGBA)", rgb), ("_label.png (palette)", label.convert("RGB")),
                                   ("_fg.png", fg)]):
    ax.imshow(img, cmap="gray")
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# `ris_lite.CVPPP` reads such a folder. It keeps the raw ids, so nothing is lost between the
# file and your code:

# %%
full = ris_lite.CVPPP(DATA)  # no size: the files as they are
assert full.names[0] == name and full.original_size(0) == rgb.size[::-1]
assert set(full.original_labels(0).unique().tolist()) == set(ids.tolist())
print(f"{len(full)} plants; ids of {name}: {len(ids) - 1} leaves")

# %% [markdown]
# Any other data set is described the same way, by two patterns with an `{id}` placeholder: by
# default `images/{id}.*` and `labels/{id}.*`, where `.*` stands for any image extension. The
# second fixture holds 16-bit labels (ids above 255, as cell-tracking data has), in PNG and TIFF,
# and one 16-bit grey microscope-style image. `LabelledFolder` reads them all into the same item,
# `(image (3, H, W), masks (n, H, W))`:

# %%
cells = LabelledFolder(FIXTURES / "folder16")
for i in range(len(cells)):
    image, masks = cells[i]
    lab = Image.open(cells.label_path(i))
    print(f"{cells.image_path(i).name:6s} + {cells.label_path(i).name:6s} (mode {lab.mode}): "
          f"image {tuple(image.shape)}, {masks.shape[0]} instances, largest id {int(cells.original_labels(i).max())}")

# %% [markdown]
# ## 2. From a photograph to the model's input
#
# The shipped model was trained on 106 × 100 images showing the central part of an A1-sized
# frame: the synthetic generator draws the whole 530 × 500 scene and keeps its central
# $1/z$ with $z = 1.8$ (chapter {doc}`Data <02_data>`). What a convolutional network learns is tied to the size of
# things in pixels (a leaf of a given area, a ConvLSTM receptive field of a given reach), so a
# real photograph must be shown to the model at the same **scale**, not merely at the same
# resolution. For a file of $H \times W$ pixels the reader takes the central box
#
# $$
# h = \operatorname{round}(H / z), \quad w = \operatorname{round}(W / z), \quad
# \text{top} = \lfloor (H - h) / 2 \rfloor, \quad \text{left} = \lfloor (W - w) / 2 \rfloor,
# \tag{11.1}
# $$
#
# and resizes it to the model's input: bilinearly for the image, by nearest neighbour for the
# labels (an average of two ids is not an id). The zoom a checkpoint was trained with is stored
# in it (`model.data_options`), and the command line reads real data at that zoom unless told
# otherwise (`--zoom`).

# %%
zoom = model.data_options.get("zoom", 1.8)
at_scale = ris_lite.CVPPP(DATA, size=model.config.input_size, zoom=zoom)
top, left, h, w = at_scale.crop_box(at_scale.original_size(0))
assert (h, w) == (round(530 / zoom), round(500 / zoom)) and (top, left) == ((530 - h) // 2, (500 - w) // 2)

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), gridspec_kw={"width_ratios": [1.25, 1]})
axes[0].imshow(rgb)
axes[0].add_patch(plt.Rectangle((left, top), w, h, fill=False, color="yellow", lw=2))
axes[0].set_title(f"file, 530 x 500, crop box of zoom {zoom}")
axes[1].imshow(overlay(at_scale[0][0], at_scale.labels(0)))
axes[1].set_title(f"model input {tuple(model.config.input_size)}")
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# The same plants read at the wrong scale (`zoom=1`, the whole frame squeezed into 106 × 100:
# every leaf 1.8 times smaller than the model has ever seen) against the right one, both scored
# the official way (section 3):

# %%
scores = {}
for z in (1.0, zoom):
    ds = ris_lite.CVPPP(DATA, size=model.config.input_size, zoom=z)
    scores[z] = evaluate_model(model, ds)
    print(f"zoom {z:3.1f}: SBD {100 * scores[z]['sbd']:5.1f}  |DiC| {scores[z]['abs_dic']:5.2f}")
assert scores[zoom]["sbd"] > scores[1.0]["sbd"]

# %% [markdown]
# ## 3. Back to the photograph, and the official score
#
# The challenge scores a prediction against the label file at the file's resolution. A 106 × 100
# prediction goes back through eq. (11.1) in reverse: resized to the crop box and pasted into an
# empty frame (outside the box, background). Resizing a label map by nearest neighbour makes
# staircase edges five pixels tall; `ris_lite.data.folder.upsample_labels` resizes each label's
# indicator $\mathbb{1}[y = l]$ bilinearly and keeps the largest at each pixel $p$,
#
# $$
# \hat y(p) = \arg\max_{l} \; \bigl(\mathcal{B} \, \mathbb{1}[y = l]\bigr)(p),
# \tag{11.2}
# $$
#
# with $\mathcal{B}$ the bilinear resize, which gives smooth boundaries and never invents an id.
# The score gains little from it (a fraction of a point below: the boundaries were coarse
# before the resize), but the shapes you look at and hand on are the smooth ones.

# %%
pred = model.predict(at_scale[0][0])[0]
box = (slice(top, top + h), slice(left, left + w))
nearest = torch.from_numpy(np.array(Image.fromarray(pred.numpy().astype(np.int32)).resize((w, h), Image.NEAREST)))
smooth = upsample_labels(pred, (h, w))
assert set(smooth.unique().tolist()) == set(pred.unique().tolist())
gt_box = ris_lite.metrics.consecutive_labels(full.original_labels(0)[box])
for title, up in (("nearest", nearest), ("eq. 11.2", smooth)):
    sbd = ris_lite.metrics.symmetric_best_dice(up.long(), gt_box)
    print(f"{title:9s}: SBD against the file's labels {100 * sbd:.1f}")

fig, axes = plt.subplots(1, 2, figsize=(8, 4))
zoom_in = (slice(h // 2 - 40, h // 2 + 40), slice(w // 2 - 40, w // 2 + 40))
for ax, (title, up) in zip(axes, (("nearest neighbour", nearest), ("eq. 11.2", smooth))):
    ax.imshow(label_rgb(up[zoom_in]))
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# Two more details make the score official. The scorer counts leaves as "largest id minus
# smallest" and assumes consecutive ids, so a file with a gap (our fixture skips id 3) or with
# 16-bit ids would be miscounted: both sides are renumbered 1…n first
# (`metrics.consecutive_labels`), which changes no leaf. And a leaf too small to survive the
# resize to the model's input still counts in the file. Item `b` of the 16-bit fixture holds a
# one-pixel instance that the nearest-neighbour resize never samples. A prediction that is
# perfect at the model's input is perfect there, and one leaf short in the file:

# %%
cells_small = LabelledFolder(FIXTURES / "folder16", size=(106, 100))
b = cells_small.names.index("b")
perfect = cells_small.labels(b)
for resolution in ("input", "original"):
    r = evaluate_labels(*([x] for x in scoring_pair(cells_small, b, perfect, resolution)))
    print(f"scored at the {resolution:8s} resolution: SBD {100 * r['sbd']:5.1f}, DiC {r['dic']:+.0f}")
assert evaluate_labels(*([x] for x in scoring_pair(cells_small, b, perfect, "original")))["dic"] == -1

# %% [markdown]
# `ris-lite evaluate` on a real folder scores at the file's resolution; `--resolution input`
# gives the other number, printed with a warning that it is not the official protocol.
#
# ## 4. A split that depends only on file names
#
# A real folder has no seed ranges. `split_ids` ranks the ids by a hash of their names and
# sends the first 20 % to validation: the same files give the same split on every machine, in
# any listing order, without a random seed. Training writes it to `OUT/split.json` with each
# image's instance count, and a resumed run refuses a folder that no longer splits the same way.

# %%
split = split_ids(full.names, val_fraction=0.2)
print(split)
assert split == split_ids(full.names[::-1], 0.2) and not set(split["train"]) & set(split["val"])

# %% [markdown]
# ## 5. Fine-tuning the shipped model
#
# Real images cannot be drawn with a chosen number of leaves, so the curriculum of chapter {doc}`Training <07_training>` is
# adapted: every stage uses all training images and only the unrolled length grows, up to
# $\max n + 2$ steps, so that every image's stop signal is trained
# (`ris_lite.training.curriculum.real_curriculum`). A model that already segments long sequences needs no
# curriculum: `--init` starts from its weights at the last stage, and reads the data at its
# scale. The commands, for A1 in `data/CVPPP/A1`:
#
# ```bash
# ris-lite train --data cvppp:data/CVPPP/A1 --out runs/a1 --budget-minutes 60                  # from scratch
# ris-lite train --data cvppp:data/CVPPP/A1 --init rosettes --out runs/a1_ft --budget-minutes 20  # fine-tune
# ris-lite evaluate --data cvppp:data/CVPPP/A1 --split val --checkpoint runs/a1_ft/last.pt --baseline
# ```
#
# Three fine-tuning steps on the fixture, live, through the same command line (the loss values
# depend on your machine's arithmetic; the checks below do not):

# %%
# NBVAL_IGNORE_OUTPUT
run = Path(tempfile.mkdtemp()) / "a1_ft"
assert ris_lite_cli(["train", "--data", f"cvppp:{DATA}", "--init", "rosettes", "--out", str(run),
                     "--max-steps", "3", "--eval-every", "3", "--quiet"]) == 0
print(open(run / "log.csv").read())

# %%
stored = json.loads((run / "last.json").read_text())["config"]
print("init:", stored["init"], "| zoom:", stored["data"]["zoom"], "| curriculum:", stored["curriculum"])
print("split.json:", json.loads((run / "split.json").read_text())["val"])
assert stored["init"] == "rosettes" and len(stored["curriculum"]) == 1

# %% [markdown]
# Three steps show the mechanics, not the benefit. `benchmarks/bench_finetune.py` measured it: a
# 40-plant A1-format folder of plants the shipped model never trained on (younger plants of 6-12
# leaves, no clutter, no blur), split 32/8 by file id. Both arms run through `ris-lite train` as
# a user would run them (scratch with the adapted curriculum, fine-tuning with `--init rosettes`),
# each at two learning rates, and all are measured the same way: the RIS loss (eq. 5) on the
# same 8 validation images at the full length $\max n + 2$, then SBD and |DiC| after 200 steps.

# %%
rows = list(csv.DictReader(open(PRETRAINED / "finetune_a1like.csv")))
curves = {}
for r in rows:
    if r["val_loss"]:
        curves.setdefault((r["arm"], r["lr"]), []).append((int(r["step"]), float(r["val_loss"])))
fig, ax = plt.subplots(figsize=(6.4, 3.6))
for (arm, lr), points in curves.items():
    ax.plot(*zip(*points), marker="o", ls="-" if arm == "fine-tune" else "--", label=f"{arm}, lr {lr}")
ax.set_xlabel("training steps")
ax.set_ylabel("validation loss at full length")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
for r in rows:
    if r["sbd"]:
        print(f"{r['arm']:9s} lr {r['lr'] or '-':4s} after {r['step']:>3s} steps: validation SBD "
              f"{100 * float(r['sbd']):5.1f}, |DiC| {float(r['abs_dic']):.2f}")
for lr in ("2e-3", "5e-4"):  # fine-tuning below scratch at every step, at both rates
    assert all(f < s for (_, f), (_, s) in zip(curves[("fine-tune", lr)], curves[("scratch", lr)]))
final = {(r["arm"], r["lr"]): float(r["sbd"]) for r in rows if r["sbd"]}
assert final[("fine-tune", "5e-4")] > final[("shipped", "")] > final[("fine-tune", "2e-3")]

# %% [markdown]
# From scratch, the full-length loss *rises* at first: the curriculum trains short sequences,
# and a model that stops after a few steps is far from segmenting ten leaves. The fine-tuned
# model starts where the synthetic training left it. The learning rate matters for it: at the
# 2e-3 that suits a new model, 200 steps on 32 images undid part of what the model knew (SBD fell
# below the untouched model's, only the counts improved); at 5e-4 both SBD and |DiC| improved.
# `ris-lite train --init` therefore defaults to 5e-4. Eight validation images are few: read
# these as the direction of the effect, and measure on your own data.
#
# ## 6. Score, write, check
#
# `evaluate --baseline` also runs the watershed pipeline of chapter {doc}`Evaluation <08_evaluation>`, after tuning its two
# knobs on the data's **own** validation split (the Table 2 entrants tuned on A1's training
# images; a baseline tuned on other data would be an unfair opponent). `predict` writes one
# palette PNG per image at the file's size, which is what the CVPPP scorer reads, and `score`
# scores any such folder, ours or another method's:

# %%
assert ris_lite_cli(["evaluate", "--data", f"cvppp:{DATA}", "--baseline", "--quiet"]) == 0

# %%
out = Path(tempfile.mkdtemp())
assert ris_lite_cli(["predict", "--data", f"cvppp:{DATA}", "--out", str(out / "predictions")]) == 0
print(sorted(p.name for p in (out / "predictions").iterdir())[:4])
assert Image.open(out / "predictions" / f"{name}_label.png").size == rgb.size
scored = ris_lite.evaluation.evaluate.score_predictions(out / "predictions", full)
assert abs(scored["sbd"] - scores[zoom]["sbd"]) < 1e-9  # the written files score as evaluate did
print(f"scored from the written files: SBD {100 * scored['sbd']:.1f}")

# %% [markdown]
# ## 7. Your own folder, and what goes wrong
#
# For a folder of your own, say which files pair up and, for a new model, at what scale and
# size to read them:
#
# ```bash
# ris-lite train --data folder:my_cells --image-pattern 'raw/{id}.tif' --label-pattern 'masks/{id}_seg.tif' \
#                --input-size 128,128 --zoom 1 --out runs/cells --budget-minutes 30
# ris-lite evaluate --data folder:my_cells --image-pattern 'raw/{id}.tif' --label-pattern 'masks/{id}_seg.tif' \
#                --checkpoint runs/cells/last.pt --split val
# ```
#
# Every file is decoded and checked before a run writes anything, and each problem is one line
# that names the file: a missing label, an image and label of different sizes, an unreadable
# PNG, more instances than the curriculum unrolls, an empty folder. One of them:

# %%
broken = Path(shutil.copytree(FIXTURES / "folder16", Path(tempfile.mkdtemp()) / "cells"))
(broken / "labels" / "c.tif").unlink()
code = ris_lite_cli(["train", "--data", f"folder:{broken}", "--out", str(broken.parent / "run")])
assert code == 2 and not (broken.parent / "run").exists()

# %% [markdown]
# ## Summary
#
# * A real folder is described by two file-name patterns; `LabelledFolder` (and `CVPPP`, the same
#   with A1's names) reads palette, 8-bit and 16-bit labels into the items the rest of the book uses.
# * One map takes a file to the model's input (eq. 11.1) and back (eq. 11.2). Scale matters: the
#   shipped model reads real plants at the zoom it learned.
# * Scores are computed against the untouched label files, with ids renumbered as the scorer
#   assumes; scoring at the model's input can hide leaves the resize loses.
# * The split depends only on file names and is written with the run; resuming checks it.
# * Fine-tuning from the synthetic model beats training from scratch at equal steps on
#   A1-format plants it never saw, at a smaller learning rate than a new model needs.
#
# ## Quick questions
#
# 1. Why is the label map resized by nearest neighbour on the way in, but not on the way out?
# 2. A model trained with `zoom=1.8` is evaluated on A1 with `--zoom 1`. What happens to the
#    leaves it sees, and which of SBD and DiC do you expect to suffer most?
# 3. Why can the scores at the model's input and at the file's resolution disagree on DiC, even
#    for a perfect prediction?
# 4. Why would a split made with `random.shuffle` and a seed be a worse choice for a folder that
#    grows over time?
#
# :::{dropdown} Answers
# 1. On the way in the labels are the *targets*: any interpolation would invent ids between two
#    leaves. On the way out the prediction is a label map, too, but eq. (11.2) interpolates each
#    label's indicator, never the ids, so boundaries come out smooth and every id stays an id.
# 2. Each leaf covers 1.8² ≈ 3.2 times fewer pixels than in training; small leaves drop below
#    what the coarse ConvLSTM grid separates, so leaves merge and DiC goes negative (section 2
#    measured it).
# 3. A leaf smaller than the resize's sampling step vanishes from the resized ground truth; the
#    file still has it.
# 4. Adding one file reshuffles everything, so images move between training and validation;
#    with hash ranking only the ids near the cut can move, and `split.json` records the sides.
# :::
#
# ## Exercises
#
# 1. *(quick)* Score the shipped model on the fixture at zooms 1.4, 1.6, 1.8, 2.0, 2.2 and plot
#    SBD against zoom. Is the best zoom the one the model was trained with?
# 2. *(quick)* Compare `upsample_labels` with nearest-neighbour upsampling on all six fixture
#    plants. How much SBD does the staircase cost?
# 3. Write a converter from a data set that stores one binary mask per instance (one PNG per
#    nucleus, as the 2018 Data Science Bowl did) into the `images/` + `labels/` layout, and
#    train on it.
# 4. Run `benchmarks/bench_finetune.py --lrs 1e-4,5e-4 --steps 400`. Where does the fine-tuned
#    arm's validation SBD peak, and does a longer run change the best learning rate?
# 5. With A1 at hand: fine-tune for 20 minutes, score the validation split with and without
#    `--crf`, and place the numbers next to the paper's Table 2.
#
# :::{dropdown} Hints
# 1. `evaluate_model(model, ris_lite.CVPPP(DATA, size=..., zoom=z))`. 2. Replace
#    `upsample_labels` in `LabelledFolder.to_original` by a PIL nearest resize. 3. Give each mask
#    file's pixels a distinct id (1, 2, …) in a 16-bit array and save it with PIL; keep the stems
#    equal. 4. Pass `--out` to a fresh folder. 5. `ris-lite evaluate --crf` uses the CRF
#    parameters tuned on synthetic plants; `benchmarks/tune_crf.py` shows how to tune them on
#    your own validation split.
# :::
#
# ## What this chapter built in `ris_lite`
#
# Module `ris_lite.data.folder`: `LabelledFolder` (`crop_box`, `to_original`, `original_labels`,
# `view`, `instance_counts`), `read_image`, `read_label_image`, `split_ids`, `upsample_labels`;
# `CVPPP` on top of it and `write_plant` (`ris_lite.data.cvppp`); `open_folder`
# (`ris_lite.data.real`); `consecutive_labels` (`ris_lite.evaluation.metrics`); `scoring_pair`,
# `score_predictions` and `resolution=` in `evaluate_model` (`ris_lite.evaluation.evaluate`);
# in `ris_lite.training`: `TrainConfig.source`, `real_curriculum` (`curriculum`), the folder
# source (`sources`), `Trainer.load_weights`; `load_model` (`ris_lite.pretrained`); the commands `ris-lite train --data cvppp:|folder: --init`, `ris-lite score`,
# `evaluate --resolution`; `benchmarks/bench_finetune.py`, `benchmarks/bench_real_loader.py`.
# Their docstrings are in the [API reference](api).
#
# **Further reading.** Scharr and colleagues compare the CVPPP challenge entries and explain
# how they were scored {cite:p}`scharr2016leaf`; Minervini and colleagues describe the A1-A3
# data {cite:p}`minervini2016datasets`; Yosinski and colleagues measure how well a trained
# network's features carry over to a new task {cite:p}`yosinski2014transferable`.
