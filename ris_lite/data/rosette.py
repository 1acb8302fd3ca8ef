"""Procedural top-view rosette plants: an offline stand-in for CVPPP A1.

Explained in the book chapter ``book/01_data`` ("Data: synthetic rosettes and CVPPP A1").

Every plant is drawn from one integer seed with ``numpy.random.default_rng`` (PCG64, the
same stream on every machine), so a split defined by a seed range is the same test set
everywhere. The generator aims at the statistics measured on the 128 labelled A1 images
(leaf count, leaf area, plant radius, aspect ratio, colour); ``A1_STATS`` holds them and
the data chapter compares the two.

Geometry is defined on the A1 canvas (530 x 500 pixels) and scaled to ``size``, so a
small working resolution is the same plant seen from further away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from scipy import ndimage

from .styles import HELDOUT_LOOK, STYLES, camera, style_look  # noqa: F401  (re-exported)

A1_SIZE = (530, 500)
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))

#: Statistics of the 128 labelled CVPPP A1 training images (pixels at 530 x 500).
A1_STATS = {
    "image_size": A1_SIZE,
    "leaves_min": 11,
    "leaves_max": 20,
    "leaves_mean": 16.3,
    "leaves_sd": 1.8,
    "leaf_area_p10": 389.0,
    "leaf_area_median": 1918.0,
    "leaf_area_p90": 5004.0,
    "plant_radius_p10": 81.0,
    "plant_radius_median": 108.0,
    "plant_radius_p90": 136.0,
    "leaf_aspect_median": 1.79,
    "split_leaf_fraction": 0.07,
    "leaf_rgb": (101, 157, 29),
}

#: Working resolution of the benchmark (rows, cols): the A1 frame divided by 5, the grid
#: the authors' ConvLSTM ran on. See the data chapter for why.
DEFAULT_SIZE = (106, 100)
#: The benchmark looks at the central 1/1.8 of the A1 frame (the pot), so leaves keep
#: A1's shape at a size a 2-core CPU can train on. ``zoom=1`` shows the whole A1 frame.
DEFAULT_ZOOM = 1.8

#: Fixed seed ranges of the named splits; the seeds never overlap.
SPLITS = {
    "train": (0, 2000),
    "val": (100_000, 100_064),
    "test": (200_000, 200_100),
}


@dataclass(frozen=True)
class RosetteOptions:
    """Knobs of the generator. Defaults are A1-like."""

    n_leaves: Tuple[int, int] = (11, 20)
    size: Tuple[int, int] = DEFAULT_SIZE
    zoom: float = DEFAULT_ZOOM  # 1.0 = the whole A1 frame; 1.8 = a crop around the plant
    count_sampling: str = "a1"  # "a1": bell around 16.3 for 11-20; "uniform"
    clutter: bool = True  # moss, pot rim, tray texture
    blur: bool = True
    noise: float = 0.02
    min_leaf_area: float = 40.0  # visible pixels at A1 scale; smaller leaves are dropped
    style: str = "a1"  # the look: "a1" (the benchmark), "random" (ours: randomised), "heldout"


def _sample_count(rng: np.random.Generator, lo: int, hi: int, how: str) -> int:
    if lo > hi or lo < 0:
        raise ValueError(f"n_leaves must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
    if how == "uniform" or hi - lo < 2:
        return int(rng.integers(lo, hi + 1))
    if how != "a1":
        raise ValueError(f"count_sampling must be 'a1' or 'uniform', got {how!r}")
    # Same shape as A1's histogram (mean 16.3, sd 1.8 for 11..20), stretched to [lo, hi].
    mean = lo + 0.59 * (hi - lo)
    sd = 0.2 * (hi - lo)
    return int(np.clip(np.rint(rng.normal(mean, sd)), lo, hi))


def _leaf_mask(yy, xx, cy, cx, angle, length, aspect, petiole, bend):
    """Soft shape of one leaf: a petiole stalk ending in an ovate blade.

    Returns (inside bool, u in [0,1] along the leaf, v across, signed) on the given grid.
    """
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    along = dx * ca + dy * sa
    across = -dx * sa + dy * ca
    across = across - bend * (along / max(length, 1e-6)) ** 2 * length  # a slight curl
    u = along / length
    blade_start = petiole
    blade_len = 1.0 - petiole
    width = length * blade_len / aspect
    ub = np.clip((u - blade_start) / blade_len, 0.0, 1.0)
    # Ovate profile: widest a little before the middle, rounded tip.
    half = 0.5 * width * np.sin(np.pi * ub**0.8) ** 0.7
    in_blade = (u >= blade_start) & (u <= 1.0) & (np.abs(across) <= half)
    stalk = max(0.012 * length, 1.2)
    in_stalk = (u >= 0.0) & (u < blade_start + 0.05) & (np.abs(across) <= stalk)
    v = across / np.maximum(half, 1e-6)
    return in_blade | in_stalk, u, v


def _smooth_noise(rng, shape, sigma, amount):
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return amount * field / (field.std() + 1e-8)


def make_rosette(seed: int, **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw one synthetic rosette plant.

    Args:
        seed: any non-negative integer; the same seed gives the same plant on every machine.
        **options: fields of :class:`RosetteOptions` (``n_leaves=(lo, hi)``, ``size=(H, W)``,
            ``count_sampling``, ``clutter``, ``blur``, ``noise``, ``min_leaf_area``, ``style``:
            ``"a1"``, ``"random"`` or ``"heldout"``, see :func:`~ris_lite.data.styles.style_look`).

    Returns:
        image: ``(3, H, W)`` float32 in [0, 1].
        labels: ``(H, W)`` int64, 0 = background, leaves 1..n consecutive (oldest first).
    """
    opts = RosetteOptions(**options)
    if opts.style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {opts.style!r}")
    image, labels = _render(int(seed), opts)
    return torch.from_numpy(image), torch.from_numpy(labels)


