"""A classical leaf pipeline, the kind of CVPPP entry RIS was compared with (Table 2).

Explained in the book chapter ``book/08_evaluation``.

foreground by colour (excess green, Otsu) -> clean-up -> distance transform ->
peaks (one per leaf, hopefully) -> marker-based watershed (``skimage``).
Its two knobs are tuned on the validation split only (:func:`tune_baseline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

import numpy as np
import torch
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from ..data.foreground import green_foreground
from .evaluate import scoring_pair
from .metrics import evaluate_labels


@dataclass(frozen=True)
class WatershedParams:
    min_distance: int = 3  # pixels between two leaf centres
    smooth: float = 1.0  # Gaussian sigma on the distance map
    green_margin: float = 0.0  # added to the Otsu threshold on excess green


def foreground(image: torch.Tensor, green_margin: float = 0.0) -> np.ndarray:
    """Plant mask from excess green ``2G - R - B`` with an Otsu threshold. ``image (3,H,W)``
    (:func:`ris_lite.data.foreground.green_foreground`, which the real-frame reader shares)."""
    return green_foreground(image, green_margin)


def watershed_leaves(image: torch.Tensor, params: WatershedParams = WatershedParams()) -> torch.Tensor:
    """``image (3,H,W)`` -> ``(H, W)`` int64 leaf labels (0 background, 1..k)."""
    fg = foreground(image, params.green_margin)
    if not fg.any():
        return torch.zeros(fg.shape, dtype=torch.int64)
    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(fg), params.smooth)
    peaks = peak_local_max(dist, min_distance=params.min_distance, labels=fg.astype(int), exclude_border=False)
    markers = np.zeros(fg.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    return torch.from_numpy(labels.astype(np.int64))


def evaluate_baseline(dataset, params: WatershedParams = WatershedParams(),
                      resolution: str = "original") -> Dict[str, float]:
    """Table-2 metrics of the watershed pipeline on a data set. It sees the same input as RIS
    (the model's input size) and is scored like RIS (``ris_lite.evaluation.evaluate.scoring_pair``)."""
    pairs = [scoring_pair(dataset, i, watershed_leaves(dataset[i][0], params), resolution)
             for i in range(len(dataset))]
    return evaluate_labels([p for p, _ in pairs], [g for _, g in pairs])


def tune_baseline(val_dataset, min_distances: Iterable[int] = (2, 3, 4, 5, 6),
                  smooths: Iterable[float] = (0.5, 1.0, 2.0),
                  resolution: str = "original") -> Tuple[WatershedParams, Dict[str, float]]:
    """Grid search on the VALIDATION split: best SBD, ties broken by lower ``|DiC|``."""
    best = None
    for md in min_distances:
        for sm in smooths:
            p = WatershedParams(min_distance=md, smooth=sm)
            r = evaluate_baseline(val_dataset, p, resolution)
            key = (r["sbd"], -r["abs_dic"])
            if best is None or key > best[0]:
                best = (key, p, r)
    return best[1], best[2]
