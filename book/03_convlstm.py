# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The convolutional LSTM
#
# **What you will learn**
#
# * why RIS needs a recurrent unit whose state is an *image*, and how eq. {eq}`convlstm` (the paper's eq. 1) builds one;
# * how to write eq. {eq}`convlstm` literally, gate by gate with eight convolutions, and how the same
#   computation becomes one fused convolution (what `ris_lite` runs);
# * how to prove the two equal, outputs and gradients;
# * the initialisation of the paper, the authors' code's variant, and a figure of the gates
#   and of the state summary $\kappa(\boldsymbol{h}_t)$ over a few steps.

# %%
# Colab: install ris_lite from the repository (non-editable). Locally this does nothing.
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO}@main"], check=True)

# %%
import time

import matplotlib.pyplot as plt
import torch
from torch import nn

import ris_lite
from ris_lite.viz import magnitude

torch.manual_seed(0)
device = ris_lite.pick_device()

# %% [markdown]
# (convlstm-memory-shaped-like)=
# ## A memory shaped like the image
#
# RIS must remember *where* it has already found leaves. A plain LSTM {cite:p}`hochreiter1997lstm` keeps a vector; the
# convolutional LSTM {cite:p}`shi2015convlstm` keeps a whole feature map: $\boldsymbol{h}_t$ and $\boldsymbol{c}_t$ have $d$ channels on the $h' \times w'$ grid,
# and replaces every matrix product of the LSTM by a convolution, so each cell of the state
# talks only to its neighbours and the same small filters are used everywhere. With input
# $\boldsymbol{x}_t$ (for RIS: the FCN features $\boldsymbol{B}$, the same at every recurrent
# {term}`step`), the paper's eq. 1 reads
#
# $$
# \boldsymbol{i}_t &= \sigma(\boldsymbol{w}_{xi} * \boldsymbol{x}_t + \boldsymbol{w}_{hi} * \boldsymbol{h}_{t-1} + \boldsymbol{\beta}_i) \\
# \boldsymbol{f}_t &= \sigma(\boldsymbol{w}_{xf} * \boldsymbol{x}_t + \boldsymbol{w}_{hf} * \boldsymbol{h}_{t-1} + \boldsymbol{\beta}_f) \\
# \boldsymbol{o}_t &= \sigma(\boldsymbol{w}_{xo} * \boldsymbol{x}_t + \boldsymbol{w}_{ho} * \boldsymbol{h}_{t-1} + \boldsymbol{\beta}_o) \\
# \boldsymbol{g}_t &= \tanh(\boldsymbol{w}_{xg} * \boldsymbol{x}_t + \boldsymbol{w}_{hg} * \boldsymbol{h}_{t-1} + \boldsymbol{\beta}_g) \\
# \boldsymbol{c}_t &= \boldsymbol{f}_t \odot \boldsymbol{c}_{t-1} + \boldsymbol{i}_t \odot \boldsymbol{g}_t \\
# \boldsymbol{h}_t &= \boldsymbol{o}_t \odot \tanh(\boldsymbol{c}_t)
# $$ (convlstm)
#
# $*$ is a convolution with an $f\times f$ filter ($f=3$ for plants, $1$ for people), $\sigma$ the
# logistic sigmoid, and $\boldsymbol{\beta}_i, \boldsymbol{\beta}_f, \boldsymbol{\beta}_o, \boldsymbol{\beta}_g$ the gate biases (the paper writes them
# $\mathbf{b}_i, \dots$; we keep the letter $b$ for the inhibition threshold of the
# {doc}`next chapter <04_inhibition>`). The input gate $\boldsymbol{i}$ decides how much new content $\boldsymbol{g}$ enters the
# cell, the forget gate $\boldsymbol{f}$ how much of the old cell survives, the output gate $\boldsymbol{o}$
# how much of the cell is shown as $\boldsymbol{h}$.
#
# ```{figure} figures/convlstm.png
# :name: fig-convlstm
# :width: 95%
#
# One ConvLSTM cell, eq. {eq}`convlstm`, after the paper's Fig. 8: the four gates come from one
# convolution of the input and the previous hidden state; the cell state carries on to the next
# step, the hidden state to the next layer and step.
# ```
#
# (convlstm-line-by-line)=
# ## The gates, line by line
#
# Eight convolutions without bias and four bias vectors, exactly as written:

