# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The loss: soft IoU, matched by the Hungarian algorithm
#
# **What you will learn**
#
# * why a per-pixel loss cannot train a model that lists instances in its own order;
# * the relaxed IoU, its gradient, and why it needs an $\varepsilon$;
# * the bipartite matching of eqs. {eq}`match-max` (the paper's eq. 2)–{eq}`match-set` (the paper's eq. 4) on a worked example, solved by the Hungarian
#   algorithm, and the full loss of eq. {eq}`ris-loss` (the paper's eq. 5) with its stop-score term;
# * what the loss does when the sequence is shorter than, longer than, or without instances;
# * that autograd through the matched terms gives exactly the derivative of Algorithm 1;
# * a short experiment: the same network trained with the matched loss and with a fixed order,
#   on scenes whose order cannot be read from the image.

# %%
# Colab: install ris_lite from the repository (non-editable). Locally this does nothing.
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO}@main"], check=True)

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import ris_lite
from ris_lite.training.loss import soft_iou_grad
from ris_lite.viz import magnitude

_ = torch.manual_seed(0)

# %% [markdown]
# (loss-order-arbitrary-so)=
# ## Order is arbitrary, so the loss must not care
#
# Take a plant with two leaves and a perfect model that happens to output leaf 2 first and
# leaf 1 second. A per-pixel loss that compares prediction $t$ with annotation $t$ calls this a
# total failure, while a loss that first pairs each prediction with its best annotation
# calls it perfect:

# %%
leaf_a = torch.zeros(20, 20)
leaf_a[3:9, 3:12] = 1
leaf_b = torch.zeros(20, 20)
leaf_b[11:18, 6:16] = 1
truth = torch.stack([leaf_a, leaf_b])
pred = torch.stack([leaf_b, leaf_a])  # right masks, other order
bce_in_order = torch.nn.functional.binary_cross_entropy(pred.clamp(1e-4, 1 - 1e-4), truth).item()
print(f"per-pixel BCE, same order: {bce_in_order:.2f} (bad)")
print(f"soft IoU of the swapped pairs: {ris_lite.soft_iou(pred, truth.flip(0)).tolist()} (perfect)")

# %% [markdown]
# (loss-relaxed-iou)=
# ## The relaxed IoU
#
# For a predicted mask $\hat{\boldsymbol{y}} \in [0,1]^{hw}$ and a true mask $\boldsymbol{y} \in \{0,1\}^{hw}$,
#
# $$
# f_{\mathrm{IoU}}(\hat{\boldsymbol{y}}, \boldsymbol{y}) =
# \frac{\langle \hat{\boldsymbol{y}}, \boldsymbol{y}\rangle}{\|\hat{\boldsymbol{y}}\|_1 + \|\boldsymbol{y}\|_1 - \langle \hat{\boldsymbol{y}}, \boldsymbol{y}\rangle + \varepsilon}.
# $$ (iou-relaxed)
#
# On binary masks it is the usual intersection over union; on soft masks it is smooth. Two
# empty masks would give $0/0$; a NaN that reaches `scipy.optimize.linear_sum_assignment`
# makes it fail with "cost matrix is infeasible", a known trap of DETR-style code, so
# $\varepsilon = 10^{-6}$ sits in the denominator. With $I = \langle\hat{\boldsymbol{y}},\boldsymbol{y}\rangle$
# and $U$ the denominator, its gradient is
#
# $$
# \frac{\partial f_{\mathrm{IoU}}}{\partial \hat{y}_u} = \frac{y_u\,U - I\,(1 - y_u)}{U^2},
# $$ (iou-gradient)
#
# positive on the true mask and negative outside it. Autograd agrees:

# %%
p = torch.rand(20, 20, requires_grad=True)
ris_lite.soft_iou(p, truth[0]).backward()
assert torch.allclose(p.grad, soft_iou_grad(p.detach(), truth[0]), atol=1e-7)
print("max |autograd - the formula above|:", magnitude(p.grad - soft_iou_grad(p.detach(), truth[0])), "(tolerance 1e-7)")
print("two empty masks:", ris_lite.soft_iou(torch.zeros(5, 5), torch.zeros(5, 5)).item())