def _render(seed: int, o: RosetteOptions) -> Tuple[np.ndarray, np.ndarray]:
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    H, W = (int(o.size[0]), int(o.size[1]))
    if H < 16 or W < 16:
        raise ValueError(f"size must be at least 16 x 16, got {o.size}")
    rng = np.random.default_rng(seed)
    if o.zoom <= 0:
        raise ValueError(f"zoom must be positive, got {o.zoom}")
    scale = o.zoom * H / A1_SIZE[0]  # output pixels per A1 pixel
    lo, hi = o.n_leaves
    n_target = _sample_count(rng, lo, hi, o.count_sampling)

    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    look = style_look(o.style, seed)
    image = _background(rng, H, W, scale, o.zoom, o.clutter, look)

    # The plant. Radius in A1 pixels: log-normal around the A1 median, more leaves -> bigger.
    radius = np.exp(rng.normal(np.log(125.0), 0.18)) * (0.85 + 0.3 * (n_target - lo + 0.5) / (hi - lo + 1))
    radius *= scale
    cy = H / 2 + rng.normal(0, 20.0) * scale
    cx = W / 2 + rng.normal(0, 20.0) * scale
    base_rgb = np.array(A1_STATS["leaf_rgb"], float) / 255.0
    plant_rgb = np.clip(base_rgb * np.exp(rng.normal(0, 0.12, 3)), 0, 1)
    phase = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0, 2 * np.pi)

    for _attempt in range(8):
        labels = np.zeros((H, W), np.int64)
        leaf_img = image.copy()
        n = n_target
        for k in range(n):  # k = 0 is the oldest (outermost, lowest) leaf
            age = 1.0 - k / max(n - 1, 1)  # 1 oldest .. 0 youngest
            angle = phase + k * GOLDEN_ANGLE + rng.normal(0, 0.12)
            length = radius * (0.32 + 0.78 * age**0.9) * np.exp(rng.normal(0, 0.12))
            aspect = np.exp(rng.normal(np.log(1.75), 0.15))  # blade length / width
            petiole = np.clip(rng.normal(0.3, 0.06), 0.12, 0.45) * (0.6 + 0.4 * age)
            bend = rng.normal(0, 0.06)
            ox, oy = rng.normal(0, 0.03 * radius, 2)
            inside, u, v = _leaf_mask(yy, xx, cy + oy, cx + ox, angle, length, aspect, petiole, bend)
            if not inside.any():
                continue
            # Shading: darker at the rim and the base, a light midrib, a global light direction.
            rgb = np.clip(plant_rgb * np.exp(rng.normal(0, 0.07, 3)) * (0.9 + 0.25 * (1 - age)), 0, 1)
            shade = 0.78 + 0.22 * (1 - np.clip(np.abs(v), 0, 1) ** 2)
            shade *= 0.85 + 0.15 * np.clip(u, 0, 1)
            shade *= 1.0 + 0.12 * np.cos(angle - light) * np.clip(u, 0, 1)
            midrib = np.exp(-((v * 8.0) ** 2)) * 0.12 * (u > petiole)
            colour = rgb[:, None] * shade[inside][None] + midrib[inside][None]
            leaf_img[:, inside] = colour
            labels[inside] = k + 1
        labels = _merge_slivers(labels)
        labels, kept = _relabel(labels, o.min_leaf_area * scale**2)
        if kept >= lo or n_target == 0:
            break
        n_target = min(hi, n_target + 1)  # occlusion hid too many: redraw with one more
    image = leaf_img
    # Thin dark gaps where a younger leaf lies over an older one: the cue real photos have.
    edges = _occlusion_edges(labels)
    image[:, edges] *= 0.72
    if look is not None:
        image = camera(image, look, yy / H - 0.5, xx / W - 0.5)
    if o.blur:
        sigma = rng.uniform(0.3, 1.0) * max(scale * 2.5, 0.5) * (1.0 if look is None else look["blur"])
        image = ndimage.gaussian_filter(image, (0, sigma, sigma))
    noise = o.noise if look is None else look["noise"]
    image = image + noise * rng.standard_normal(image.shape)
    return np.clip(image, 0, 1).astype(np.float32), labels


