"""A procedural stand-in for the paper's people experiment (Sec. 4.2): figures that occlude.

Explained in the book chapter ``book/11_people``.

Pascal VOC and COCO cannot be downloaded here, so the people configuration is trained and
scored on scenes drawn by code: 1-6 stick-and-blob figures (head, torso, two arms, two legs;
varied size, pose, skin and clothing colour) standing on a ground plane at different depths.
A nearer figure stands lower in the frame, is drawn larger and hides what is behind it, so
occlusion follows depth exactly -- the ground truth the occlusion test of the chapter needs.

Instance ids run front to back: id 1 is the nearest figure. RIS's loss is invariant to the
order of the ids, so this leaks nothing into training; it only makes the depth rank readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Tuple

import numpy as np
import torch
from scipy import ndimage

from .rosette import LabelMapDataset

#: Fixed seed ranges of the named splits; they never overlap each other or the rosettes'.
PEOPLE_SPLITS = {
    "train": (1_000_000, 1_020_000),
    "val": (1_100_000, 1_100_064),
    "test": (1_200_000, 1_200_200),
}


@dataclass(frozen=True)
class PeopleOptions:
    """Knobs of the scene generator."""

    n_people: Tuple[int, int] = (1, 6)
    size: Tuple[int, int] = (128, 128)
    #: a figure hidden down to fewer visible pixels than this is not an instance
    min_visible: int = 12
    clutter: bool = True  # background blobs in clothing-like colours
    noise: float = 0.03


class PeopleScene(NamedTuple):
    """One scene. ``image (3,H,W)`` float32 in [0, 1]; ``labels (H,W)`` int64 with the visible
    part of each figure, ids 1..n front to back; ``depth (n,)`` float32, larger = farther
    (``depth[k]`` belongs to id ``k + 1``); ``amodal (n,H,W)`` bool, each figure's whole
    silhouette including the parts hidden by nearer figures."""

    image: torch.Tensor
    labels: torch.Tensor
    depth: torch.Tensor
    amodal: torch.Tensor


def _capsule(yy, xx, p0, p1, radius):
    """Pixels within ``radius`` of the segment p0 -> p1 (points as (y, x))."""
    (y0, x0), (y1, x1) = p0, p1
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-9), 0.0, 1.0)
    return (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2 <= radius * radius


def _figure(rng, yy, xx, foot_y, centre_x, height):
    """Masks of one figure's parts: ``{"skin": ..., "shirt": ..., "trousers": ...}``."""
    h = height
    top = foot_y - h
    head_r = 0.075 * h
    head_c = (top + head_r, centre_x + rng.normal(0, 0.01) * h)
    shoulder_y, hip_y = top + 0.19 * h, top + 0.53 * h
    torso_w = rng.uniform(0.085, 0.12) * h
    lean = rng.normal(0, 0.03) * h
    neck = (shoulder_y, centre_x + 0.3 * lean)
    hip = (hip_y, centre_x)
    skin = (yy - head_c[0]) ** 2 + (xx - head_c[1]) ** 2 <= head_r ** 2
    shirt = _capsule(yy, xx, neck, (hip_y - 0.05 * h, centre_x), torso_w)
    limb = rng.uniform(0.032, 0.045) * h
    for side in (-1, 1):  # arms: an upper and a lower segment, hands in skin colour
        shoulder = (shoulder_y + 0.02 * h, neck[1] + side * 0.75 * torso_w)
        a = np.deg2rad(rng.uniform(5, 70)) * side
        elbow = (shoulder[0] + 0.17 * h * np.cos(a), shoulder[1] + 0.17 * h * np.sin(a))
        b = a + np.deg2rad(rng.uniform(-40, 90)) * side
        hand = (elbow[0] + 0.16 * h * np.cos(b), elbow[1] + 0.16 * h * np.sin(b))
        shirt |= _capsule(yy, xx, shoulder, elbow, limb)
        shirt |= _capsule(yy, xx, elbow, hand, 0.9 * limb)
        skin |= (yy - hand[0]) ** 2 + (xx - hand[1]) ** 2 <= (1.1 * limb) ** 2
    trousers = np.zeros_like(skin)
    for side in (-1, 1):  # legs from the hip to the ground, stride varied
        spread = np.deg2rad(rng.uniform(2, 22)) * side
        top_leg = (hip[0], hip[1] + side * 0.45 * torso_w)
        foot = (foot_y - limb, top_leg[1] + (foot_y - hip_y) * np.tan(spread))
        trousers |= _capsule(yy, xx, top_leg, foot, 1.15 * limb)
    return {"skin": skin, "shirt": shirt & ~skin, "trousers": trousers & ~skin & ~shirt}


def _background(rng, H, W, horizon, clutter, yy, xx):
    sky = rng.uniform(0.35, 0.95, 3)
    ground = rng.uniform(0.15, 0.7, 3)
    img = np.where((yy < horizon)[None], sky[:, None, None], ground[:, None, None])
    img = img + (yy / H - 0.5)[None] * rng.uniform(-0.25, 0.25)  # vertical shading
    texture = ndimage.gaussian_filter(rng.standard_normal((H, W)), rng.uniform(1.0, 3.0))
    img = img + 0.06 * texture / (texture.std() + 1e-8)
    if clutter:  # bushes, boxes, posts: coloured like clothes, shaped like nobody
        for _ in range(rng.integers(2, 7)):
            colour = rng.uniform(0.05, 0.95, 3)
            cy, cx = rng.uniform(0.2 * H, horizon + 0.15 * H), rng.uniform(0, W)
            ry, rx = rng.uniform(0.03, 0.12) * H, rng.uniform(0.05, 0.2) * W
            if rng.random() < 0.5:
                blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                blob = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            img = np.where(blob[None], colour[:, None, None], img)
    return img


