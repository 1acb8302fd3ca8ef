# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The fully convolutional network
#
# **What you will learn**
#
# * what the FCN of the plant experiment is, in the two forms that exist (the paper's text
#   and the authors' released code) and why they differ;
# * how to compute its output size and its receptive field;
# * what its feature maps look like on a rosette (the idea of the paper's Fig. 6).

# %%
# Colab: install ris_lite from the repository (non-editable). Locally this does nothing.
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO}@main"], check=True)

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import ris_lite

torch.manual_seed(0)
device = ris_lite.pick_device()
print("device:", device.type)

# %% [markdown]
# (fcn-descriptions-network)=
# ## Two descriptions of one network
#
# RIS reads the image once with a fully convolutional network (FCN) {cite:p}`long2015fcn` and feeds the resulting
# feature map $\boldsymbol{B} \in \mathbb{R}^{h' \times w' \times d}$ to the recurrent part at every
# step. For the leaves, the paper's text describes five convolutions, each followed by a
# ReLU: thirty $9\times9$ filters, then four layers of thirty $3\times3$ filters, producing a
# $106 \times 100 \times 30$ map from a $530 \times 500$ image. A $9\times9$ convolution alone
# cannot shrink 530 to 106, so it must have stride 5.
#
# The authors' released plant code does something slightly different: the first stage is a
# **fixed** bilinear anti-aliasing filter (9 × 9, stride 5, padding 2), i.e. a proper
# downsampling of the image with no learned weights, followed by the four learned $3\times3$
# layers. `ris_lite.FCN` offers both: `variant="downsample"` (default, the code) and
# `variant="learned"` (the text).
#
# A bilinear filter for stride $s$ is the outer product of a triangle of width $2s-1$:
#
# $$
# k_s(i, j) \propto (s - |i|)(s - |j|), \qquad |i|, |j| < s, \qquad \textstyle\sum_{i,j} k_s = 1.
# $$ (fcn-aa-kernel)

# %%
def triangle_kernel(s: int) -> torch.Tensor:
    r = torch.tensor([s - abs(i) for i in range(-(s - 1), s)], dtype=torch.float32)
    k = torch.outer(r, r)
    return k / k.sum()


k5 = triangle_kernel(5)
assert torch.allclose(k5, ris_lite.bilinear_kernel(5))
print("kernel for stride 5:", tuple(k5.shape), "sum", round(float(k5.sum()), 6))
plt.figure(figsize=(3, 3))
plt.imshow(k5, cmap="viridis")
plt.title("fixed 9x9 anti-aliasing kernel (stride 5)", fontsize=9)
plt.axis("off")
plt.show()

# %% [markdown]
# (fcn-output-size)=
# ## Output size
#
# A convolution with kernel $k$, stride $s$ and padding $p$ maps a side of $n$ pixels to
#
# $$
# n' = \left\lfloor \frac{n + 2p - k}{s} \right\rfloor + 1.
# $$ (fcn-out-size)
#
# With $k=9, s=5, p=2$: $530 \to 106$ and $500 \to 100$, the $106\times100$ grid of the paper.
# The four $3\times3$ layers have padding 1 and keep the size. Our benchmark images are already
# $106\times100$ (see the {doc}`data chapter <01_data>`), and we use stride 2 (kernel 3, padding 1), which gives
# a $53 \times 50$ grid.

# %%
def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


print("A1 frame, stride 5:", out_size(530, 9, 5, 2), "x", out_size(500, 9, 5, 2))
print("benchmark, stride 2:", out_size(106, 3, 2, 1), "x", out_size(100, 3, 2, 1))
assert ris_lite.FCN(stride=5).output_size(530, 500) == (106, 100)
assert ris_lite.FCN(stride=2).output_size(106, 100) == (53, 50)

# %% [markdown]
# (fcn-build)=
# ## Build it
#
# Here is the whole network in a few lines; the check compares it with `ris_lite.FCN`
# after copying the weights. `ris_lite.FCN` also centres the $[0, 1]$ pixels to a signed,
# unit-scale input and uses He initialisation, so the features that reach the ConvLSTM have
# a spread of order one (with PyTorch's default initialisation they shrink layer by layer,
# and the recurrent part then sees an almost constant input).

