# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Evaluation and results
#
# **What you will learn**
#
# * the CVPPP measures exactly as the challenge computes them: Symmetric Best Dice (SBD),
#   foreground Dice, Difference in Count (DiC) and |DiC|, and region AP for the people task;
# * a classical leaf pipeline (colour threshold, distance transform, watershed) of the kind
#   RIS was compared with, tuned on the validation split only;
# * a table in the shape of the paper's Table 2 on our benchmark, next to the paper's numbers;
# * where RIS fails (joined, missed and hallucinated leaves, as in Figs. 11–13), and what its
#   memory holds step by step (Figs. 4 and 7);
# * how to run the same evaluation on the real CVPPP A1 folder.

# %%
# Colab: install ris_lite from the repository (non-editable). Locally this does nothing.
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO}@main"], check=True)

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import ris_lite
from ris_lite import metrics
from ris_lite.viz import label_rgb, overlay

torch.manual_seed(0)
device = ris_lite.pick_device()

# %% [markdown]
# (evaluation-measures)=
# ## The measures
#
# For label maps $P$ (prediction) and $G$ (ground truth), with leaves $P_i$ and $G_j$ (the
# letters the {doc}`notation table <changes>` fixes for the whole book),
#
# $$
# \mathrm{BD}(P, G) &= \frac{1}{M} \sum_{i=1}^{M} \max_{j} \frac{2 |P_i \cap G_j|}{|P_i| + |G_j|}, \\
# \mathrm{SBD}(P, G) &= \min\{\mathrm{BD}(P, G), \mathrm{BD}(G, P)\}.
# $$ (sbd)
#
# The official code takes details from the label values: the **lowest** value is background,
# $M = \max - \min$, and the sum runs over every id from $\min + 1$ to $\max$, so an id that
# is never used counts as a leaf with Dice 0. Counting is the same convention:
# $\#P = \max(P) - \min(P)$ and
#
# $$
# \mathrm{DiC} = \#P - \#G, \qquad |\mathrm{DiC}|.
# $$ (dic)
#
# FgBgDice is the Dice of the two foregrounds. Our own SBD in a few lines, then the check:

# %%
def our_best_dice(a, b):
    lo_a, lo_b = a.min(), b.min()
    total = 0.0
    for i in range(lo_a + 1, a.max() + 1):
        ai = a == i
        best = 0.0
        for j in range(lo_b + 1, b.max() + 1):
            bj = b == j
            if ai.sum() + bj.sum():
                best = max(best, 2 * (ai & bj).sum() / (ai.sum() + bj.sum()))
        total += best
    return total / max(a.max() - lo_a, 1)


truth = ris_lite.make_rosette(ris_lite.SPLITS["val"][0])[1].numpy()
noisy = truth.copy()
noisy[noisy == 3] = 4  # merge two leaves
noisy[noisy == 7] = 0  # miss one
for name, pred in [("identical", truth), ("merged + missed", noisy)]:
    ours = min(our_best_dice(pred, truth), our_best_dice(truth, pred))
    official = metrics.symmetric_best_dice(pred, truth, keep_gaps=True)  # the official code's convention
    assert abs(ours - official) < 1e-9
    print(f"{name:16s} official: SBD {official:.3f}, DiC {metrics.diff_fg_labels(pred, truth, keep_gaps=True):+d} "
          f"| renumbered (the package's default): SBD {metrics.symmetric_best_dice(pred, truth):.3f}, "
          f"DiC {metrics.diff_fg_labels(pred, truth):+d} | FgBgDice {metrics.fg_bg_dice(pred, truth):.3f}")

