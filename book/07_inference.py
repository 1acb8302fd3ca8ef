# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Putting it together: inference step by step
#
# The earlier chapters built RIS one part at a time: the FCN (chapter {doc}`The FCN <02_fcn>`), the ConvLSTM of
# eq. {eq}`convlstm` (the paper's eq. 1) (chapter {doc}`ConvLSTM <03_convlstm>`), the spatial inhibition and the stop score (chapter {doc}`Spatial inhibition <04_inhibition>`). Until now the
# whole model ran as `RIS.forward` and its answer came out of `RIS.predict`, two black boxes.
# This chapter opens both. It wires the parts together by hand, runs the loop one step at a time
# on a test plant, applies the three rules that turn soft masks into a label map, and watches
# the label map grow until the model decides to stop.
#
# **What you will learn**
#
# * the whole forward pass as four lines per step (eqs. {eq}`infer-state`–{eq}`infer-labels`), checked against `RIS.forward`;
# * the prediction rules (threshold, "the earlier step keeps a pixel", stop below ½), checked
#   against `RIS.predict`;
# * what the model does at each step: the new leaf, the score, and where it stops compared with
#   the true number of leaves, on one plant and over the test split;
# * (ours) another way to assemble the label map, by score-weighted argmax and a minimum segment
#   size chosen on validation plants.

# %%
# Colab: install ris_lite from the repository (non-editable). Locally this does nothing.
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO}@main"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import ris_lite
from ris_lite.viz import magnitude, overlay

device = ris_lite.pick_device()
# This chapter compares our hand-written inference with the package's to float rounding. On
# Ampere and newer GPUs PyTorch runs fp32 convolutions in TF32 (10-bit mantissa, errors ~1e-3)
# unless told not to; we ask for true fp32 so that the same tolerances hold on a CPU and a GPU.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
model = ris_lite.load_pretrained().to(device)
test = ris_lite.RosetteDataset("test", **model.data_options)
image, truth_masks = test[3]
truth = ris_lite.masks_to_labels(truth_masks)
n_true = truth_masks.shape[0]
print(f"test plant 3: {n_true} leaves, image {tuple(image.shape)}")

# %% [markdown]
# (inference-step-ris-hand)=
# ## One step of RIS, by hand
#
# ```{figure} figures/pipeline.png
# :width: 100%
#
# The pieces this chapter wires together (the introduction's figure).
# ```
#
# The FCN turns the image $\boldsymbol{I}$ into a feature map $\boldsymbol{B}$ once; the same
# $\boldsymbol{B}$ is the input of every step. A step $t$ then does four things. The two ConvLSTM
# layers update their states with eq. {eq}`convlstm` (chapter {doc}`ConvLSTM <03_convlstm>`), the first layer reading $\boldsymbol{B}$,
# the second reading the first layer's output:
#
# $$
# (\boldsymbol{h}^{1}_t, \boldsymbol{c}^{1}_t) &= \operatorname{ConvLSTM}_1\bigl(\boldsymbol{B}, \boldsymbol{h}^{1}_{t-1}, \boldsymbol{c}^{1}_{t-1}\bigr), \\
# (\boldsymbol{h}_t, \boldsymbol{c}^{2}_t) &= \operatorname{ConvLSTM}_2\bigl(\boldsymbol{h}^{1}_t, \boldsymbol{h}_{t-1}, \boldsymbol{c}^{2}_{t-1}\bigr),
# $$ (infer-state)
#
# all states starting at zero. The spatial inhibition ({doc}`chapter <04_inhibition>`) reads the top state
# $\boldsymbol{h}_t$: a $1 \times 1$ convolution gives one number per cell of the grid, a
# log-softmax over **all** cells makes them compete, and the learned threshold $b$ decides
# which cells are in the mask (eq. {eq}`inhibition`):
#
# $$
# \hat{\boldsymbol{Y}}_t = \sigma\bigl(\log\operatorname{softmax}(\boldsymbol{w}_m * \boldsymbol{h}_t + c_m) + b\bigr),
# $$ (infer-mask)
#
# upsampled bilinearly from the grid to the image. The stop score pools the same state (eq. {eq}`stop-score`):
#
# $$
# s_t = \sigma\bigl(\boldsymbol{w}_s^\top \max_{u} \boldsymbol{h}_{t,u} + c_s\bigr).
# $$ (infer-score)
#
# Written out with plain `torch` functions and the shipped model's weights (the LSTM update is
# eq. {eq}`convlstm` with the four gates of one convolution, as chapter {doc}`ConvLSTM <03_convlstm>` fused them):