def _background(rng, H, W, scale, zoom, clutter: bool, look: dict | None = None) -> np.ndarray:
    """Reddish tray, a dark pot of soil in the middle, green moss blobs on the soil; a style's
    ``look`` replaces the colours, the soil texture, the pot size and the moss (the random draws
    stay the same, so the plant drawn after them does too)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    tray = np.array([0.45, 0.22, 0.18] if look is None else look["tray"]) * np.exp(rng.normal(0, 0.1, 3))
    soil = np.array([0.16, 0.12, 0.09] if look is None else look["soil"]) * np.exp(rng.normal(0, 0.15, 3))
    img = np.empty((3, H, W))
    img[:] = tray[:, None, None]
    half = ((0.36 if look is None else look["pot"]) + rng.uniform(-0.03, 0.03)) * zoom * np.array([H, W])
    cy, cx = H / 2 + rng.normal(0, 10.0) * scale, W / 2 + rng.normal(0, 10.0) * scale
    pot = (np.abs(yy - cy) < half[0]) & (np.abs(xx - cx) < half[1])
    img[:, pot] = soil[:, None]
    if clutter:
        rim = (np.abs(yy - cy) < half[0] + 6 * scale) & (np.abs(xx - cx) < half[1] + 6 * scale) & ~pot
        img[:, rim] = (np.array([0.08, 0.08, 0.09]) * np.exp(rng.normal(0, 0.1)))[:, None]
        texture = 0.025 if look is None else look["texture"]
        img += _smooth_noise(rng, (3, H, W), (0, 2 * scale + 0.5, 2 * scale + 0.5), texture)
        # Moss: yellow-green specks and patches on the soil (what fools colour thresholds).
        field = _smooth_noise(rng, (H, W), 6 * scale + 0.5, 1.0)
        level = rng.uniform(1.3, 2.2)  # drawn in every style, so that the plant after it is the same
        if look is not None:
            level = np.inf if look["moss"] is None else look["moss"]  # higher: less moss
        moss = (field > level) & pot
        moss_rgb = np.array([0.42, 0.5, 0.12]) * np.exp(rng.normal(0, 0.15, 3))
        img[:, moss] = 0.5 * img[:, moss] + 0.5 * moss_rgb[:, None]
    return img


def _occlusion_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a leaf that touch a different leaf drawn later (a younger one on top)."""
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        shifted = np.roll(labels, (dy, dx), axis=(0, 1))
        edge |= (labels > 0) & (shifted > labels)
    return edge