# %% [markdown]
# Note the gap: `noisy` still has ids up to the same maximum but two of them are unused. Under
# the official convention its count stays unchanged (DiC 0) while its best-Dice average
# includes two zeros. That is why predictions must be written with consecutive ids
# (`write_label_png` does it), and why the package's metrics renumber a map with gaps by
# default: `keep_gaps=True` asks for the official arithmetic, gaps and all.
#
# (evaluation-classical-baseline)=
# ## A classical baseline
#
# The CVPPP entries in Table 2 are hand-made pipelines. Ours follows the Nottingham and
# Wageningen recipes: plant pixels by excess green $2G - R - B$ with an Otsu threshold (the
# largest green blob, so moss is dropped), the distance transform of that mask, its local
# maxima as one marker per leaf, and a marker-based watershed. Its two knobs (minimum
# distance between peaks, smoothing) are chosen on the **validation** split:

# %%
val = ris_lite.RosetteDataset("val")
test = ris_lite.RosetteDataset("test")
params, val_scores = ris_lite.tune_baseline(val)
print("chosen on val:", params, f"| val SBD {val_scores['sbd']:.3f}")

fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.8))
image, _ = test[0]
fg = ris_lite.evaluation.baseline.foreground(image)
wl = ris_lite.watershed_leaves(image, params)
for ax, im, title in zip(axes, [image.permute(1, 2, 0), fg, label_rgb(wl), label_rgb(test.labels(0))],
                         ["image", "excess-green foreground", f"watershed: {int(wl.max())}",
                          f"truth: {int(test.labels(0).max())}"]):
    ax.imshow(im, cmap="gray")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# (evaluation-table-2-benchmark)=
# ## Table 2 on our benchmark
#
# All methods on the same 100 test plants (seeds 200000–200099, never used for training or
# tuning). RIS is the shipped paper-faithful checkpoint, stopping at the first score below ½
# (at most 30 steps). The last row is **ours, not the paper's**: the same RIS with a canvas
# of what it has already segmented fed back as an input, trained with teacher forcing (the
# chapter *Beyond the paper* builds and measures it). Mean (standard deviation), as in the
# paper.

# %%
model = ris_lite.load_pretrained().to(device)
canvas_model = ris_lite.load_pretrained("rosettes_canvas").to(device)
ris_scores = ris_lite.evaluate_model(model, test)
canvas_scores = ris_lite.evaluate_model(canvas_model, test)
ws_scores = ris_lite.evaluation.baseline.evaluate_baseline(test, params)


def row(name, r):
    return (f"{name:28s} {r['dic']:+6.2f} ({r['dic_std']:.1f})  {r['abs_dic']:5.2f} ({r['abs_dic_std']:.1f})"
            f"  {100 * r['sbd']:5.1f} ({100 * r['sbd_std']:.1f})  {100 * r['fgbg_dice']:5.1f}")


print(f"{'method (synthetic test)':28s} {'DiC':>11s}  {'|DiC|':>10s}  {'SBD %':>11s}  FgBg %")
print(row("watershed baseline", ws_scores))
print(row("RIS (ris_lite, shipped)", ris_scores))
print(row("RIS + canvas (ours, shipped)", canvas_scores))
guess = json.loads((Path(ris_lite.__file__).parent / "pretrained" / "counting_test.json").read_text())["constant"]
test_counts = np.array([int(test.labels(i).max()) for i in range(len(test))])
print(f"{'constant guess ' + str(guess) + ' (no model)':28s} {np.mean(guess - test_counts):+6.2f} "
      f"({np.std(guess - test_counts):.1f})  {np.mean(np.abs(guess - test_counts)):5.2f} "
      f"({np.std(np.abs(guess - test_counts)):.1f})  {'-':>11s}  {'-':>5s}")
print()
print("Paper, real CVPPP A1 test set (a different data set, for reference only):")
for name, dic, adic, sbd in [("IPK", "-1.9 (2.5)", "2.6 (1.8)", "74.4 (4.3)"),
                             ("Nottingham", "-3.6 (2.4)", "3.8 (2.0)", "68.3 (6.3)"),
                             ("MSU", "-2.3 (1.6)", "2.3 (1.5)", "66.7 (7.6)"),
                             ("Wageningen", "-0.4 (3.0)", "2.2 (2.0)", "71.1 (6.2)"),
                             ("RIS", "0.2 (1.4)", "1.1 (0.9)", "56.8 (8.2)"),
                             ("RIS + CRF", "0.2 (1.4)", "1.1 (0.9)", "66.6 (8.7)")]:
    print(f"  {name:26s} {dic:>11s}  {adic:>10s}  {sbd:>11s}")

