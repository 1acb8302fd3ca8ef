"""Figures: label maps in colour, overlays, galleries, the step-by-step strip (Figs. 4, 7);
``magnitude``, how the book prints a small difference so that it reads the same on every
machine; and ``glue``, how a chapter hands a measured number to its prose.

Used by every chapter of the book; introduced in ``book/01_data`` (label maps in colour) and
``book/04_inhibition`` (the step-by-step strip).
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

#: hues (as fractions of the colour circle) that an overlay never uses: yellow-green to
#: green-cyan, the colours of the leaves themselves, so a painted leaf never looks unpainted
GREEN_HUES = (0.17, 0.47)


def palette_offset(seed: int = 3) -> float:
    """Where on the hue circle :func:`palette` starts (the book's page script computes the
    same colours from it)."""
    return float(np.random.default_rng(seed).uniform())


def palette(n: int, seed: int = 3) -> list:
    """``n`` distinct bright colours (RGB tuples), the same for the same n, none of them green."""
    lo, hi = GREEN_HUES
    spread = (np.arange(n) * 0.61803398875 + palette_offset(seed)) % 1.0
    hues = (hi + spread * (1.0 - (hi - lo))) % 1.0  # the circle without the green arc
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.75, 0.95)) for h in hues]


def label_rgb(labels) -> np.ndarray:
    """``(H, W)`` int labels -> ``(H, W, 3)`` uint8, background black."""
    lab = torch.as_tensor(labels).cpu().numpy()
    out = np.zeros(lab.shape + (3,), np.uint8)
    ids = [i for i in np.unique(lab) if i > 0]
    for colour, i in zip(palette(max(len(ids), 1)), ids):
        out[lab == i] = colour
    return out


def overlay(image: torch.Tensor, labels, alpha: float = 0.55) -> np.ndarray:
    """Image ``(3,H,W)`` in [0,1] with instances drawn on it -> ``(H, W, 3)`` uint8."""
    image = torch.as_tensor(image)
    lab = torch.as_tensor(labels)
    img8 = (image.clamp(0, 1) * 255).to(torch.uint8).cpu()
    ids = [int(i) for i in torch.unique(lab) if i > 0]
    if not ids:
        return img8.permute(1, 2, 0).numpy()
    out = img8.permute(1, 2, 0).numpy().astype(np.float32)
    lab = lab.cpu().numpy()
    for colour, i in zip(palette(len(ids)), ids):
        m = lab == i
        out[m] = (1 - alpha) * out[m] + alpha * np.asarray(colour, np.float32)
    return out.round().astype(np.uint8)


def save_overlay(image, labels, path: str | Path) -> Path:
    """Write :func:`overlay` to a PNG file."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, labels)).save(path)
    return path


def show_row(images: Sequence, titles: Optional[Sequence[str]] = None, size: float = 2.4, cmap=None):
    """One matplotlib row of images (tensors (3,H,W)/(H,W) or arrays (H,W[,3]))."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size * 1.1), squeeze=False)
    for k, (ax, im) in enumerate(zip(axes[0], images)):
        a = im.detach().cpu().numpy() if torch.is_tensor(im) else np.asarray(im)
        if a.ndim == 3 and a.shape[0] in (1, 3):
            a = a.transpose(1, 2, 0)
        ax.imshow(a, cmap=cmap, interpolation="nearest")
        ax.set_axis_off()
        if titles:
            ax.set_title(titles[k], fontsize=9)
    fig.tight_layout()
    return fig


def sequence_strip(stages: dict, masks: torch.Tensor, scores: torch.Tensor, image_index: int = 0,
                   steps: Optional[int] = None, per_row: int = 4):
    """The paper's Fig. 4 / Fig. 7 for one image: rows kappa(h_t), Conv(h_t), log-softmax + b,
    Y_t, one column per step with s_t in its title. ``stages`` from ``RIS.forward(return_stages=True)``.

    At most ``per_row`` steps stand side by side; later steps continue in another block of the
    four rows below, so the figure stays about as wide as the book's column (10 inches) and
    is not shrunk to an unreadable size.
    """
    import matplotlib.pyplot as plt

    T = masks.shape[1] if steps is None else steps
    kappa = stages["h"][image_index].abs().sum(1)  # (T, h', w')
    rows = [("kappa(h_t)", kappa), ("Conv(h_t)", stages["conv"][image_index].clamp(min=0)),
            ("log-softmax + b", stages["log_softmax_b"][image_index].clamp(min=0)), ("Y_t", masks[image_index])]
    blocks, columns = -(-T // per_row), min(T, per_row)
    fig, axes = plt.subplots(len(rows) * blocks, columns, figsize=(2.4 * columns, 2.1 * len(rows) * blocks),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)  # a last block with fewer steps leaves its right columns empty
    for t in range(T):
        block, column = divmod(t, per_row)
        for r, (name, data) in enumerate(rows):
            ax = axes[block * len(rows) + r, column]
            ax.set_visible(True)
            ax.imshow(data[t].detach().cpu().numpy(), cmap="magma" if r < 3 else "gray",
                      vmin=0, vmax=1 if r == 3 else None, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(name, fontsize=10)
            if r == 0:
                ax.set_title(f"t={t + 1}  s={float(scores[image_index, t].detach()):.2f}", fontsize=10)
    fig.tight_layout()
    return fig


def magnitude(x) -> str:
    """The largest absolute value of ``x`` and the power of ten above it: ``"3.2e-07 (< 1e-06)"``.

    What a check should print instead of a bare ``True``: the size of what it measured. The
    value is printed with two significant digits, so the reader sees it; the bound beside it
    reads nearly the same on every machine (the exact float tail differs between CPUs and
    GPUs; the power of ten moves by one at most), and is what ``book/sanitize.cfg`` lets nbval
    compare: the value itself is replaced there. Exactly zero prints ``"0"``.
    """
    value = float(torch.as_tensor(x).detach().abs().max())
    if value == 0.0:
        return "0"
    shown = f"{value:.1e}"
    # the bound from the printed value, so that a value rounded up to 1.0e-06 reads "< 1e-05"
    return f"{shown} (< 1e{int(shown.split('e')[1]) + 1:+03d})"


def glue(name: str, value) -> None:
    """Store ``value`` for the book's prose, which shows it with ``{glue:text}`name:.1f```.

    Every number a chapter's text states about our code or runs comes from a stored result or a
    live output this way (issue 43), so a re-run cannot leave a stale number in the text. In
    the book's environment it is MyST-NB's ``glue`` (kept in the cell's outputs, not shown);
    where MyST-NB is not installed (Colab) the value is printed, so the reader still sees it.
    """
    if hasattr(value, "item"):  # a NumPy or torch scalar: MyST-NB formats the text of a plain number
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name}: {value}")
        return
    myst_glue(name, value, display=False)