# %% [markdown]
# (loss-matching-predictions-instances)=
# ## Matching predictions to instances
#
# With $\hat{n}$ predictions and $n$ instances, a matching is a 0/1 matrix $\delta$ that pairs
# each prediction with at most one instance and each instance with at most one prediction (the
# paper's eq. 4):
#
# $$
# \mathcal{S} = \Bigl\{ \delta \in \{0,1\}^{\hat n \times n} :\ \textstyle\sum_{t} \delta_{\hat t, t} \le 1 \ \forall \hat t,
# \ \ \sum_{\hat t} \delta_{\hat t, t} \le 1 \ \forall t \Bigr\}.
# $$ (match-set)
#
# A matching is scored by the relaxed IoU {eq}`iou-relaxed` of the pairs it makes (the paper's eq. 3),
#
# $$
# f_{\mathrm{Match}}(\hat{\boldsymbol{Y}}, \boldsymbol{Y}, \delta) = \sum_{\hat t = 1}^{\min(\hat n, n)} \sum_{t=1}^{n}
# f_{\mathrm{IoU}}(\hat{\boldsymbol{Y}}_{\hat t}, \boldsymbol{Y}_t)\, \delta_{\hat t, t},
# $$ (match)
#
# and RIS keeps the best one (the paper's eq. 2):
#
# $$
# \max_{\delta \in \mathcal{S}} f_{\mathrm{Match}}(\hat{\boldsymbol{Y}}, \boldsymbol{Y}, \delta).
# $$ (match-max)
#
# Only the first $\min(\hat n, n)$ predictions take part. Trying all assignments costs $n!$;
# the Hungarian algorithm {cite:p}`kuhn1955hungarian` solves eq. {eq}`match-max` in $O(n^3)$. A worked example with three instances and
# four predictions, the cost matrix drawn:

# %%
g = torch.Generator().manual_seed(1)
truth3 = torch.zeros(3, 12, 12)
truth3[0, 1:5, 1:6] = 1
truth3[1, 6:11, 2:7] = 1
truth3[2, 3:9, 8:11] = 1
preds4 = (truth3[[2, 0, 1, 0]] * 0.8 + 0.2 * torch.rand(4, 12, 12, generator=g)).clamp(0, 1)
iou = ris_lite.pairwise_soft_iou(preds4[None], truth3[None])[0]
rows, cols = linear_sum_assignment(iou[:3].numpy(), maximize=True)
brute = max(itertools.permutations(range(3)), key=lambda perm: sum(iou[t, perm[t]] for t in range(3)))
print("Hungarian:", list(zip(rows.tolist(), cols.tolist())), "| brute force:", list(enumerate(brute)))
assert tuple(cols) == brute

fig, ax = plt.subplots(figsize=(3.8, 3.4))
ax.imshow(iou.numpy(), cmap="Greens", vmin=0, vmax=1)
for (t, k), v in np.ndenumerate(iou.numpy()):
    ax.text(k, t, f"{v:.2f}", ha="center", va="center", fontsize=9,
            fontweight="bold" if (t < 3 and cols[t] == k) else "normal")
ax.set_xlabel("instance t")
ax.set_ylabel("prediction (step)")
ax.set_title("soft IoU; bold = matched", fontsize=9)
ax.axhline(2.5, color="red", lw=1)
plt.tight_layout()
plt.show()

# %% [markdown]
# The fourth prediction (below the red line) is ignored by the IoU term: $n = 3$.
#
# (loss-full)=
# ## The full loss, with the stop score
#
# The score term asks $s_t = 1$ while $t \le n$ and $s_t = 0$ after; with it the loss is the paper's eq. 5:
#
# $$
# \ell(\hat{\boldsymbol{Y}}, \boldsymbol{s}, \boldsymbol{Y}) = \min_{\delta \in \mathcal{S}}
# -\sum_{\hat t} \sum_{t} f_{\mathrm{IoU}}(\hat{\boldsymbol{Y}}_{\hat t}, \boldsymbol{Y}_t)\,\delta_{\hat t,t}
# + \lambda \sum_{t=1}^{\hat n} f_{\mathrm{BCE}}\big([t \le n], s_t\big),
# $$ (ris-loss)
#
# with $\lambda = 1$. `ris_lite.ris_loss` computes it for a whole batch the way DETR's matcher
# does: one `(B, T, N)` IoU tensor on the model's device (padded instances masked by the
# counts), one copy of the small matrices to the CPU, one assignment per image, and the
# matched IoUs gathered back on the device, so autograd differentiates the branch of the
# minimum that was chosen. Our own ten-line version for one image:

# %%
def loss_one_image(masks, scores, truth, lam=1.0):
    T, n = masks.shape[0], truth.shape[0]
    k = min(T, n)
    iou = ris_lite.soft_iou(masks[:k, None], truth[None])  # (k, n)
    r, c = linear_sum_assignment(iou.detach().numpy(), maximize=True)
    target = (torch.arange(T) < n).float()
    bce = torch.nn.functional.binary_cross_entropy(scores, target, reduction="sum")
    return -iou[r, c].sum() + lam * bce