# what the paragraph below says, and the file the last chapter reads:
assert ris_scores["sbd"] > ws_scores["sbd"] and ws_scores["dic"] < -3 and ris_scores["abs_dic"] < 2
assert ws_scores["fgbg_dice"] > max(ris_scores["fgbg_dice"], canvas_scores["fgbg_dice"])
stored_ws = json.loads((Path(ris_lite.__file__).parent / "pretrained" / "watershed_test.json").read_text())
assert abs(stored_ws["watershed"]["sbd"] - ws_scores["sbd"]) < 1e-6

# %%
pretrained = Path(ris_lite.__file__).parent / "pretrained"
shipped_run = json.loads((pretrained / "rosettes_config.json").read_text())
first_model = json.loads((pretrained / "ablation_whole_leaves.json").read_text())["previous rosettes@5767"]
print(f"the first shipped model (plateau rule as written): SBD {100 * first_model['sbd']:.1f} %; "
      f"the shipped one: {shipped_run['step']} steps, {shipped_run['elapsed'] / 60:.0f} minutes of one CPU thread, "
      f"each lr of its last stage held for {shipped_run['config']['lr_hold_steps']} steps")
print(f"the canvas model's |DiC|: {canvas_scores['abs_dic']:.2f}")

# %% [markdown]
# **Reading the table.** On this benchmark the shipped RIS is ahead of the tuned watershed
# in SBD, and the two fail in opposite ways: the watershed badly under-counts (its negative
# DiC: touching leaves share one distance peak) while finding the plant best (the highest
# FgBgDice), and RIS has a far lower |DiC| -- but not lower than the constant guess in the last
# row (see {ref}`Does it count? <evaluation-does-it-count>`) -- yet still often paints parts of
# two neighbouring leaves in one step. The first model shipped here, trained with the
# plateau rule as the paper states it, only matched the watershed's SBD (printed above); the
# shipped model holds each learning rate of its last stage for a minimum number of steps
# (chapter {doc}`Beyond the paper <12_beyond>`), on one CPU thread for the minutes printed
# above; the paper's had far longer on a GPU. It is a faithful pipeline (plus a dilated FCN,
# see the FCN chapter) that is still under-trained; the training chapter says what we
# measured about why.
#
# The canvas model (ours) is *below* the paper-faithful one, on counting above all (its
# |DiC| above): it learned with a perfect canvas (teacher forcing), and on its own canvas it
# paints the leftovers of half-covered leaves as new leaves. The figure below shows it, and
# the chapter {doc}`Beyond the paper <12_beyond>` measures why the lever that looked best over
# ten CPU-minutes did not hold over the whole run.
#
# (evaluation-looking-predictions)=
# ## Looking at the predictions
#
# Image, truth and prediction for the first test plants:

# %%
preds, gts = ris_lite.predict_dataset(model, test)
canvas_preds, _ = ris_lite.predict_dataset(canvas_model, test)
fig, axes = plt.subplots(4, 4, figsize=(9.6, 10))
for k in range(4):
    image, _ = test[k]
    axes[0, k].imshow(image.permute(1, 2, 0))
    axes[1, k].imshow(overlay(image, gts[k]))
    axes[1, k].set_title(f"truth {int(gts[k].max())}", fontsize=9)
    for row_axes, name, p in [(axes[2], "RIS", preds[k]), (axes[3], "canvas (ours)", canvas_preds[k])]:
        row_axes[k].imshow(overlay(image, p))
        row_axes[k].set_title(f"{name} {int(p.max())}, SBD {metrics.symmetric_best_dice(p, gts[k]):.2f}",
                              fontsize=9)