# %%
class ConvLSTMEq1(nn.Module):
    def __init__(self, cin, ch, f=3):
        super().__init__()
        conv = lambda c: nn.Conv2d(c, ch, f, padding=f // 2, bias=False)
        self.w_xi, self.w_hi, self.w_xf, self.w_hf = conv(cin), conv(ch), conv(cin), conv(ch)
        self.w_xo, self.w_ho, self.w_xg, self.w_hg = conv(cin), conv(ch), conv(cin), conv(ch)
        self.b_i, self.b_f, self.b_o, self.b_g = (nn.Parameter(torch.zeros(ch, 1, 1)) for _ in range(4))

    def forward(self, x, state):
        h, c = state
        i = torch.sigmoid(self.w_xi(x) + self.w_hi(h) + self.b_i)
        f = torch.sigmoid(self.w_xf(x) + self.w_hf(h) + self.b_f)
        o = torch.sigmoid(self.w_xo(x) + self.w_ho(h) + self.b_o)
        g = torch.tanh(self.w_xg(x) + self.w_hg(h) + self.b_g)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c


# %% [markdown]
# (convlstm-fused-convolution)=
# ## One fused convolution
#
# The eight filters can be stacked: a convolution over the concatenation $[\boldsymbol{x}_t, \boldsymbol{h}_{t-1}]$
# with $4d$ output channels computes all four gate pre-activations at once, then we split
# them in the order $(i, f, o, g)$. One call instead of eight means fewer passes over the
# input and less per-call overhead; how much that saves depends on the hardware (see the
# timing below). This is `ris_lite.ConvLSTMCell`. We copy our literal cell's weights into it and
# compare outputs **and** gradients:

# %%
cin, ch = 30, 30
literal = ConvLSTMEq1(cin, ch)
fused = ris_lite.ConvLSTMCell(cin, ch, 3)
with torch.no_grad():
    for k, gate in enumerate("ifog"):
        w = torch.cat([getattr(literal, f"w_x{gate}").weight, getattr(literal, f"w_h{gate}").weight], dim=1)
        fused.conv.weight[k * ch:(k + 1) * ch] = w
        fused.conv.bias[k * ch:(k + 1) * ch] = getattr(literal, f"b_{gate}").view(-1)

x = torch.randn(2, cin, 53, 50)
state = (torch.randn(2, ch, 53, 50), torch.randn(2, ch, 53, 50))
xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
ha, ca = literal(xa, state)
hb, cb = fused(xb, state)
(ha.sum() + (ca ** 2).sum()).backward()
(hb.sum() + (cb ** 2).sum()).backward()
print("max |h literal - h fused|:", magnitude((ha - hb).abs().max()), "(tolerance 1e-5)")
print("max |grad_x literal - grad_x fused|:", magnitude((xa.grad - xb.grad).abs().max()), "(tolerance 1e-4)")
assert torch.allclose(ha, hb, atol=1e-5) and torch.allclose(ca, cb, atol=1e-5)
assert torch.allclose(xa.grad, xb.grad, atol=1e-4)
gw = fused.conv.weight.grad
assert torch.allclose(literal.w_hg.weight.grad, gw[3 * ch:, cin:], rtol=1e-4, atol=1e-3)
assert torch.allclose(literal.w_xi.weight.grad, gw[:ch, :cin], rtol=1e-4, atol=1e-3)

# %% [markdown]
# `ris_lite.ConvLSTMCellEq1` is the same literal cell inside the package, with
# `load_from_fused` to copy weights across; the unit tests prove the equality for it too.
#
# **Is it faster?** A quick timing on the machine that runs this page (the benchmark in
# `benchmarks/` measures whole training steps; the numbers printed below are this machine's,
# not a stored result). On a 2-core CPU the two forms take about the same time, within the
# noise of a short timing (the ratio printed below moves to either side of one from run to
# run): there the arithmetic dominates and both do the same amount. On a GPU the
# one large convolution wins, because eight small kernel launches leave it idle. The speed-up
# that matters on a CPU is the next one: computing the input half of the gates once.

# %%
# NBVAL_IGNORE_OUTPUT
def per_call(fn, reps=10):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


with torch.no_grad():
    t_literal = per_call(lambda: literal(x, state))
    t_fused = per_call(lambda: fused(x, state))
print(f"eight convolutions: {1e3 * t_literal:.1f} ms, fused: {1e3 * t_fused:.1f} ms "
      f"({t_literal / t_fused:.1f}x) per step")

# %% [markdown]
# RIS also precomputes the input half of the gates: the first layer reads the same features
# $\boldsymbol{B}$ at every step, so $\boldsymbol{w}_{x\cdot} * \boldsymbol{B}$ is computed once per sequence
# (`ConvLSTMCell.project_input`) and each step only convolves $\boldsymbol{h}_{t-1}$ (`step`).
#
# (convlstm-initialisation)=
# ## Initialisation
#
# The paper draws every weight from $U(-0.08, 0.08)$ and sets the forget-gate bias
# $\boldsymbol{\beta}_f = 1$, so that at the start the cell keeps its memory and gradients reach
# earlier steps. The authors' released code also sets $\boldsymbol{\beta}_i$ and $\boldsymbol{\beta}_o$ to 1;
# `gate_bias=(1, 1, 1, 0)` selects that.

# %%
paper = ris_lite.ConvLSTMCell(30, 30, 3)
code = ris_lite.ConvLSTMCell(30, 30, 3, gate_bias=(1.0, 1.0, 1.0, 0.0))
for name, cell in [("paper", paper), ("authors' code", code)]:
    b = cell.conv.bias.view(4, -1)[:, 0].tolist()
    print(f"{name:14s} weights in [{cell.conv.weight.min():.3f}, {cell.conv.weight.max():.3f}], "
          f"biases (i, f, o, g) = {tuple(round(v, 1) for v in b)}")

# %% [markdown]
# (convlstm-layers-same-input)=
# ## Two layers, the same input at every step
#
# RIS stacks two ConvLSTM layers; the first reads $\boldsymbol{B}$, the second reads the first's
# $\boldsymbol{h}$, and the state of both starts at zero. The paper's Fig. 4 summarises the state by
#
# $$
# \kappa(\boldsymbol{h}_t)_{uv} = \textstyle\sum_{k=1}^{d} |h_{t,uvk}|,
# $$ (convlstm-kappa)
#
# the total activity of each cell of the grid. Below: the gates of the second layer (mean
# over channels) and $\kappa(\boldsymbol{h}_t)$ for the shipped model on a test plant.

# %%
model = ris_lite.load_pretrained().to(device)
image, labels = ris_lite.make_rosette(ris_lite.SPLITS["test"][0] + 1)
steps = 3
with torch.no_grad():
    _, _, stages = model(image[None].to(device), steps, return_stages=True)
    h_all, c_all = stages["h_layers"], stages["c_layers"]  # (B, T, layers, d, h', w')
    second = model.lstm.cells[1]
    rows = {"i": [], "f": [], "o": [], "kappa(h)": []}
    for t in range(steps):
        prev = (h_all[:, t - 1, 1], c_all[:, t - 1, 1]) if t > 0 else second.init_state(stages["features"])
        gates = second.gates(h_all[:, t, 0], prev)
        for g in "ifo":
            rows[g].append(gates[g][0].mean(0).cpu())
        rows["kappa(h)"].append(h_all[0, t, 1].abs().sum(0).cpu())

fig, axes = plt.subplots(4, steps + 1, figsize=(10, 9.4))
axes[0, 0].imshow(image.permute(1, 2, 0))
for r, (name, maps) in enumerate(rows.items()):
    axes[r, 1].set_ylabel(name, fontsize=12)
    for t, m in enumerate(maps):
        axes[r, t + 1].imshow(m, cmap="magma")
        if r == 0:
            axes[r, t + 1].set_title(f"t = {t + 1}", fontsize=12)
for ax in axes.flat:
    ax.set_xticks([]), ax.set_yticks([])
for ax in axes[1:, 0]:
    ax.set_visible(False)
fig.tight_layout()
plt.show()

# %% [markdown]
# The state changes from step to step around the leaves already produced: the memory is
# spatial, which is the point of the convolutional form.
#
# ## Summary
#
# * The ConvLSTM (eq. {eq}`convlstm`) keeps a memory shaped like the image: every product of an LSTM
#   becomes a convolution, so each cell of the state talks to its neighbours.
# * The four gates come from one convolution of the input and the hidden state; since RIS's
#   input never changes, the input half is computed once per sequence.
# * The forget gate starts open (bias 1) and the weights small, so early training neither
#   forgets everything nor saturates.
# * Two layers read the same FCN features at every step; the state is what lets each step
#   emit a different leaf.
#
# ## Quick questions
#
# 1. Which of the four gates decides how much of the old cell state survives a step?
# 2. Why can the input half of the gate convolution be computed once per sequence in RIS, but
#    not in a video model?
# 3. With $3 \times 3$ gates, how far can information travel across the state grid in one step?
#
# :::{dropdown} Answers
# 1. The forget gate $\boldsymbol{f}_t$.
# 2. RIS feeds the same features $\boldsymbol{x}$ at every step; a video changes its input each frame.
# 3. One cell in each direction per layer, so two cells per step with two layers.
# :::
#
# ## Exercises
#
# 1. Count the parameters of one ConvLSTM layer for $d = 30$, $f = 3$, by hand and with
#    `sum(p.numel() for p in cell.parameters())`.
# 2. Set the forget-gate bias to $-3$ and train for the budget of the {doc}`training chapter <06_training>`. What
#    happens to the later steps of the sequence?
# 3. Replace the $3\times3$ gates by $1\times1$ (the people model). How does the receptive
#    field of the state grow over the steps now?
# 4. Time `ConvLSTMCell.forward` against `project_input` + `step` for 20 steps; explain the
#    difference.
#
# :::{dropdown} Hints
# 1. One convolution from $d + d$ input to $4d$ output channels, plus $4d$ biases.
#    2. `gate_bias=(0, -3, 0, 0)`; watch the later steps' masks. 3. With $1 \times 1$ gates the
#    state only mixes through the FCN's receptive field. 4. `project_input` is the input half
#    of the convolution.
# :::
#
# ## What this chapter built in `ris_lite`
#
# `ConvLSTMCell` (`forward`, `project_input`, `step`, `gates`, `init_state`),
# `ConvLSTMCellEq1` (`load_from_fused`) and `ConvLSTM` (module `ris_lite.model.convlstm`).
#
# Their docstrings, with tensor shapes, are in the [API reference](api).
