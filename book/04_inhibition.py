# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attention by spatial inhibition, and when to stop
#
# **What you will learn**
#
# * how one channel, a softmax over *all pixels* and one learned threshold $b$ turn the
#   recurrent state into the mask of a single instance (Sec. 3.2, Fig. 2);
# * why the starting value of $b$ decides whether anything is learned, and a principled
#   value derived from the expected instance size — measured, not just argued;
# * how the confidence score $s_t$ is computed, and how the pieces assemble into `ris_lite.RIS`;
# * what the stages look like inside a trained model (the paper's Fig. 7).

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
import torch
import torch.nn.functional as F

import ris_lite
from ris_lite.viz import glue, magnitude

torch.manual_seed(0)
device = ris_lite.pick_device()

# %% [markdown]
# (inhibition-pipeline-fig-2)=
# ## The pipeline of Fig. 2
#
# ```{figure} figures/inhibition.png
# :name: fig-inhibition
# :width: 95%
#
# The two heads on the top ConvLSTM state (after the paper's Fig. 2): the mask branch
# (eq. {eq}`inhibition` below) and the stop score (eq. {eq}`stop-score`).
# ```
#
# From the hidden state $\boldsymbol{h}_t \in \mathbb{R}^{h'\times w'\times d}$ the mask of step $t$ is
#
# $$
# \boldsymbol{z}_t &= \boldsymbol{w}_m * \boldsymbol{h}_t + c_m, \\
# \ell_{t,u} &= z_{t,u} - \log \textstyle\sum_{v} e^{z_{t,v}}, \\
# \hat{\boldsymbol{Y}}_{t,u} &= \sigma(\ell_{t,u} + b),
# $$ (inhibition)
#
# where $\boldsymbol{w}_m$ is a $1\times1$ convolution to one channel with bias $c_m$ (which the
# log-softmax cancels), and $u, v$ run over all $h'w'$ pixels; a bilinear upsampling then brings the
# mask to the image size. The log-softmax makes the pixels *compete*: $\sum_u e^{\ell_{t,u}} = 1$, so a pixel can
# only rise by taking probability mass from the others. $b$ then sets the bar: pixels whose
# log-probability exceeds $-b$ end above one half. Since the mass is shared, only a compact
# group of pixels can pass the bar at once, one instance if the state has singled one out.
#
# A small example: a logit map with three blobs of different height.

# %%
yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
blob = lambda cy, cx, r: torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
logits = 6 * blob(12, 12, 4) + 5.2 * blob(28, 26, 5) + 4.5 * blob(10, 30, 3)
log_p = F.log_softmax(logits.flatten(), 0).view(40, 40)
print("sum of exp(log-softmax) over pixels:", round(float(log_p.exp().sum()), 4))

blobs = torch.stack([6 * blob(12, 12, 4), 5.2 * blob(28, 26, 5), 4.5 * blob(10, 30, 3)])
owner = blobs.argmax(0)  # (40, 40): which blob each pixel belongs to
bs = [3.0, 4.5, 5.2, 7.5]
kept = {}
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
axes[0].imshow(logits, cmap="magma")
axes[0].set_title("logits z", fontsize=10)
axes[1].imshow(owner, cmap="tab10", vmin=0, vmax=9)
axes[1].set_title("blobs 1, 2, 3", fontsize=10)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
fig, axes = plt.subplots(2, len(bs), figsize=(10, 5.2))
for k, b in enumerate(bs):
    soft = torch.sigmoid(log_p + b)
    per_blob = kept[b] = [int(((soft > 0.5) & (owner == j)).sum()) for j in range(3)]
    print(f"b = {b}: pixels above 1/2 in blobs 1, 2, 3: {per_blob}; highest value {soft.max():.2f}")
    axes[0, k].imshow(soft, cmap="gray", vmin=0, vmax=1)
    axes[0, k].set_title(f"sigmoid(l + {b})", fontsize=11)
    axes[1, k].imshow(soft > 0.5, cmap="gray", vmin=0, vmax=1)
    axes[1, k].set_title(f"> 1/2: {per_blob}", fontsize=11)