for ax in axes.flat:
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# (evaluation-does-it-count)=
# ### Does it count?
#
# The counts in the titles deserve a second look. |DiC| alone cannot tell a counter from a
# guess: when most plants have 15 to 18 leaves, always answering 16 already scores well. So
# the model is set beside **the best constant**: the number of leaves whose mean |DiC| over
# the *training* plants' counts is lowest (a median; never chosen on the plants scored). A
# counter must beat it, and unlike it, its counts must follow the plant: the correlation of
# predicted with true counts. `ris_lite.evaluation.count_report` computes both, the histogram
# of predicted against true counts, the mean score at the steps around the true count $n$,
# and what the steps after the $n$-th do (`python benchmarks/diagnose.py rosettes --counts`
# prints it). The report for the 100 test plants comes from the stored run of
# `benchmarks/tune_assembly.py`, and the first column is recomputed here from the predictions above:

# %%
counting = json.loads((Path(ris_lite.__file__).parent / "pretrained" / "counting_test.json").read_text())
report = counting["models"][0]["test"]["paper"]["counts"]
assert counting["models"][0]["model"] == "rosettes"
true_n = np.array([int(g.max()) for g in gts])
ris_n = np.array([int(p.max()) for p in preds])
assert list(true_n) == report["true_counts"] and list(ris_n) == report["predicted_counts"]  # live = stored
constant = counting["constant"]
corr = np.corrcoef(true_n, ris_n)[0, 1]
print(f"true counts {true_n.min()}-{true_n.max()} (mean {true_n.mean():.1f}); RIS says {ris_n.min()}-{ris_n.max()}")
print(f"|DiC|: RIS {np.abs(ris_n - true_n).mean():.2f}, the constant {constant} (chosen on the "
      f"{counting['train_plants']} training plants) {np.abs(constant - true_n).mean():.2f}")
print(f"correlation of predicted with true counts: {corr:.2f}; "
      f"{np.mean(np.isin(ris_n, (17, 18))):.0%} of plants get 17 or 18")
late = report["after_true_count"]
print(f"RIS stops on average {report['stop_minus_true']['mean']:+.1f} steps after the true count; "
      f"the {report['steps_after_true_count']} steps it takes after the n-th: "
      + ", ".join(f"{k} {v:.0%}" for k, v in late.items()))
chosen = counting["models"][0]["test"]["chosen"]
print(f"with the assembly chosen on validation ({chosen['assembly']}, m={chosen['min_size']}): |DiC| "
      f"{chosen['abs_dic']:.2f}, correlation {chosen['counts']['count_correlation']:.2f}, SBD {100 * chosen['sbd']:.1f} %")
# what the text below says: worse than the constant as shipped, about level with it after the filter
assert np.abs(ris_n - true_n).mean() > np.abs(constant - true_n).mean() and corr < 0.5
assert abs(chosen["abs_dic"] - report["constant_abs_dic"]) < 0.1 and chosen["counts"]["count_correlation"] > corr

fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.4))
pairs = np.array([[int(v) for v in key.split(",")] + [c] for key, c in report["histogram"].items()])
axes[0].scatter(pairs[:, 0], pairs[:, 1], s=25 * pairs[:, 2], alpha=0.6)
lims = [true_n.min() - 1, max(true_n.max(), ris_n.max()) + 1]
axes[0].plot(lims, lims, color="grey", lw=0.8, label="predicted = true")
axes[0].axhline(constant, color="tab:orange", ls="--", lw=0.8, label=f"the constant {constant}")
axes[0].set_xlabel("true count")
axes[0].set_ylabel("RIS's count")
axes[0].legend(fontsize=8)
offsets = sorted(int(k) for k in report["score_by_offset"])
axes[1].plot(offsets, [report["score_by_offset"][str(o)] for o in offsets], marker="o")
axes[1].axhline(0.5, color="grey", lw=0.8)
axes[1].axvline(0.5, color="tab:green", ls="--", lw=0.8)
axes[1].set_xlabel("step t - n (true count n)")
axes[1].set_ylabel("mean score $s_t$")
fig.tight_layout()
plt.show()

