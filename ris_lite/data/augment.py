"""Augmentation (random rotation + flip, as in Sec. 4.3) and batching of instance sets.

Explained in the book chapter ``book/01_data``.

Pure torch (``affine_grid`` + ``grid_sample``): no torchvision, whose PyPI wheels are CUDA
builds that do not load next to a CPU-only torch.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def rotate(x: torch.Tensor, angle: float, mode: str = "bilinear",
           fill: float | Sequence[float] = 0.0) -> torch.Tensor:
    """Rotate ``(C, H, W)`` counter-clockwise by ``angle`` degrees about the image centre.

    ``mode="bilinear"`` for images, ``"nearest"`` for masks and label maps (any dtype; values
    are copied, never blended). Pixels that come from outside the frame get ``fill`` (one value
    or one per channel). The output keeps the input's size and dtype.
    """
    if x.ndim != 3:
        raise ValueError(f"rotate expects (C,H,W), got {tuple(x.shape)}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    C, H, W = x.shape
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    # Output pixel (u, v) (pixel units about the centre, y down) reads the input at the
    # inverse rotation. affine_grid works in [-1, 1] per axis, so the aspect ratio enters.
    theta = torch.tensor([[cos, -sin * H / W, 0.0], [sin * W / H, cos, 0.0]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, C, H, W], align_corners=False)
    src = x.float()[None]
    inside = torch.ones(1, 1, H, W)
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    valid = F.grid_sample(inside, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]
    fill_t = torch.as_tensor(fill, dtype=torch.float32).reshape(-1, 1, 1)
    if fill_t.numel() not in (1, C):
        raise ValueError(f"fill needs 1 or {C} values, got {fill_t.numel()}")
    out = out + (1 - valid) * fill_t
    if x.is_floating_point():
        return out.to(x.dtype)
    return out.round().to(x.dtype)


class RotateFlip:
    """Rotate by an angle drawn from [0, 360) degrees, then flip left-right with p = 0.5.

    Image and instance masks get the same geometry: the image is sampled bilinearly, the
    masks with nearest neighbours. Instances rotated out of the frame are dropped, never kept
    as empty targets. Call with ``(image (3,H,W) float, masks (n,H,W) bool)``.
    """

    def __init__(self, flip_p: float = 0.5, fill: float | Sequence[float] | None = None,
                 generator: torch.Generator | None = None):
        self.flip_p = flip_p
        self.fill = fill
        self.generator = generator

    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or masks.ndim != 3 or image.shape[1:] != masks.shape[1:]:
            raise ValueError(
                f"expected image (C,H,W) and masks (n,H,W) of one size, got {tuple(image.shape)} "
                f"and {tuple(masks.shape)}")
        angle = float(torch.rand((), generator=self.generator)) * 360.0
        flip = float(torch.rand((), generator=self.generator)) < self.flip_p
        # Fill the corners with the image's own border colour, so they look like soil, not black.
        fill = self.fill
        if fill is None:
            border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)
            fill = border.median(dim=1).values.tolist()
        image = rotate(image, angle, "bilinear", fill)
        masks = rotate(masks, angle, "nearest", 0)
        if flip:
            image, masks = image.flip(-1), masks.flip(-1)
        return image, masks[masks.flatten(1).any(1)]


def collate_instances(batch: Sequence[Tuple[torch.Tensor, torch.Tensor]]):
    """Stack images and pad instance sets to the largest in the batch.

    Args:
        batch: items ``(image (3,H,W), masks (n_i,H,W) bool)`` of one image size.
    Returns:
        images ``(B,3,H,W)``, targets ``(B,N,H,W)`` bool with N = max n_i (padding all False),
        counts ``(B,)`` int64.
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    images = [b[0] for b in batch]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"all images of a batch must have one shape, got {sorted(shapes)}")
    H, W = images[0].shape[1:]
    counts = torch.tensor([b[1].shape[0] for b in batch], dtype=torch.int64)
    targets = torch.zeros(len(batch), max(int(counts.max()), 1), H, W, dtype=torch.bool)
    for i, (_, masks) in enumerate(batch):
        if masks.shape[1:] != (H, W):
            raise ValueError(f"item {i}: masks {tuple(masks.shape)} do not match image {(H, W)}")
        targets[i, : masks.shape[0]] = masks
    return torch.stack(images), targets, counts