scores4 = torch.tensor([0.9, 0.8, 0.7, 0.4])
ours = loss_one_image(preds4, scores4, truth3)
pkg = ris_lite.ris_loss(preds4[None], scores4[None], truth3[None].bool(), torch.tensor([3]))
print(f"ours {ours.item():.4f} | ris_lite {pkg.item():.4f}")
assert torch.allclose(ours, pkg, atol=1e-5)

# %% [markdown]
# (loss-cases-that-matter)=
# ## The cases that matter during training
#
# * **$T < n$** (early curriculum: 2 steps on a 4-leaf plant): the $T$ predictions are matched
#   to the best $T$ of the $n$ instances, and every score target is 1.
# * **$T = n + 2$** (the paper's training length): $n$ predictions are matched, the last two
#   only learn to say "stop".
# * **$n = 0$**: no IoU term at all; all score targets are 0.

# %%
def describe(T, n):
    masks = torch.rand(1, T, 12, 12, generator=g)
    scores = torch.full((1, T), 0.5)
    truth = truth3[:max(n, 1)][None].bool() if n else torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    loss, parts = ris_lite.ris_loss(masks, scores, truth, torch.tensor([n]), return_parts=True)
    r, c = parts["matches"][0]
    targets = (torch.arange(T) < n).int().tolist()
    print(f"T={T}, n={n}: matched steps {r.tolist()} -> instances {c.tolist()}, "
          f"score targets {targets}, loss {loss.item():.3f}")


describe(2, 3)
describe(5, 3)
describe(3, 0)

# %% [markdown]
# (loss-autograd-equals-algorithm)=
# ## Autograd equals Algorithm 1
#
# The paper's Algorithm 1 writes the backward pass by hand: for each matched pair the
# gradient of $-f_{\mathrm{IoU}}$, for each score $\lambda f'_{\mathrm{BCE}}$, nothing for unmatched
# masks. We take autograd's gradient of `ris_loss` and rebuild Algorithm 1's from {eq}`iou-gradient`:

# %%
masks = torch.rand(1, 4, 12, 12, generator=g, requires_grad=True)
scores = torch.rand(1, 4, generator=g).clamp(0.1, 0.9).requires_grad_()
loss, parts = ris_lite.ris_loss(masks, scores, truth3[None].bool(), torch.tensor([3]), return_parts=True)
loss.backward()

algo_masks = torch.zeros_like(masks)
for t, k in zip(*parts["matches"][0]):
    algo_masks[0, t] = -soft_iou_grad(masks[0, t].detach(), truth3[k])
y = (torch.arange(4) < 3).float()
s = scores.detach()[0]
algo_scores = -(y / s - (1 - y) / (1 - s))
assert torch.allclose(masks.grad, algo_masks, atol=1e-7)
assert torch.allclose(scores.grad[0], algo_scores, atol=1e-5)
print("max |autograd - Algorithm 1|, masks:", magnitude(masks.grad - algo_masks), "(tolerance 1e-7)")
print("max |autograd - Algorithm 1|, scores:", magnitude(scores.grad[0] - algo_scores), "(tolerance 1e-5)")

# %% [markdown]
# (loss-why-matching-matters)=
# ## Why the matching matters: a fixed order punishes correct answers
#
# The control, `ris_lite.fixed_order_loss`, sorts the instances by area (largest first) and
# compares step $t$ with instance $t$, a reasonable-looking order that a network could in
# principle learn. First the point in its purest form: give both losses the **perfect**
# segmentation of a plant, emitted in some other order than by area.

# %%
from ris_lite.training.loss import fixed_order_loss, pairwise_soft_iou

img, lab = ris_lite.make_rosette(3, n_leaves=(4, 4))
truth = ris_lite.labels_to_masks(lab)  # (4, H, W), in the generator's order
n = truth.shape[0]
areas = truth.flatten(1).sum(1)
by_area = torch.argsort(areas, descending=True)
orders = {"by area (the control's order)": by_area, "reversed": by_area.flip(0),
          "the generator's": torch.arange(n)}
counts = torch.tensor([n])
rows = []
for name, order in orders.items():
    masks = truth[order].float().unsqueeze(0)  # perfect masks, emitted in this order
    scores = torch.ones(1, n).clamp(max=1 - 1e-6)
    rows.append((name, float(ris_lite.ris_loss(masks, scores, truth[None], counts)),
                 float(fixed_order_loss(masks, scores, truth[None], counts))))