# %%
def lstm_update(conv: torch.nn.Conv2d, x, h, c):
    """The ConvLSTM update: the four gates from one convolution of [x, h], then the new (h, c)."""
    i, f, o, g = F.conv2d(torch.cat([x, h], 1), conv.weight, conv.bias, padding=conv.padding).chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


@torch.no_grad()
def ris_by_hand(model, images, steps):
    """images (B, 3, H, W) -> masks (B, T, H, W), scores (B, T): the three equations above."""
    x = model.fcn(images)  # the features B, computed once
    B, _, gh, gw = x.shape
    states = [(x.new_zeros(B, model.config.channels, gh, gw),) * 2 for _ in model.lstm.cells]
    masks, scores = [], []
    for _ in range(steps):
        inp = x
        for k, cell in enumerate(model.lstm.cells):  # the two state updates
            states[k] = lstm_update(cell.conv, inp, *states[k])
            inp = states[k][0]
        h = inp
        logits = F.conv2d(h, model.inhibition.conv.weight, model.inhibition.conv.bias).flatten(1)
        grid = torch.sigmoid(F.log_softmax(logits, 1) + model.inhibition.b).view(B, 1, gh, gw)  # the mask
        masks.append(F.interpolate(grid, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
        pooled = h.amax(dim=(2, 3))
        scores.append(torch.sigmoid(pooled @ model.confidence.linear.weight.T + model.confidence.linear.bias)[:, 0])  # the score
    return torch.stack(masks, 1), torch.stack(scores, 1)


images = image.unsqueeze(0).to(device)
T = n_true + 4
ours_masks, ours_scores = ris_by_hand(model, images, T)
with torch.no_grad():
    pkg_masks, pkg_scores = model(images, T)
assert torch.allclose(ours_masks, pkg_masks, atol=1e-5) and torch.allclose(ours_scores, pkg_scores, atol=1e-5)
print(f"{T} steps by hand against RIS.forward: max |mask difference| {magnitude(ours_masks - pkg_masks)}, "
      f"max |score difference| {magnitude(ours_scores - pkg_scores)} (tolerance 1e-5)")

# %% [markdown]
# They differ by float rounding only: the package computes the first layer's input half
# of the gates once per sequence (the input never changes, chapter {doc}`ConvLSTM <03_convlstm>`) and adds the recurrent
# half at each step, which sums the same numbers in another order.
#
# (inference-soft-masks-label)=
# ## From soft masks to a label map
#
# `RIS.predict` turns the sequence into one label map with three rules:
#
# 1. **stop**: keep the steps before the first score below ½, $K = \min\{t : s_t < \tfrac12\} - 1$;
# 2. **threshold**: step $t$ claims pixel $p$ when $\hat{Y}_t(p) > \tfrac12$;
# 3. **first claim**: a pixel claimed by several kept steps belongs to the earliest,
#
# so that, with leaves numbered in the order found (a step that keeps no pixel gets no number),
#
# $$
# y(p) = \min\bigl\{t \le K : \hat{Y}_t(p) > \tfrac12\bigr\}, \qquad y(p) = 0 \text{ if there is none.}
# $$ (infer-labels)

# %%
def predict_by_hand(masks, scores):
    """(T, H, W) masks and (T,) scores of one image -> (H, W) labels by the rule above."""
    below = (scores < 0.5).nonzero()
    K = int(below[0]) if len(below) else len(scores)
    labels = torch.zeros(masks.shape[1:], dtype=torch.int64)
    next_id = 1
    for t in range(K):
        new = (masks[t] > 0.5) & (labels == 0)
        if new.any():
            labels[new] = next_id
            next_id += 1
    return labels, K


steps = 30  # what predict unrolls at most
masks, scores = ris_by_hand(model, images, steps)
labels, K = predict_by_hand(masks[0].cpu(), scores[0].cpu())
assert torch.equal(labels, model.predict(image, max_steps=steps)[0])
print(f"kept {K} steps (the score first fell below 1/2 at step {K + 1}); {int(labels.max())} leaves labelled; "
      f"truth: {n_true}")

# %% [markdown]
# (inference-assembly)=
# ### Another way to assemble: score-weighted argmax (ours)
#
# Rule 3 has a side effect on the count. A step that paints a leaf an earlier step already took
# keeps whatever sliver along its edge the earlier mask missed, and that sliver becomes a
# leaf of its own: one more in the count, a near-zero Dice in the SBD. Ren and Zemel
# {cite:p}`ren2017recurrent` assemble differently: each mask is weighted by its score and a
# pixel goes to the strongest weighted mask,
#
# $$
# y(p) &= \operatorname*{arg\,max}_{t \le K}\; s_t\, \hat{Y}_t(p)
#   \quad\text{where } \max_{t \le K} \hat{Y}_t(p) > \tfrac12, \\
# y(p) &= 0 \quad\text{elsewhere,}
# $$ (infer-argmax)
#
# and segments smaller than $m$ pixels are dropped. Both are options of `RIS.predict`
# (`assembly="argmax"`, `min_size=m`; module `ris_lite.model.assembly`), **ours, off by
# default**: the paper's rule stays the default. On three hand-made masks, the second one more
# confident than the first where they overlap:

# %%
from ris_lite.model.assembly import argmax_labels, drop_small, first_claim_labels

toy = torch.zeros(3, 4, 6)
toy[0, :, :3] = 0.9   # step 1, score 0.6
toy[1, :, 2:5] = 0.8  # step 2 overlaps step 1 on column 2, score 0.95
toy[2, 0, 5] = 0.7    # step 3: a single pixel, score 0.7
toy_scores = torch.tensor([0.6, 0.95, 0.7])
print("first claim:\n", first_claim_labels(toy).numpy())
print("score-weighted argmax, segments under 2 pixels dropped:\n", drop_small(argmax_labels(toy, toy_scores), 2).numpy())
assert first_claim_labels(toy)[0, 2] == 1 and argmax_labels(toy, toy_scores)[0, 2] == 2  # 0.95 x 0.8 > 0.6 x 0.9

# %% [markdown]
# The minimum size $m$ is a knob, so it is chosen on the 64 validation plants and only then
# scored on the test plants: `benchmarks/tune_assembly.py` runs each shipped model once per
# plant and applies every pair (assembly, $m$) to the same masks. It takes the lowest
# validation |DiC| among the settings within half an SBD point of the best validation SBD. The
# stored result, and the check that `predict` with those options is what the benchmark scored:

# %%
import json
from pathlib import Path

tuned = json.loads((Path(ris_lite.__file__).parent / "pretrained" / "counting_test.json").read_text())
print(f"{'model':18s} {'chosen on val':>16s}   test SBD %: paper -> chosen   |DiC|: paper -> chosen")
for r in tuned["models"]:
    p, c = r["test"]["paper"], r["test"]["chosen"]
    name = Path(r["model"]).parent.name if "/" in r["model"] else r["model"]
    print(f"{name:18s} {c['assembly'] + ', m=' + str(c['min_size']):>16s}   {100 * p['sbd']:5.1f} -> {100 * c['sbd']:5.1f}"
          f"            {p['abs_dic']:.2f} -> {c['abs_dic']:.2f}")
chosen = tuned["models"][0]["chosen"]
assert tuned["models"][0]["model"] == "rosettes"
live = model.predict(image, max_steps=steps, assembly=chosen["assembly"], min_size=chosen["min_size"])[0]
by_hand = drop_small(argmax_labels(masks[0, :K].cpu(), scores[0, :K].cpu()) if chosen["assembly"] == "argmax"
                     else first_claim_labels(masks[0, :K].cpu()), chosen["min_size"])
assert torch.equal(live, by_hand)
print(f"this plant with the chosen assembly: {int(live.max())} leaves (paper's rule: {int(labels.max())}; truth {n_true})")

# %% [markdown]
# Read the table for what it says about counting: the size filter removes slivers, so it can
# only *lower* a count, and it helps where a model over-counts by keeping the leftovers of
# repeated leaves; it lifts the SBD too, since every sliver was a leaf with a Dice near zero.
# It cannot tell the model where a plant ends: a model whose stop comes at much the same step
# for every plant still does after the filter. That is the stop score's job, measured in
# chapter {doc}`Evaluation <08_evaluation>` and worked on in {doc}`Beyond the paper <12_beyond>`.

# %% [markdown]
# (inference-watching-work)=
# ## Watching it work
#
# Each column below is one step: the soft mask $\hat{\boldsymbol{Y}}_t$ it emits (top), and the
# label map so far, rule {eq}`infer-labels` applied to the steps up to $t$ (bottom). The score is in the
# title; the first step whose score falls below ½ is the stop, and the column is greyed.

# %%
def label_map_after(t):
    """The labelling rule over the first t steps (ignoring the stop)."""
    return predict_by_hand(masks[0, :t].cpu(), torch.ones(t))[0]


shown = K + 1
cols = 6  # six columns of 1.6 inches: the page's column shows the figure at its own size
rows = int(np.ceil(shown / cols))
fig, axes = plt.subplots(2 * rows, cols, figsize=(1.6 * cols, 1.75 * 2 * rows))
for ax in axes.flat:
    ax.set_axis_off()
for t in range(shown):
    r, c = 2 * (t // cols), t % cols
    stop = t == K
    axes[r, c].imshow(masks[0, t].cpu(), cmap="gray" if stop else "magma", vmin=0, vmax=1)
    axes[r, c].set_title(f"t={t + 1} s={float(scores[0, t]):.2f}" + (" stop" if stop else ""), fontsize=7,
                         color="grey" if stop else "black")
    axes[r + 1, c].imshow(overlay(image, label_map_after(min(t + 1, K))), alpha=0.4 if stop else 1.0)
fig.tight_layout()
plt.show()

# %% [markdown]
# The score against the step, with the true number of leaves marked. A model that counts
# right keeps its score above ½ for exactly $n$ steps and drops it at step $n + 1$: here that
# step is the dashed line, and the stop is where the curve crosses ½.

# %%
fig, ax = plt.subplots(figsize=(6.4, 3))
t_axis = np.arange(1, steps + 1)
ax.plot(t_axis, scores[0].cpu(), marker="o", ms=3)
ax.axhline(0.5, color="grey", lw=0.8)
ax.axvline(n_true + 0.5, color="tab:green", ls="--", label=f"true count n = {n_true}")
ax.axvline(K + 0.5, color="tab:red", ls=":", label=f"model stops after {K} steps")
ax.set_xlabel("step t")
ax.set_ylabel("score $s_t$")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The same question over many plants: how far from the true count does the model stop? That
# difference is DiC (chapter {doc}`Evaluation <08_evaluation>`), counted here from the steps kept, on the first 40 test plants.

# %%
batch = torch.stack([test[i][0] for i in range(40)]).to(device)
with torch.no_grad():
    _, all_scores = model(batch, steps)
kept = [(s < 0.5).nonzero()[0].item() if (s < 0.5).any() else steps for s in all_scores.cpu()]
counts = [test[i][1].shape[0] for i in range(40)]
dic = np.array(kept) - np.array(counts)
values, freq = np.unique(dic, return_counts=True)
print("steps kept - true count:", dict(zip(values.tolist(), freq.tolist())))
print(f"mean |steps kept - n| = {np.abs(dic).mean():.2f} over 40 plants")

fig, ax = plt.subplots(figsize=(5, 2.6))
ax.bar(values, freq)
ax.set_xlabel("steps kept - true count")
ax.set_ylabel("plants")
fig.tight_layout()
plt.show()

# %% [markdown]
# Steps kept and leaves labelled differ when a kept step wins no pixel of its own (its leaf
# was already claimed), which is why DiC in chapter {doc}`Evaluation <08_evaluation>`, counted on label maps, can be lower.
#
# (inference-step-slider)=
# ## A step slider
#
# In a running notebook the slider below scrubs through the steps; the strip in {numref}`section %s <inference-watching-work>` shows
# the same frames on the static page, where a slider cannot move.
# The same loop also runs in the browser, with no Python at all: {doc}`Try it in the page <try_it>`
# exports the FCN and one step as two ONNX graphs and calls the step until the score drops below ½,
# on a test plant or on a photo you choose.

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def show_step(t=1):
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(masks[0, t - 1].cpu(), cmap="magma", vmin=0, vmax=1)
    axes[0].set_title(f"mask of step {t}, score {float(scores[0, t - 1]):.2f}")
    axes[1].imshow(overlay(image, label_map_after(min(t, K))))
    axes[1].set_title("label map" + (" (stopped)" if t > K else ""))
    for ax in axes:
        ax.set_axis_off()
    plt.show()


_ = widgets.interact(show_step, t=widgets.IntSlider(min=1, max=K + 1, value=1, description="step"))

# %% [markdown]
# ## Summary
#
# * One step of RIS is eq. {eq}`convlstm` twice (two ConvLSTM layers on the fixed FCN features), a
#   competition over the grid with a learned threshold (eq. {eq}`infer-mask`) and a pooled score (eq. {eq}`infer-score`);
#   written with plain `torch` calls it matches `RIS.forward` to float rounding.
# * `RIS.predict` is eq. {eq}`infer-labels`: keep the steps before the score first drops below ½, threshold
#   each mask at ½, and let the earlier step keep a contested pixel.
# * Watching the steps shows the order the model chose and that the stop is a learned count:
#   right or off by one on about half of the 40 plants, off by several leaves on others (the
#   histogram above); the shipped model tends to stop near 18 whatever the plant.
#
# ## Quick questions
#
# 1. The FCN runs once per image, the ConvLSTM once per step. Why can the model still emit a
#    different leaf at each step, when its input never changes?
# 2. What would change in the label map if rule 3 gave a contested pixel to the *later* step?
# 3. A plant's score stays above ½ for all 30 steps. What does `RIS.predict` return, and what
#    would DiC be for a plant of 15 leaves?
#
# :::{dropdown} Answers
# 1. The state $(\boldsymbol{h}_t, \boldsymbol{c}_t)$ changes: it carries which leaves were
#    already emitted, and the inhibition picks the cells that win the competition *given* that
#    state.
# 2. Fragments of later, wrong steps would overwrite good early leaves along their edges; the
#    earlier step is usually the more confident one (its leaf was found first).
# 3. All 30 steps are kept; at most 30 leaves are labelled, fewer if steps win no pixel of their
#    own; DiC would be up to +15.
# :::
#
# ## Exercises
#
# 1. *(quick)* Change the mask threshold in `predict_by_hand` to $0.3$ and $0.7$ on the first 20 test
#    plants. How do SBD and DiC move?
# 2. *(quick)* In `ris_by_hand`, replace the log-softmax by a plain sigmoid of the convolution
#    (no competition) with the same $b$. What do the masks look like?
# 3. Find the test plant where `steps kept - true count` is largest and draw its strip. Is the
#    model repeating leaves, or finding fragments?
# 4. Time `ris_by_hand` against `RIS.forward` for 30 steps. Where does the package save work?
#
# :::{dropdown} Hints
# 1. `ris_lite.evaluation.metrics.evaluate_labels` scores a list of label maps. 2. Pass the convolution's
#    output through `torch.sigmoid(logits + model.inhibition.b)`; keep the rest. 3. Use `dic`
#    from {numref}`section %s <inference-watching-work>` and `np.argmax`. 4. Chapter {doc}`ConvLSTM <03_convlstm>`: the input half of the first layer's gates.
# :::
#
# ## What this chapter built in `ris_lite`
#
# No new names: it rebuilt from their parts `RIS.forward` and `RIS.predict`, using `RIS.fcn`, `RIS.lstm` (`ConvLSTMCell.conv`), `RIS.inhibition`
# (`SpatialInhibition`), `RIS.confidence` (`ConfidenceHead`), `model.first_claim_labels`,
# `viz.overlay`. Their docstrings are in the [API reference](api).