for ax in axes.flat:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
reached = {b: [n > 0 for n in counts] for b, counts in kept.items()}
assert reached == {3.0: [False] * 3, 4.5: [True, False, False], 5.2: [True, True, False], 7.5: [True] * 3}

# %% [markdown]
# The first figure is the input: three blobs of logits. In the second, the top row is what the
# head outputs, the bottom row what is kept as the mask (values above one half). A small $b$ lets nothing through: even the strongest blob's peak stays below one
# half. At $b = 4.5$ only the strongest blob passes, at $5.2$ the second joins it, and a large
# $b$ lets all three in. Move the slider yourself (in Jupyter or Colab; the static book shows
# the rows above):

# %%
# NBVAL_IGNORE_OUTPUT
import ipywidgets as widgets


def show_threshold(b=5.0):
    plt.figure(figsize=(3, 3))
    plt.imshow(torch.sigmoid(log_p + b) > 0.5, cmap="gray", vmin=0, vmax=1)
    plt.title(f"b = {b:.1f}: kept pixels")
    plt.axis("off")
    plt.show()


_ = widgets.interact(show_threshold, b=widgets.FloatSlider(value=5.0, min=0.0, max=10.0, step=0.1))

# %% [markdown]
# **Check** against `ris_lite.SpatialInhibition`: inside the head, the exponentiated
# log-softmax sums to one over the pixels of every image.

# %%
head = ris_lite.SpatialInhibition(hidden_channels=30, bias_init=4.0)
h = torch.randn(2, 30, 53, 50)
mask, stages = head(h, out_size=(106, 100), return_stages=True)
p = (stages["log_softmax_b"] - head.b).exp()
print("mask", tuple(mask.shape), "| sum over pixels:", [round(v, 4) for v in p.sum((1, 2)).tolist()])
ours = torch.sigmoid(F.log_softmax(head.conv(h).flatten(1), 1).view(2, 53, 50) + head.b)
ours = F.interpolate(ours[:, None], size=(106, 100), mode="bilinear", align_corners=False)[:, 0]
assert torch.allclose(ours, mask, atol=1e-6)

# %% [markdown]
# (inhibition-where-should-b)=
# ## Where should $b$ start?
#
# At initialisation the 1×1 convolution gives nearly the same $z$ everywhere, so every pixel
# has $\ell \approx -\ln(h'w')$. On our $53\times50$ grid that is $-7.9$. With $b \approx 1$ every
# pixel starts at $\sigma(1 - 7.9) \approx 0.001$: the masks are empty, the soft IoU of the
# loss chapter is near zero, and so is its gradient.
#
# Suppose instead the state had found one instance of $A$ cells and spread the mass evenly
# over it: each of its cells would have $\ell = -\ln A$. For those cells to sit exactly at the
# decision threshold $\sigma(0) = \tfrac12$ we need
#
# $$
# b_0 = \ln A.
# $$ (inhibition-b0)
#
# A second reading of eq. {eq}`inhibition-b0`: with uniform logits the initial mask is $\sigma(\ln A - \ln h'w')
# \approx A / h'w'$ at every pixel, so the *total* mass of the first masks is about $A$, the
# size of an instance. `ris_lite.inhibition_bias_init(A)` returns $\ln A$; `RIS` computes $A$
# from `instance_fraction` (the expected share of the image covered by one leaf:
# {glue:text}`instance_percent:.2f` % on the benchmark, about {glue:text}`instance_cells:.0f`
# cells of the grid), giving $b_0 =$ {glue:text}`b0:.1f` (printed by the cell below).
#
# A second detail matters as much: at the start $\boldsymbol{h}_t$ is small and nearly uniform
# (its spatial spread is a few hundredths), so with PyTorch's default weights the 1×1
# convolution can barely separate pixels. `SpatialInhibition` starts its weights at unit
# scale, so the logits can spread as soon as the state carries any structure.
#
# **Measured.** The same small RIS, the same 2–4-leaf plants, the same 30 Adam steps; only
# $b_0$ differs. The curve is the {term}`matched soft IoU`, the quantity the
# {doc}`loss chapter <05_loss>` defines and training raises:

# %%
from ris_lite.training.loss import ris_loss