# %%
class TinyFCN(nn.Module):
    def __init__(self, stride=2, channels=30):
        super().__init__()
        self.stride = stride
        self.register_buffer("aa", triangle_kernel(stride).expand(3, 1, -1, -1).clone())
        self.convs = nn.ModuleList(nn.Conv2d(3 if i == 0 else channels, channels, 3, padding=1) for i in range(4))

    def forward(self, x):
        x = F.conv2d(x, self.aa, stride=self.stride, padding=self.stride // 2, groups=3)
        x = (x - 0.5) / 0.25
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


ours, ref = TinyFCN(), ris_lite.FCN(stride=2)
ref_convs = [m for m in ref.body if isinstance(m, nn.Conv2d)]
for a, b in zip(ours.convs, ref_convs):
    a.load_state_dict(b.state_dict())
x = torch.rand(2, 3, 106, 100)
assert torch.allclose(ours(x), ref(x), atol=1e-5)
print("TinyFCN == ris_lite.FCN:", tuple(ref(x).shape))

# %% [markdown]
# (fcn-receptive-field)=
# ## Receptive field
#
# One output cell sees a square of the input. The first stage sees $2s-1$ pixels (or 9 for the
# learned variant); each $3\times3$ layer after a stride-$s$ stage widens it by $2s$ input pixels:
#
# $$
# r = k_1 + 4 \cdot 2s.
# $$ (fcn-receptive-field)
#
# We can also *measure* it: the gradient of one output cell with respect to the input is
# non-zero exactly on its receptive field.

# %%
for variant, stride, dilations in [("downsample", 5, None), ("learned", 5, None), ("downsample", 2, None),
                                   ("downsample", 2, (1, 2, 4, 8))]:
    fcn = ris_lite.FCN(stride=stride, variant=variant, dilations=dilations)
    img = torch.rand(1, 3, 160, 160, requires_grad=True)
    out = fcn(img)
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = img.grad[0].abs().sum(0).sum(1).nonzero()
    measured = int(rows.max() - rows.min() + 1)
    print(f"{variant:10s} stride {stride} dilations {fcn.dilations}: "
          f"formula {fcn.receptive_field()} px, measured {measured} px")

# %% [markdown]
# On the benchmark (stride 2) one feature cell sees 19 × 19 pixels: a window a little wider
# than a median leaf ({numref}`section %s <data-procedural-rosette>` measures its area), so a cell sees its own leaf and
# the edges of its neighbours, not the plant around them. The ConvLSTM's own $3\times3$
# convolutions widen the view further at every step, but only by two cells per step for the
# two layers.
#
# That is too little for the *first* steps. To paint one whole leaf at step 1, every pixel of
# that leaf has to agree that it belongs to "the leaf chosen now" while seeing only a 19-pixel
# window: it cannot tell where it sits on the plant, so the early masks come out as pieces of
# two or three neighbouring leaves. A **dilated** convolution spreads its nine taps $\delta$
# cells apart, so the same cost covers a wider window; layer $i$ adds $2\delta_i s$ pixels:
#
# $$
# r = k_1 + 2s \textstyle\sum_{i=1}^{4} \delta_i.
# $$ (fcn-receptive-field-dilated)
#
# With $\delta = (1, 2, 4, 8)$ (`RIS(fcn_dilations=(1, 2, 4, 8))`, our change, not the paper's)
# one cell sees 63 pixels, most of a plant. In a controlled comparison
# (`python benchmarks/ablate_training.py --minutes 8`: the same seed, data and curriculum up to
# plants of 10–14 leaves, one CPU core per model for the same time, compared at equal
# {term}`training steps <step>`) the dilated FCN reached a higher mean {term}`matched soft IoU`
# than the paper's over the last window
# both arms reached, so the shipped model uses it. That run's table was not kept, so this page
# gives no numbers for it: the command makes it again in about ten minutes.
#
# The other obvious cure for "cannot tell where it sits" is to *tell* it: append each pixel's
# row and column to the image as two more input channels (CoordConv; `RIS(coords=True)`,
# `model.with_coordinates`). In the same comparison (`--arms dilated,dilated+coords`) it made
# learning much worse, the validation loss far above the dilated arm's at equal steps, so it
# stays off (again without a stored table). We have not measured why; finding out is
# exercise 4.
#
# (fcn-feature-maps-rosette)=
# ## Feature maps of a rosette
#
# The paper's Fig. 6 shows the FCN channels of a Pascal image. Here are the 30 channels of the
# shipped plant model (`load_pretrained`, trained in the {doc}`training chapter <06_training>`) on a test plant.
# Some channels light up on leaf blades, some on leaf edges and the gaps between leaves, some
# on soil and moss. Many channels are black almost everywhere. After the ReLU a channel is
# exactly zero wherever its filter's response is negative, and many channels fire on a small
# part of the plant only. The bar chart gives, for every channel, the share of pixels where it
# fires; below it are the input, the four channels that fire most and the four sparsest that
# still fire, each titled with its share. The cell counts the channels that fire on fewer than `0.05` of
# the pixels, those that are zero on every pixel, and of these the ones that stay zero on 16
# more test plants: *dead* units, which the ConvLSTM can read nothing from.

# %%
model = ris_lite.load_pretrained().to(device)
image, labels = ris_lite.make_rosette(ris_lite.SPLITS["test"][0] + 3)
with torch.no_grad():
    feats = model.fcn(image[None].to(device))[0].cpu()
print("features:", tuple(feats.shape))
active = (feats.flatten(1) > 0).float().mean(1)  # (30,) share of pixels where a channel fires
black = active == 0
with torch.no_grad():
    more = torch.stack([ris_lite.make_rosette(ris_lite.SPLITS["test"][0] + 10 + k)[0] for k in range(16)])
    dead = model.fcn(more.to(device)).cpu().amax((0, 2, 3)) == 0
print(f"channels firing on < 5 % of the pixels: {int((active < 0.05).sum())} of {feats.shape[0]}")
print(f"zero everywhere: {int(black.sum())}; zero on 16 more plants too (dead): {int((black & dead).sum())}")
fig, ax = plt.subplots(figsize=(10, 2.6))
ax.bar(range(feats.shape[0]), (100 * active).numpy(), color="tab:purple")
ax.plot(black.nonzero()[:, 0].numpy(), [0] * int(black.sum()), "x", color="k", ms=7)
ax.axhline(5, color="k", lw=0.8, ls="--")
ax.set_xlabel("FCN channel (x: zero on every pixel of this plant; dashed: 5 %)")
ax.set_ylabel("% of pixels firing")
ax.set_xticks(range(0, feats.shape[0], 2))
fig.tight_layout()
plt.show()

firing = [int(c) for c in torch.argsort(active, descending=True) if active[c] > 0]
shown = firing[:4] + firing[-4:]  # the four busiest channels, then the four sparsest that fire
fig, axes = plt.subplots(3, 3, figsize=(7.5, 8.2))
axes[0, 0].imshow(image.permute(1, 2, 0))
axes[0, 0].set_title("input", fontsize=11)
for ax, c in zip(axes.flat[1:], shown):
    ax.imshow(feats[c], cmap="magma")
    ax.set_title(f"ch {c}: fires on {active[c]:.1%}", fontsize=11)
for ax in axes.flat:
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * The paper's text and the authors' code describe two FCNs: a learned $9 \times 9$ stride-5
#   first layer, or a fixed bilinear anti-aliasing filter (eq. {eq}`fcn-aa-kernel`); `ris_lite.FCN` has both.
# * The output size and the receptive field (eq. {eq}`fcn-receptive-field`) follow from the stride and the kernels,
#   and the receptive field can be measured from the gradient of one output cell.
# * The features are computed once per image and read by the ConvLSTM at every step.
#
# ## Quick questions
#
# 1. Why can a $9 \times 9$ convolution bring 530 rows down to 106 only with stride 5?
# 2. What does the fixed anti-aliasing filter protect against when subsampling?
# 3. Dilations widen the receptive field; what do they cost in parameters?
#
# :::{dropdown} Answers
# 1. Without a stride a convolution keeps (or barely shrinks) the size; with stride $s$ the
#    output has about $H/s$ rows, and 530 / 5 = 106.
# 2. Aliasing: fine texture (moss, noise) folding into false low-frequency patterns.
# 3. Nothing: a dilated $3 \times 3$ filter still has nine weights per channel pair.
# :::
#
# ## Exercises
#
# 1. Train the `variant="learned"` FCN instead (`RIS(fcn_variant="learned")`) for the same
#    budget as the {doc}`training chapter <06_training>`. Does learning the first layer help at this data size?
# 2. With stride 5 on the A1 frame, what is the receptive field in *A1 pixels*, and how does it
#    compare with A1's median leaf area (`ris_lite.A1_STATS["leaf_area_median"]`, in pixels)?
# 3. Replace the fixed anti-aliasing filter by plain subsampling (`x[:, :, ::s, ::s]`). Show on a
#    rosette with fine moss texture why the filter matters (aliasing).
# 4. Why do coordinate channels hurt? Compare the first masks of `RIS(coords=True)` and
#    `RIS()` before training and after 300 steps, and try the coordinates scaled to $[-0.1, 0.1]$.
#
# :::{dropdown} Hints
# 1. `Trainer(TrainConfig(model=RISConfig(fcn_variant="learned").to_dict()), out)` trains it;
#    compare the logs' matched IoU at equal minutes.
#    2. Use eq. {eq}`fcn-receptive-field` with $s = 5$, then compare $r^2$ with that area. 3. Draw a fine checkerboard
#    into the background before subsampling. 4. Look at the masks of the first step: with
#    coordinates, position alone can decide the competition.
# :::
#
# ## What this chapter built in `ris_lite`
#
# `FCN` (with `output_size`, `receptive_field`, `downsample`) and `bilinear_kernel`
# (module `ris_lite.model.fcn`); `with_coordinates` (`ris_lite.model.ris`); `pick_device` (`ris_lite.device`); `load_pretrained`
# (`ris_lite.pretrained`).
#
# Their docstrings, with tensor shapes, are in the [API reference](api).