for name, hung, fixed in rows:
    print(f"{name:30s} RIS loss {hung:6.2f} | fixed order {fixed:6.2f}")
assert all(abs(r[1] - rows[0][1]) < 1e-4 for r in rows)  # the RIS loss: every order is perfect
assert rows[1][2] > rows[0][2] + 1.0  # fixed order: the same answer, reordered, costs > 1 IoU

# %% [markdown]
# Eq. {eq}`ris-loss` gives the same (best possible, $-n$) value to every order; the fixed order gives the
# reversed segmentation a loss more than one whole IoU worse, although every leaf is perfect.
# Its gradient would push a network to *change correct masks* merely to match a ranking it
# cannot see reliably: two leaves of almost the same area swap ranks under a small change of
# the image.
#
# The same effect in training, where it matters most: when nothing in the image says which
# instance comes first. Each scene below holds two squares of the same size at random places,
# annotated in a random order, so the control's area order is a coin toss. A small network
# (five dilated convolutions with coordinate channels, two output maps standing for RIS's two
# steps; RIS itself needs longer than a page can spend to learn) is trained twice, same seed,
# same scenes, 300 Adam steps, once with each loss. Both are then scored the same way,
# **one-to-one**: the thresholded masks are matched to the squares by the Hungarian algorithm,
# so a square counts once however many steps painted it.

# %%
# NBVAL_IGNORE_OUTPUT
# (300 training steps: the IoUs move in the second decimal with the CPU and its thread count;
# the assert below is the check, and its bars are far from both results)
SIDE = 24


def two_squares(generator, size=6):
    """An image (3, 24, 24) and two (2, 24, 24) masks of equal squares, in a random order."""
    masks = torch.zeros(2, SIDE, SIDE)
    placed = 0
    while placed < 2:
        y, x = torch.randint(0, SIDE - size + 1, (2,), generator=generator).tolist()
        if masks[:, max(0, y - 1):y + size + 1, max(0, x - 1):x + size + 1].any():
            continue  # keep the squares apart
        masks[placed, y:y + size, x:x + size] = 1
        placed += 1
    return masks.sum(0, keepdim=True).repeat(3, 1, 1) * 0.8 + 0.1, masks


def scenes(generator, count):
    images, masks = zip(*[two_squares(generator) for _ in range(count)])
    return torch.stack(images), torch.stack(masks)