# %% [markdown]
# The left panel is the verdict: points on the diagonal would be a counter, points on a
# horizontal line a guess, and RIS's counts lie closer to the line than to the diagonal (the
# correlation printed above). On the right, the mean score falls smoothly with the step and
# crosses ½ a step or two after $n$ *on average*; what it lacks is a drop that happens at
# each plant's own $n$. After the $n$-th step most steps repeat a leaf an earlier step took
# (the shares printed above), which first claim mostly hides in the label map but the stop
# never notices. The size filter of {ref}`the inference chapter <inference-assembly>` removes
# what first claim leaves of those repeats, which brings |DiC| down to about the constant's
# and lifts the correlation a little (the last line above): a cleaner label map, not yet a
# counter. The same comparison on real photographs, measured outside this repository on the
# 128 labelled A1 plants (the data cannot be shipped): a constant guess reaches the |DiC|
# printed below, which the paper's RIS clears and the four challenge entries of its Table 2
# do not:

# %%
a1 = json.loads((Path(ris_lite.__file__).parent / "pretrained" / "a1_constant_guess.json").read_text())
print(f"A1, {a1['plants']} labelled plants (counts {a1['counts']['min']}-{a1['counts']['max']}, mean "
      f"{a1['counts']['mean']}): the constant {a1['constant']} scores |DiC| {a1['constant_abs_dic']}")
print("the paper's Table 2, |DiC| (quoted):", ", ".join(f"{k} {v}" for k, v in a1["paper_table_2_abs_dic"].items()))
beats = [k for k, v in a1["paper_table_2_abs_dic"].items() if v < a1["constant_abs_dic"]]
print("below the constant:", ", ".join(beats))
assert beats == ["RIS", "RIS + CRF"]

# %% [markdown]
# So the paper's counting claim is the claim that matters, and the one our shipped
# reproduction does not yet meet: counting at the level of a constant is what a model does when
# its stop has learned the typical count and not the plant. Two things can be tried without
# retraining -- the assembly of {ref}`the inference chapter <inference-assembly>`, and the
# stop threshold -- and several with it; chapter {doc}`Beyond the paper <12_beyond>` measures
# both kinds.
#
# ### The failure kinds of Figs. 11–13, found automatically
#
# `metrics.failure_kinds` flags a predicted leaf that covers more than half of two true
# leaves (*joined*), a true leaf that no prediction overlaps with IoU $\ge 0.5$ (*missed* in the
# sense of the paper's figures, which includes leaves that are found but covered less than
# half: the next section separates the two), and a predicted leaf lying mostly on background
# (*hallucinated*). Over the test split, for the paper-faithful RIS:

# %%
kinds = [metrics.failure_kinds(p, g) for p, g in zip(preds, gts)]
for kind in ["joined", "missed", "hallucinated"]:
    per_image = [len(k[kind]) for k in kinds]
    label = "missed (no IoU >= 0.5)" if kind == "missed" else kind
    print(f"{label:24s}: {sum(per_image):4d} in total, in {sum(v > 0 for v in per_image):3d} of {len(kinds)} images")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for ax, kind in zip(axes, ["joined", "missed", "hallucinated"]):
    worst = int(np.argmax([len(k[kind]) for k in kinds]))
    image, _ = test[worst]
    flagged = kinds[worst][kind]
    shown = preds[worst] if kind != "missed" else gts[worst]
    sel = torch.where(torch.isin(shown, torch.tensor(flagged or [-1])), shown, 0)
    ax.imshow(overlay(image, sel))
    ax.set_title(f"{kind}: {len(flagged)} in test plant {worst}", fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Where the SBD is lost
#
# SBD averages one number per leaf, so it can be taken apart: `metrics.best_dice_per_label`
# gives, for each true leaf, its best Dice with any predicted leaf. Split by leaf size:

# %%
per_leaf = np.concatenate([metrics.best_dice_per_label(g, p) for p, g in zip(preds, gts)])
leaf_area = np.concatenate([np.bincount(g.flatten().numpy())[1:] for g in gts])
small, large = np.quantile(leaf_area, [1 / 3, 2 / 3])
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(per_leaf, bins=np.linspace(0, 1, 21))
ax.set_xlabel("best Dice of a true leaf")
ax.set_ylabel("leaves")
fig.tight_layout()
plt.show()
print(f"{len(per_leaf)} true leaves; best Dice < 0.1 (not found at all): {np.mean(per_leaf < 0.1):.1%}, "
      f">= 0.8: {np.mean(per_leaf >= 0.8):.1%}")
for name, sel in [("smallest third", leaf_area < small), ("middle third", (leaf_area >= small) & (leaf_area < large)),
                  ("largest third", leaf_area >= large)]:
    print(f"{name:15s} mean best Dice {per_leaf[sel].mean():.2f}")

# %% [markdown]
# Few leaves are missed outright (best Dice below $0.1$); most are found but only partly covered,
# which is why the *missed* count of the previous section, asking for IoU $\ge 0.5$, is so much
# larger. The overlays above
# show which part: the free outer blade is painted, the inner end under the neighbouring
# leaves often is not, or goes to a neighbour's mask. Small leaves, mostly young ones near the
# centre, fare worst. Raising SBD therefore means sharper masks where leaves overlap, not
# better counting.

# %% [markdown]
# (evaluation-memory-holds-figs)=
# ## What the memory holds (Figs. 4 and 7)
#
# Step by step for one test plant: the state summary $\kappa(\boldsymbol{h}_t)$, the 1×1 convolution,
# the log-softmax plus $b$ (negative parts clipped), the mask and the score. Compare
# $\kappa(\boldsymbol{h}_t)$ between steps: where it changes is where the model has moved its
# attention, which is what the paper's Fig. 4 shows for a well-trained model.

# %%
from ris_lite.viz import sequence_strip

image, _ = test[1]
with torch.no_grad():
    m, s, st = model(image[None].to(device), 10, return_stages=True)
m, s, st = m.cpu(), s.cpu(), {k: v.cpu() for k, v in st.items()}
sequence_strip(st, m, s)
plt.show()

# %% [markdown]
# In Jupyter or Colab, a slider steps through the sequence (the static page shows the strip above):

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def show_step(t=1):
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
    kappa = st["h"][0, t - 1].abs().sum(0)
    for ax, im, title in zip(axes, [kappa, st["conv"][0, t - 1].clamp(min=0),
                                    st["log_softmax_b"][0, t - 1].clamp(min=0), m[0, t - 1]],
                             ["kappa(h_t)", "Conv(h_t)", "log-softmax + b", f"Y_t, s_t = {float(s[0, t - 1]):.2f}"]):
        ax.imshow(im, cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    plt.show()


_ = widgets.interact(show_step, t=widgets.IntSlider(value=1, min=1, max=m.shape[1]))

# %% [markdown]
# (evaluation-region-ap-people)=
# ## Region AP, for the people experiment
#
# The Pascal VOC person experiment (Table 1) is scored by region average precision: the
# predicted masks of the whole data set, ranked by their score, each counted as a hit if the
# true instance it overlaps most is still unmatched and their IoU reaches a threshold.
# `metrics.average_precision_r` implements it (all-point interpolation);
# `average_precision_r_mean` averages the thresholds 0.1, …, 0.9 (the paper's "$\mathrm{AP}^r$ Ave";
# region AP comes from {cite:t}`hariharan2014sds`). Chapter {doc}`Multiple people <11_people>`
# builds it by hand and compares it with COCO's rule. On our leaves, with $s_t$ as the score:

# %%
detections = []
with torch.no_grad():
    for k in range(20):
        image, masks_true = test[k]
        pm, ps = model(image[None].to(device), 25)
        keep = ps[0].cpu() >= 0.5
        detections.append(((pm[0].cpu() > 0.5)[keep].numpy(), ps[0].cpu()[keep].numpy(), masks_true.numpy()))
print(f"AP^r(0.5) = {metrics.average_precision_r(detections, 0.5):.3f}, "
      f"AP^r Ave = {metrics.average_precision_r_mean(detections):.3f} (20 test plants)")

# %% [markdown]
# (evaluation-real-cvppp-a1)=
# ## On the real CVPPP A1 folder
#
# Once the A1 folder is in place (data chapter), the same evaluation is one command. Each
# photograph is read at the scale the model learned and the prediction is scored against the
# label file at its own 530 × 500 resolution, as the challenge scores (chapter
# [Your own data](10_your_data) explains both steps):
#
# ```bash
# ris-lite evaluate --data cvppp:data/CVPPP/A1                 # table
# ris-lite evaluate --data cvppp:data/CVPPP/A1 --json          # one JSON object
# ris-lite evaluate --data synthetic --split test --baseline   # this chapter's table
# ris-lite predict  --data cvppp:data/CVPPP/A1 --out predictions/   # label PNGs for the scorer
# ```
#
# The shipped model was trained on synthetic plants only; expect it to need fine-tuning on
# real images (exercise 3).
#
# ## Summary
#
# * The CVPPP measures: SBD (symmetric best Dice over leaves), FgBgDice (the plant mask), DiC
#   and |DiC| (the count), computed as the challenge computes them.
# * A classical watershed baseline, tuned on validation only, puts RIS's numbers in context.
# * Looking at the predictions shows where SBD is lost: leaves covered only in part and leaves
#   split between two steps, small leaves worst.
# * Region AP ($\mathrm{AP}^r$) measures instance masks with scores, as in the people experiment.
#
# ## Quick questions
#
# 1. Why is SBD the *minimum* of the two best-Dice directions?
# 2. A prediction labels the whole plant as one leaf. Which measures stay good, which collapse?
# 3. Why tune the baseline on validation and not on the test split?
#
# :::{dropdown} Answers
# 1. Each direction alone can be fooled: many small predicted pieces score well one way, one
#    big blob the other way.
# 2. FgBgDice stays high; SBD and DiC collapse.
# 3. Tuning on test would report a number no one could reproduce on new data: an optimistic
#    bias of exactly the size exercise 2 measures.
# :::
#
# ## Exercises
#
# 1. Sort the test plants by SBD and look at the five worst. Which failure kind dominates?
# 2. Tune the watershed baseline on the *test* split instead of validation and report how much
#    the table changes: that is the size of the mistake it would be.
# 3. Fine-tune the shipped model on real A1 images (`ris-lite train --data cvppp:… --init
#    rosettes`, chapter [Your own data](10_your_data)) and fill in the RIS row of Table 2 for
#    real data.
# 4. Lower the stop threshold from $0.5$ to $0.3$ and $0.1$: how do DiC and SBD move?
#
# :::{dropdown} Hints
# 1. `metrics.failure_kinds` sorts the misses. 2. Call `tune_baseline` on the test split and
#    re-score. 3. Chapter {doc}`Your own data <10_your_data>` has the commands. 4. `RIS.predict(..., score_threshold=0.3)`.
# :::
#
# ## What this chapter built in `ris_lite`
#
# `metrics.best_dice`, `symmetric_best_dice`, `fg_bg_dice`, `diff_fg_labels`,
# `count_labels`, `evaluate_labels`, `average_precision_r`, `average_precision_r_mean`,
# `failure_kinds`, `best_dice_per_label` (module `ris_lite.evaluation.metrics`); `evaluate_model`, `predict_dataset`
# (`ris_lite.evaluation.evaluate`); `watershed_leaves`, `tune_baseline`, `WatershedParams`,
# `baseline.foreground`, `baseline.evaluate_baseline` (`ris_lite.evaluation.baseline`);
# `RIS.predict` (`ris_lite.model.ris`).
#
# Their docstrings, with tensor shapes, are in the [API reference](api).