def _merge_slivers(labels: np.ndarray, fraction: float = 0.25) -> np.ndarray:
    """Give each tiny detached piece of a leaf to the leaf around it.

    Stalks of old leaves poke out between young leaves as specks of a few pixels; a human
    annotator would not label those as the old leaf, and A1 has few split leaves (7 %).
    Pieces under ``fraction`` of their leaf's largest piece join their most common neighbour.
    """
    out = labels.copy()
    for leaf in range(1, int(labels.max()) + 1):
        pieces, k = ndimage.label(labels == leaf, structure=np.ones((3, 3)))
        if k < 2:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        for piece in np.nonzero(sizes < fraction * sizes.max())[0] + 1:
            inside = pieces == piece
            ring = ndimage.binary_dilation(inside) & ~inside
            neighbours = out[ring]
            neighbours = neighbours[(neighbours > 0) & (neighbours != leaf)]
            if neighbours.size:
                out[inside] = np.bincount(neighbours).argmax()
    return out


def _relabel(labels: np.ndarray, min_area: float) -> Tuple[np.ndarray, int]:
    """Drop leaves with fewer than ``min_area`` visible pixels; renumber the rest 1..n."""
    areas = np.bincount(labels.ravel(), minlength=1)
    keep = np.nonzero(areas[1:] >= max(min_area, 1.0))[0] + 1
    lut = np.zeros(len(areas), np.int64)
    lut[keep] = np.arange(1, len(keep) + 1)
    return lut[labels], len(keep)


def labels_to_masks(labels: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` int label map -> ``(n, H, W)`` bool, one mask per label 1..max."""
    labels = torch.as_tensor(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {tuple(labels.shape)}")
    ids = torch.unique(labels)
    ids = ids[ids > 0]
    return labels.unsqueeze(0) == ids.view(-1, 1, 1)


def masks_to_labels(masks: torch.Tensor) -> torch.Tensor:
    """``(n, H, W)`` bool masks -> ``(H, W)`` int64 labels; an earlier mask wins a shared pixel."""
    masks = torch.as_tensor(masks).bool()
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n, H, W), got shape {tuple(masks.shape)}")
    labels = torch.zeros(masks.shape[1:], dtype=torch.int64)
    for i in range(masks.shape[0] - 1, -1, -1):
        labels[masks[i]] = i + 1
    return labels


class LabelMapDataset(torch.utils.data.Dataset):
    """Base of the data sets whose ``_item(i)`` gives ``(image (3,H,W), labels (H,W))``: item
    ``i`` is ``(image, masks (n,H,W) bool)``, passed through ``self.transform`` when set."""

    transform = None

    def labels(self, i: int) -> torch.Tensor:
        """The ``(H, W)`` int64 label map of item ``i`` (before any transform)."""
        return self._item(i)[1]

    def __getitem__(self, i: int):
        image, labels = self._item(i)
        masks = labels_to_masks(labels)
        if self.transform is not None:
            image, masks = self.transform(image, masks)
        return image, masks


class RosetteDataset(LabelMapDataset):
    """A fixed, named split of synthetic rosettes.

    Item ``i`` is ``(image (3, H, W) float32, masks (n, H, W) bool)``, drawn from seed
    ``SPLITS[split][0] + i``. Items are rendered once and cached in memory (set
    ``cache=False`` for huge splits). ``transform(image, masks)`` runs after the cache,
    so augmentation differs each epoch.
    """

    def __init__(self, split: str = "train", length: int | None = None, transform=None,
                 cache: bool = True, **options):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        start, stop = SPLITS[split]
        if length is not None and not 0 < length <= stop - start:
            raise ValueError(f"length for split {split!r} must be in 1..{stop - start}, got {length}")
        self.split = split
        self.seeds = range(start, start + (length or stop - start))
        self.options = options
        self.transform = transform
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return len(self.seeds)

    def _item(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        item = make_rosette(self.seeds[i], **self.options)
        if self._cache is not None:
            self._cache[i] = item
        return item