data = ris_lite.RosetteDataset("train", length=4, n_leaves=(2, 4), count_sampling="uniform")
images, targets, counts = ris_lite.collate_instances([data[i] for i in range(4)])


def short_run(bias_init, steps=30):
    torch.manual_seed(0)
    model = ris_lite.RIS(bias_init=bias_init)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve = []
    for _ in range(steps):
        masks, scores = model(images, 2)
        loss, parts = ris_loss(masks, scores, targets, counts, lengths=torch.clamp(counts + 2, max=2),
                               return_parts=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(parts["iou"])
    return curve


fraction = ris_lite.RISConfig().instance_fraction  # the benchmark's expected share of one leaf
b_size = ris_lite.inhibition_bias_init(fraction * 53 * 50)
glue("instance_percent", 100 * fraction)
glue("instance_cells", fraction * 53 * 50)
glue("b0", b_size)
curves = {"b0 = 1": short_run(1.0), f"b0 = ln A = {b_size:.1f}": short_run(b_size)}
# The exact values depend on the processor's floating-point paths; the property does not.
small_b, sized_b = curves.values()
assert small_b[-1] < 0.01 and sized_b[-1] > 10 * max(sized_b[0], 0.01)
print(f"b0 = 1: matched soft IoU {magnitude(small_b[0])} at step 1, {magnitude(small_b[-1])} at step 30 (bar: 0.01)")
print(f"b0 = ln A = {b_size:.1f}: {magnitude(sized_b[0])} at step 1, {magnitude(sized_b[-1])} at step 30 "
      f"(bar: ten times step 1)")
plt.figure(figsize=(5, 3))
plt.title("after 30 steps: " + ", ".join(f"{k}: {c[-1]:.3f}" for k, c in curves.items()), fontsize=8)
for name, c in curves.items():
    plt.plot(c, label=name)
plt.xlabel("Adam step")
plt.ylabel("mean matched soft IoU")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# (inhibition-confidence-score)=
# ## The confidence score
#
# The score $s_t$ says whether the mask of step $t$ is a real instance; inference stops at the
# first $s_t < \tfrac12$. The paper computes it by a max-pooling of $\boldsymbol{h}_t$ over the whole
# grid, a linear layer and a sigmoid:
#
# $$
# s_t = \sigma\big(\boldsymbol{w}_s^\top \max_{u} \boldsymbol{h}_{t,u} + c_s\big),
# $$ (stop-score)
#
# with a weight vector $\boldsymbol{w}_s \in \mathbb{R}^d$ and a bias $c_s$. The authors' plant code used instead a linear layer on the entire flattened state, with a
# starting bias of 10 (so every step begins by predicting "continue"), which ties the model
# to one input size. `ConfidenceHead(kind="maxpool")` is the default; `kind="flatten"` is the
# code's version.

# %%
conf = ris_lite.ConfidenceHead(30)
s_ours = torch.sigmoid(conf.linear(h.amax(dim=(2, 3)))).squeeze(1)
assert torch.allclose(s_ours, conf(h))
flat = ris_lite.ConfidenceHead(30, kind="flatten", feature_size=(53, 50), bias_init=10.0)
print("maxpool scores:", [round(v, 3) for v in conf(h).tolist()],
      "| flatten (bias 10):", [round(v, 3) for v in flat(h).tolist()])

# %% [markdown]
# (inhibition-whole-model)=
# ## The whole model
#
# `ris_lite.RIS` chains the FCN, two ConvLSTM layers, the inhibition head and the score head.
# `forward(images, steps)` returns masks `(B, T, H, W)` and scores `(B, T)`;
# `return_stages=True` adds the intermediate maps we plot next.

# %%
model = ris_lite.RIS()
masks, scores = model(torch.rand(2, 3, 106, 100), steps=5)
print("masks", tuple(masks.shape), "| scores", tuple(scores.shape))
print("parameters:", sum(p.numel() for p in model.parameters()))
print("initial b:", round(model.inhibition.b.item(), 3))

# %% [markdown]
# (inhibition-inside-trained-model)=
# ## Inside a trained model: the stages of Fig. 7
#
# For the shipped model and one test plant: $\kappa(\boldsymbol{h}_t)$ (the summed absolute state),
# $\mathrm{Conv}(\boldsymbol{h}_t)$ and the log-softmax plus $b$ (negative values clipped to zero, as
# in the paper), the mask $\hat{\boldsymbol{Y}}_t$ and the score $s_t$.

# %%
from ris_lite.viz import sequence_strip

trained = ris_lite.load_pretrained().to(device)
image, labels = ris_lite.make_rosette(ris_lite.SPLITS["test"][0] + 2)
with torch.no_grad():
    m, s, st = trained(image[None].to(device), 8, return_stages=True)
m, s, st = m.cpu(), s.cpu(), {k: v.cpu() for k, v in st.items()}
print("b =", round(trained.inhibition.b.item(), 2), "| scores:", [round(v, 2) for v in s[0].tolist()])
shipped_run = json.loads((Path(ris_lite.__file__).parent / "pretrained" / "rosettes_config.json").read_text())
glue("shipped_steps", shipped_run["step"])
sequence_strip(st, m, s)
plt.show()

# %% [markdown]
# Read the rows from top to bottom: the 1×1 convolution ranks the pixels, the log-softmax
# plus $b$ keeps only the ones that clear the bar, and the sigmoid saturates them. For the
# shipped model ({glue:text}`shipped_steps:,d` training steps on a CPU) most steps pick one leaf, but some masks still
# take in a piece of a neighbouring look-alike leaf, and on a plant of many leaves the score
# stays near 1 for these first eight steps, as it should. The {doc}`evaluation chapter <08_evaluation>` measures
# what the remaining mistakes cost.
#
# ## Summary
#
# * The mask head makes the grid's cells compete: a $1 \times 1$ convolution, a log-softmax over
#   all cells, a learned threshold $b$, a sigmoid (eq. {eq}`inhibition`, Fig. 2).
# * Where $b$ starts decides whether anything is learned: $b_0 = \ln A$ (eq. {eq}`inhibition-b0`) puts an
#   instance of $A$ cells with evenly spread mass exactly at ½.
# * The stop score max-pools the same state and passes it through a linear layer and a
#   sigmoid (eq. {eq}`stop-score`); RIS stops at the first score below ½.
#
# ## Quick questions
#
# 1. What does the log-softmax force that a per-pixel sigmoid does not?
# 2. Why does $b \approx 1$ make the masks start near 0 on a $53 \times 50$ grid?
# 3. Why is the score computed from the same state as the mask?
#
# :::{dropdown} Answers
# 1. The cells share one unit of probability mass, so only one region can be bright at a time.
# 2. Spread evenly, each of the $53 \cdot 50 = 2650$ cells has log-probability
#    $-\ln 2650 \approx -7.9$; $\sigma(-7.9 + 1) \approx 0.001$, and the soft IoU barely moves.
# 3. The state knows which leaves are done; whether anything is left to segment is a question
#    about that memory.
# :::
#
# ## Exercises
#
# 1. In the toy example, find the smallest $b$ for which two blobs pass the bar. Relate it to
#    the log-probabilities of the blobs' peaks.
# 2. Repeat the measured run with $b_0 = \ln A \pm 2$. How sensitive is early learning to $b_0$?
# 3. Replace the log-softmax by a plain per-pixel sigmoid (no competition) and train for the
#    budget of the {doc}`training chapter <06_training>`. What goes wrong with the masks?
# 4. Why does a max-pooled score not depend on the image size, while the flattened one does?
#
# :::{dropdown} Hints
# 1. Two blobs pass when the log-probability of each peak plus $b$ exceeds 0. 2. Set
#    `RISConfig(bias_init=...)` around `inhibition_bias_init(A)`. 3. Replace
#    `F.log_softmax(logits, 1)` by `logits` in `SpatialInhibition.forward`. 4. A max over cells
#    has one value per channel whatever the grid; a flattened state has one per cell.
# :::
#
# ## What this chapter built in `ris_lite`
#
# `SpatialInhibition`, `ConfidenceHead`, `inhibition_bias_init` (module
# `ris_lite.model.inhibition`); `RIS`, `RISConfig` (`ris_lite.model.ris`); `viz.sequence_strip`
# (`ris_lite.viz`).
#
# Their docstrings, with tensor shapes, are in the [API reference](api).
