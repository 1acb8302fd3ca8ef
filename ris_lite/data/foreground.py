"""Where the plant is: a foreground mask by colour, with no model and no labels.

Explained in the book chapters ``book/08_evaluation`` (the watershed baseline's first step) and
``book/10_your_data`` (the plant box a real frame may be cropped to).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu


def green_foreground(image: torch.Tensor | np.ndarray, green_margin: float = 0.0) -> np.ndarray:
    """``image (3, H, W)`` -> ``(H, W)`` bool plant mask: excess green ``2G - R - B`` above its
    Otsu threshold (+ ``green_margin``), opened once, largest blob only (moss specks are not
    the plant)."""
    im = image.detach().cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    if im.ndim != 3 or im.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got {im.shape}")
    exg = 2 * im[1] - im[0] - im[2]
    if float(exg.max() - exg.min()) < 1e-12:  # a flat image has no plant (Otsu needs two values)
        return np.zeros(exg.shape, bool)
    fg = exg > threshold_otsu(exg) + green_margin
    fg = ndimage.binary_opening(fg, iterations=1)
    lab, n = ndimage.label(fg)
    if n == 0:
        return fg
    sizes = ndimage.sum(fg, lab, range(1, n + 1))
    return lab == (np.argmax(sizes) + 1)


def plant_box(image: torch.Tensor | np.ndarray, pad: float = 0.25) -> Tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the plant in ``image (3, H, W)``: the bounding box of
    :func:`green_foreground`, grown by ``pad`` times its larger side on every side (so leaf
    tips paler than the Otsu threshold stay inside), clipped to the frame. The whole frame when
    no plant is found: a crop must never cut a plant it did not see."""
    fg = green_foreground(image)
    H, W = fg.shape
    if not fg.any():
        return 0, 0, H, W
    rows, cols = np.nonzero(fg.any(1))[0], np.nonzero(fg.any(0))[0]
    margin = int(np.ceil(pad * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)))
    top, bottom = max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, H)
    left, right = max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, W)
    return int(top), int(left), int(bottom - top), int(right - left)
