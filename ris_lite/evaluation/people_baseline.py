"""The learned baseline's instances: a person / background probability map split into scored
instances, so that it is ranked under region AP like RIS.

Explained in the book chapter ``book/11_people``.

The network (``ris_lite.model.people_segmenter``) says where people are, not who is who. Two
splits of its foreground ``p > threshold`` stand in for the paper's proposal generator:

* ``"components"``: each connected component is one person (touching people are joined);
* ``"watershed"``: the distance transform of the foreground, smoothed, has one peak per body
  if the bodies are round enough; a marker-based watershed from those peaks cuts touching
  people along their narrowest neck (the leaves' pipeline of ``evaluation.baseline``).

Each instance is scored by its mean foreground probability; instances smaller than
``min_area`` pixels are dropped. The knobs are tuned on validation scenes only
(:func:`tune_instance_split`).
"""

from __future__ import annotations

import base64
import itertools
import zlib
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from .people_eval import predictions_region_ap

SPLITS = ("components", "watershed")
#: the grid :func:`tune_instance_split` searches (``min_distance`` for the watershed only; a figure
#: stands 35-115 pixels tall in a 128 x 128 scene). Widened twice when ``benchmarks/people_table1.py``
#: chose its largest values; in the stored run one seed's watershed still takes ``min_area`` 320,
#: where the validation criterion is flat (+0.0005 over 160)
SPLIT_GRID = {"threshold": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "min_area": (10, 20, 40, 80, 160, 320),
              "min_distance": (3, 5, 8, 12, 16, 24, 32, 48)}


def _check_probability(probability) -> np.ndarray:
    p = np.asarray(torch.as_tensor(probability, dtype=torch.float64))
    if p.ndim != 2:
        raise ValueError(f"a foreground probability map is (H, W), got shape {p.shape}")
    if not np.isfinite(p).all() or p.min(initial=0) < 0 or p.max(initial=0) > 1:
        raise ValueError("a foreground probability map must hold finite values in [0, 1]")
    return p


def scored_instances(regions: np.ndarray, probability: np.ndarray, min_area: int) -> Tuple[torch.Tensor, np.ndarray]:
    """Regions ``(H, W)`` int (0 = background, any positive ids) -> ``(labels (H, W) int64,
    scores (k,))``: the regions of ``min_area`` pixels or more, each scored by the mean of
    ``probability (H, W)`` over it, renumbered 1..k by decreasing score (ties: smaller old id)."""
    n = int(regions.max(initial=0))
    area = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    mass = np.bincount(regions.ravel(), weights=probability.ravel(), minlength=n + 1)[1:]
    mean = mass / np.maximum(area, 1)
    keep = [k for k in np.argsort(-mean, kind="stable") if area[k] >= min_area]
    lookup = np.zeros(n + 1, np.int64)
    lookup[[k + 1 for k in keep]] = np.arange(1, len(keep) + 1)
    return torch.from_numpy(lookup[regions]), mean[keep].astype(float)


def components_instances(probability, threshold: float = 0.5, min_area: int = 20) -> Tuple[torch.Tensor, np.ndarray]:
    """The connected components (4-neighbour) of ``probability (H, W) > threshold`` as scored
    instances (:func:`scored_instances`)."""
    p = _check_probability(probability)
    regions, _ = ndimage.label(p > threshold)
    return scored_instances(regions, p, min_area)


def watershed_instances(probability, threshold: float = 0.5, min_area: int = 20, min_distance: int = 5,
                        smooth: float = 1.0) -> Tuple[torch.Tensor, np.ndarray]:
    """The foreground ``probability (H, W) > threshold`` cut by a distance-transform watershed:
    markers at the peaks of the Euclidean distance to the background (Gaussian ``smooth``,
    peaks ``min_distance`` pixels apart or more), basins of the negated distance inside the
    foreground; scored as :func:`scored_instances`."""
    p = _check_probability(probability)
    fg = p > threshold
    components, n = ndimage.label(fg)
    distance = ndimage.distance_transform_edt(fg)
    if smooth > 0:
        distance = ndimage.gaussian_filter(distance, smooth)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=components, exclude_border=False)
    # a component with no peak (a flat or tiny one) keeps one marker, at its deepest pixel, so
    # that no foreground is lost for want of a seed
    missing = sorted(set(range(1, n + 1)) - set(components[tuple(peaks.T)].tolist()))
    if missing:
        peaks = np.concatenate([peaks.reshape(-1, 2), np.array(ndimage.maximum_position(distance, components, missing),
                                                                  np.int64).reshape(-1, 2)])
    markers = np.zeros(fg.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return scored_instances(watershed(-distance, markers, mask=fg), p, min_area)


def split_instances(probability, split: str, params: Dict) -> Tuple[torch.Tensor, np.ndarray]:
    """:func:`components_instances` or :func:`watershed_instances` (``split``) with the knobs
    ``params`` (``threshold``, ``min_area`` and, for the watershed, ``min_distance``)."""
    if split == "components":
        return components_instances(probability, params["threshold"], params["min_area"])
    if split == "watershed":
        return watershed_instances(probability, params["threshold"], params["min_area"], params["min_distance"])
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def tune_instance_split(probabilities: Sequence, gts: Sequence, split: str) -> Dict:
    """The knobs of ``split`` over :data:`SPLIT_GRID` that maximise APʳ(0.5) + APʳ Ave (Table
    1's two numbers) on (validation) probability maps ``(H, W)`` with true masks ``(n, H, W)``;
    returns them with the two scores reached there (``ap50``, ``ap_mean``)."""
    names = ["threshold", "min_area"] + (["min_distance"] if split == "watershed" else [])
    best = None
    for values in itertools.product(*(SPLIT_GRID[n] for n in names)):
        params = dict(zip(names, values))
        ap = predictions_region_ap([split_instances(p, split, params) for p in probabilities], gts)
        if best is None or ap["ap50"] + ap["ap_mean"] > best["ap50"] + best["ap_mean"]:
            best = {**params, **ap}
    return best


def pack_labels(labels) -> str:
    """A label map ``(H, W)`` with ids 0..255 as a short ASCII string (zlib, base64): what a
    benchmark JSON stores of a figure's predictions (:func:`unpack_labels` reads it back)."""
    a = np.asarray(torch.as_tensor(labels))
    if a.ndim != 2 or a.min(initial=0) < 0 or a.max(initial=0) > 255:
        raise ValueError(f"pack_labels takes an (H, W) map with ids 0..255, got shape {a.shape}")
    return base64.b64encode(zlib.compress(a.astype(np.uint8).tobytes(), 9)).decode("ascii")


def unpack_labels(text: str, shape: Sequence[int]) -> torch.Tensor:
    """The ``(H, W)`` int64 label map :func:`pack_labels` stored as ``text``."""
    flat = np.frombuffer(zlib.decompress(base64.b64decode(text)), np.uint8)
    return torch.from_numpy(flat.reshape(tuple(shape)).astype(np.int64))

