"""Draw the book's block diagrams (after the paper's Figs. 1, 2 and 8) into ``book/figures/``.

    python book/figures/make_diagrams.py

Plain matplotlib boxes and arrows, so the figures are reproducible and need no drawing tool.
The introduction and the chapters on the ConvLSTM, the inhibition and inference show them.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent
COLOURS = {"data": "#dbe9f6", "fcn": "#fde2c4", "lstm": "#d5f0d5", "head": "#f6d5e5", "op": "#eeeeee"}


def box(ax, x, y, w, h, text, kind="op", size=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                fc=COLOURS[kind], ec="#444444", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def arrow(ax, a, b, text=None, style="-|>", ls="-", colour="#333333"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=11, lw=1.1, color=colour, ls=ls))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, ha="center", fontsize=7.5, color="#333333")


def canvas(w, h):
    fig, ax = plt.subplots(figsize=(w, h))
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.set_axis_off()
    return fig, ax


def pipeline():
    """Fig. 1: the FCN once, the ConvLSTM unrolled, two heads per step."""
    fig, ax = canvas(10, 4.2)
    box(ax, 0.8, 2.1, 1.2, 0.8, "image\n$I$", "data")
    box(ax, 2.4, 2.1, 1.2, 0.8, "FCN\n(once)", "fcn")
    arrow(ax, (1.4, 2.1), (1.8, 2.1))
    xs = [4.4, 6.6, 8.8]
    # the features x reach every step along one line below the boxes
    ax.plot([2.4, 2.4, xs[-1]], [1.7, 1.15, 1.15], color="#999999", lw=1.1)
    ax.text(3.0, 0.85, "features $x$: the same at every step", fontsize=7.5, color="#666666")
    for k, x in enumerate(xs):
        t = ["1", "2", "T"][k]
        box(ax, x, 2.1, 1.4, 0.9, f"ConvLSTM ×2\nstep {t}", "lstm")
        box(ax, x - 0.45, 3.55, 1.0, 0.6, f"mask $\\hat Y_{t}$", "head", 8)
        box(ax, x + 0.55, 3.55, 0.8, 0.6, f"$s_{t}$", "head", 8)
        arrow(ax, (x - 0.2, 2.55), (x - 0.45, 3.25))
        arrow(ax, (x + 0.2, 2.55), (x + 0.55, 3.25))
        arrow(ax, (x, 1.15), (x, 1.65), colour="#999999")
    arrow(ax, (xs[0] + 0.7, 2.25), (xs[1] - 0.7, 2.25), "$h_1, c_1$")
    arrow(ax, (xs[1] + 0.7, 2.25), (xs[2] - 0.7, 2.25), "…")
    ax.text(5.6, 0.3, "stop at the first step with $s_t < 1/2$; a pixel goes to the first mask above 1/2",
            ha="center", fontsize=8.5)
    ax.text(6.6, 4.1, "spatial inhibition and stop score on each top state $h_t$", ha="center", fontsize=8,
            color="#666666")
    return fig


def inhibition():
    """Fig. 2: the two heads on the top ConvLSTM state."""
    fig, ax = canvas(10, 3.4)
    box(ax, 0.9, 1.7, 1.3, 0.9, "$h_t$\n$(d, h', w')$", "lstm")
    steps = [(2.8, "1×1 conv\n$w_m * h_t$"), (4.7, "log-softmax\nover all cells"), (6.5, "$+\\,b$"),
             (7.9, "sigmoid"), (9.2, "$\\hat Y_t$")]
    prev = (1.55, 2.35)
    for x, text in steps:
        kind = "head" if x > 9 else "op"
        box(ax, x, 2.6, 1.4 if x < 6 else 1.0, 0.8, text, kind, 8.5)
        arrow(ax, prev, (x - (0.7 if x < 6 else 0.5), 2.6))
        prev = (x + (0.7 if x < 6 else 0.5), 2.6)
    prev = (1.55, 1.05)
    for x, text in [(2.8, "max-pool\nover cells"), (4.7, "linear\n$w_s^\\top\\cdot + c_s$"), (6.5, "sigmoid"),
                    (7.9, "$s_t$")]:
        box(ax, x, 0.8, 1.4 if x < 6 else 1.0, 0.8, text, "head" if x > 7 else "op", 8.5)
        arrow(ax, prev, (x - (0.7 if x < 6 else 0.5), 0.8))
        prev = (x + (0.7 if x < 6 else 0.5), 0.8)
    ax.text(4.7, 3.25, "cells compete for one unit of probability: one instance wins", ha="center", fontsize=8,
            color="#666666")
    ax.text(5.5, 0.15, "go on while $s_t \\geq 1/2$", ha="center", fontsize=8, color="#666666")
    return fig


def convlstm():
    """Fig. 8: one ConvLSTM cell, eq. (1), with the four gates from one convolution."""
    fig, ax = canvas(10, 4)
    box(ax, 0.9, 3.0, 1.2, 0.7, "$x_t$", "data")
    box(ax, 0.9, 1.9, 1.2, 0.7, "$h_{t-1}$", "lstm")
    box(ax, 0.9, 0.7, 1.2, 0.7, "$c_{t-1}$", "lstm")
    box(ax, 2.9, 2.45, 1.5, 1.0, "3×3 conv of\n$[x_t, h_{t-1}]$", "op")
    arrow(ax, (1.5, 3.0), (2.15, 2.6))
    arrow(ax, (1.5, 1.9), (2.15, 2.3))
    gates = [("$i_t = \\sigma$", 3.5), ("$f_t = \\sigma$", 2.75), ("$o_t = \\sigma$", 2.0), ("$g_t = \\tanh$", 1.25)]
    for text, y in gates:
        box(ax, 5.0, y, 1.3, 0.55, text, "lstm", 8.5)
        arrow(ax, (3.65, 2.45), (4.35, y))
    box(ax, 7.3, 0.7, 2.4, 0.7, "$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$", "lstm", 8.5)
    box(ax, 7.3, 2.6, 2.2, 0.7, "$h_t = o_t \\odot \\tanh(c_t)$", "lstm", 8.5)
    arrow(ax, (1.5, 0.7), (6.1, 0.7))
    arrow(ax, (5.65, 1.25), (6.6, 1.0))
    arrow(ax, (5.65, 3.5), (6.4, 1.05))
    arrow(ax, (5.65, 2.75), (6.3, 1.0))
    arrow(ax, (5.65, 2.0), (6.2, 2.5))
    arrow(ax, (7.3, 1.05), (7.3, 2.25))
    arrow(ax, (8.4, 2.6), (9.9, 2.6), "to the next layer\nand step")
    arrow(ax, (8.5, 0.7), (9.9, 0.7), "next step")
    ax.text(2.9, 3.5, "one convolution, $4d$ output channels", ha="center", fontsize=7.5, color="#666666")
    return fig


def main() -> None:
    for name, draw in (("pipeline", pipeline), ("inhibition", inhibition), ("convlstm", convlstm)):
        fig = draw()
        fig.savefig(OUT / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)


if __name__ == "__main__":
    main()