class TwoStepNet(torch.nn.Module):
    """images (B, 3, H, W) -> two soft masks (B, 2, H, W), one per "step"."""

    def __init__(self, width=32):
        super().__init__()
        layers, cin = [], 5
        for d in (1, 2, 4, 8, 1):
            layers += [torch.nn.Conv2d(cin, width, 3, padding=d, dilation=d), torch.nn.ReLU()]
            cin = width
        self.body, self.head = torch.nn.Sequential(*layers), torch.nn.Conv2d(width, 2, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        x = torch.cat([x, yy.expand(b, 1, h, w), xx.expand(b, 1, h, w)], 1)
        return torch.sigmoid(self.head(self.body(x)))


def one_to_one_iou(pred, truth):
    """Mean IoU of thresholded masks matched one-to-one to the truth; pred, truth (B, 2, H, W)."""
    iou = pairwise_soft_iou((pred > 0.5).float(), truth)  # (B, 2, 2)
    pairs = ris_lite.match(iou, counts=[truth.shape[1]] * len(truth))
    return float(np.mean([iou[b, rows_, cols].mean() for b, (rows_, cols) in enumerate(pairs)]))


def train_two_step(loss_fn, steps=300, batch=16):
    torch.manual_seed(0)
    net = TwoStepNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    pick = torch.Generator().manual_seed(0)
    scores, counts = torch.full((batch, 2), 1 - 1e-6), torch.full((batch,), 2)
    for _ in range(steps):
        images, masks = scenes(pick, batch)
        loss = loss_fn(net(images), scores, masks, counts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


nets = {"Hungarian (RIS)": train_two_step(ris_lite.ris_loss), "fixed order": train_two_step(fixed_order_loss)}
test_images, test_masks = scenes(torch.Generator().manual_seed(1), 64)
with torch.no_grad():
    outputs = {name: net(test_images) for name, net in nets.items()}
result = {name: one_to_one_iou(out, test_masks) for name, out in outputs.items()}
both = {name: float(((out[:, 0] > 0.5) & (out[:, 1] > 0.5)).flatten(1).sum(1).gt(18).float().mean())
        for name, out in outputs.items()}  # 18 px: half a square painted by both steps
for name in nets:
    print(f"{name:16s} one-to-one IoU on 64 new scenes {result[name]:.2f}; "
          f"scenes where both steps paint the same square: {both[name]:.0%}")
assert result["Hungarian (RIS)"] > 0.85 and result["fixed order"] < 0.65

fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
for r, (name, out) in enumerate(outputs.items()):
    for k in range(2):
        axes[r, 2 * k].imshow(out[k, 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 2 * k + 1].imshow(out[k, 1], cmap="gray", vmin=0, vmax=1)
        axes[r, 2 * k].set_title(f"{name.split()[0]}: scene {k + 1}, step 1", fontsize=10)
        axes[r, 2 * k + 1].set_title("step 2", fontsize=10)
for ax in axes.flat:
    ax.set_axis_off()
fig.suptitle("one-to-one IoU on 64 new scenes: "
             + ", ".join(f"{name} {result[name]:.2f}" for name in outputs), fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# Trained with the matching, the network settles on its own rule for which square comes first
# and paints one square per step. Trained with a fixed order, it is told "this square" and
# "that one" at random for the same kind of picture, so the best it can do for either step is
# a half-hearted paint of both squares: thresholded, each step covers both, and one-to-one
# only one of the two steps can count. That is the failure the matching removes, and the one a
# fixed order would build into RIS on plants whose ranking the network cannot read.

# %% [markdown]
# ## Summary
#
# * The order in which RIS lists the instances is arbitrary, so the loss matches predictions to
#   instances first (the Hungarian algorithm) and then scores the matched pairs.
# * The relaxed IoU (eq. {eq}`iou-relaxed`, inside eq. {eq}`match`, the paper's eq. 3) works on soft masks and has a gradient everywhere; eq. {eq}`ris-loss` adds a
#   stop term on the scores; autograd gives the gradients of Algorithm 1.
# * A fixed order punishes correct answers given in another order; the matching removes that.
#
# ## Quick questions
#
# 1. Why is the matching not differentiated through?
# 2. What does the soft IoU of a binary (0/1) mask with itself equal, and of two disjoint masks?
# 3. How does eq. {eq}`ris-loss` teach the model to stop?
#
# :::{dropdown} Answers
# 1. It is a discrete choice; for a fixed matching the loss is differentiable, and the matching
#    is recomputed at every step.
# 2. 1 (when the mask is not empty) and 0. A soft mask scores below 1 even against itself,
#    which is one more push towards confident masks.
# 3. Its score term asks $s_t$ to be high for the first $n$ steps and low after them.
# :::
#
# ## Exercises
#
# 1. Time `ris_loss` against the per-image reference `ris_lite.training.loss.per_image_loss` for a
#    batch of 16 at $T = 22$. Where does the time go? (`benchmarks/bench_loss_share.py` measures
#    the loss's share of a training step.)
# 2. Replace $f_{\mathrm{IoU}}$ by the mean per-pixel log-likelihood of the matched pair (the
#    paper's authors tried it). Does the matching still make sense? Why might IoU be better for
#    small leaves?
# 3. Prove that eq. {eq}`ris-loss` is invariant to permuting the instances, then check it with
#    `hypothesis` (see `tests/test_loss.py`).
# 4. What happens to eq. {eq}`ris-loss` if the same prediction is allowed to match two instances? Build a
#    case where that "loss" is lower for a worse segmentation.
# 5. Give the squares of the two-square scenes different sizes (say 5 and 7 pixels). The area
#    order is now readable from the image: does the fixed order catch up with the matching?
#
# :::{dropdown} Hints
# 1. Profile with `torch.profiler` or time the Hungarian call alone. 2. The log-likelihood
#    averages over pixels, so a small leaf weighs little. 3. A permutation of the targets permutes
#    the cost matrix's columns, and the optimal matching with it. 4. Let two predictions match
#    the largest leaf. 5. `experiment(name, steps=600)` for both names of {numref}`section %s <loss-why-matching-matters>`; record the
#    result every 100 steps.
# :::
#
# ## What this chapter built in `ris_lite`
#
# `soft_iou`, `pairwise_soft_iou`, `match`, `ris_loss`, `fixed_order_loss` and
# `loss.soft_iou_grad`, `loss.per_image_loss` (module `ris_lite.training.loss`).
#
# Their docstrings, with tensor shapes, are in the [API reference](api).