def make_people_scene(seed: int, **options) -> PeopleScene:
    """Draw one scene of people at different depths (:class:`PeopleScene`).

    Args:
        seed: any non-negative integer; the same seed gives the same scene on every machine.
        **options: fields of :class:`PeopleOptions` (``n_people=(lo, hi)``, ``size=(H, W)``,
            ``min_visible``, ``clutter``, ``noise``).
    """
    o = PeopleOptions(**options)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    lo, hi = o.n_people
    if not 1 <= lo <= hi:
        raise ValueError(f"n_people must be (lo, hi) with 1 <= lo <= hi, got {o.n_people}")
    H, W = int(o.size[0]), int(o.size[1])
    if H < 32 or W < 32:
        raise ValueError(f"size must be at least 32 x 32, got {o.size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    horizon = rng.uniform(0.3, 0.45) * H
    image = _background(rng, H, W, horizon, o.clutter, yy, xx)

    n = int(rng.integers(lo, hi + 1))
    depth = np.sort(rng.uniform(0.0, 1.0, n))  # 0 = nearest
    # Figures crowd together as in group photos: centres drawn around a common middle.
    middle = rng.uniform(0.3, 0.7) * W
    figures = []
    for z in depth:
        height = H * (0.82 - 0.5 * z) * rng.uniform(0.85, 1.1)
        foot_y = horizon + (H - horizon) * (1.0 - 0.75 * z) + rng.normal(0, 0.02) * H
        centre_x = np.clip(middle + rng.normal(0, 0.28) * W, 0.05 * W, 0.95 * W)
        parts = _figure(rng, yy, xx, foot_y, centre_x, height)
        colours = {"skin": rng.choice([[0.96, 0.8, 0.69], [0.87, 0.67, 0.5], [0.64, 0.45, 0.31],
                                       [0.42, 0.27, 0.18]]) * rng.uniform(0.9, 1.05),
                   "shirt": rng.uniform(0.05, 0.95, 3), "trousers": rng.uniform(0.05, 0.6, 3)}
        figures.append((parts, colours))

    labels = np.zeros((H, W), np.int64)
    amodal = []
    for k in range(n - 1, -1, -1):  # back to front: nearer figures paint over farther ones
        parts, colours = figures[k]
        whole = parts["skin"] | parts["shirt"] | parts["trousers"]
        shade = 1.0 + 0.12 * (xx - xx[whole].mean()) / max(W, 1) if whole.any() else 1.0
        for name, mask in parts.items():
            image = np.where(mask[None], (colours[name][:, None, None] * shade), image)
        labels[whole] = k + 1
        amodal.append(whole)
    amodal = amodal[::-1]

    # Figures hidden (or off-frame) down to a few pixels are no instance: drop, renumber.
    keep = [k for k in range(n) if (labels == k + 1).sum() >= o.min_visible]
    new_ids = np.zeros(n + 1, np.int64)
    new_ids[[k + 1 for k in keep]] = np.arange(1, len(keep) + 1)
    labels = new_ids[labels]
    image = image + o.noise * rng.standard_normal(image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    amodal_kept = np.stack([amodal[k] for k in keep]) if keep else np.zeros((0, H, W), bool)
    return PeopleScene(torch.from_numpy(image), torch.from_numpy(labels),
                       torch.from_numpy(depth[keep].astype(np.float32)), torch.from_numpy(amodal_kept))


def make_people(seed: int, **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(image (3,H,W) float32, labels (H,W) int64)`` of :func:`make_people_scene`."""
    scene = make_people_scene(seed, **options)
    return scene.image, scene.labels


class PeopleDataset(LabelMapDataset):
    """A fixed, named split of people scenes: item ``i`` is ``(image (3,H,W), masks (n,H,W)
    bool)`` from seed ``PEOPLE_SPLITS[split][0] + i``; ``scene(i)`` adds depth and amodal masks.
    Scenes are cached in memory; ``transform(image, masks)`` runs after the cache."""

    def __init__(self, split: str = "train", length: int | None = None, transform=None,
                 cache: bool = True, **options):
        if split not in PEOPLE_SPLITS:
            raise ValueError(f"split must be one of {sorted(PEOPLE_SPLITS)}, got {split!r}")
        start, stop = PEOPLE_SPLITS[split]
        if length is not None and not 0 < length <= stop - start:
            raise ValueError(f"length for split {split!r} must be in 1..{stop - start}, got {length}")
        PeopleOptions(**options)  # unknown options fail here, not at the first item
        self.split, self.options, self.transform = split, options, transform
        self.seeds = range(start, start + (length or stop - start))
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return len(self.seeds)

    def scene(self, i: int) -> PeopleScene:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i = i % len(self)
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        scene = make_people_scene(self.seeds[i], **self.options)
        if self._cache is not None:
            self._cache[i] = scene
        return scene

    def _item(self, i: int):
        scene = self.scene(i)
        return scene.image, scene.labels

    def ground_truth(self, i: int):
        """Item ``i``'s true masks ``(n, H, W)`` bool, void and crowd (none: the stand-in is
        fully labelled), as region AP reads them (``ris_lite.evaluation.people_eval``)."""
        return self[i][1].numpy(), None, None


class FlipLeftRight:
    """Augmentation for upright scenes: mirror image and masks with probability ``p`` (people
    are not rotated, unlike plants seen from above)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p, self.generator = p, generator

    def __call__(self, image: torch.Tensor, masks: torch.Tensor):
        if float(torch.rand((), generator=self.generator)) < self.p:
            return image.flip(-1), masks.flip(-1)
        return image, masks
