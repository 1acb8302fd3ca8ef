"""Augmentation (random rotation + flip, as in Sec. 4.3) and batching of instance sets.

Explained in the book chapter ``book/02_data``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class RotateFlip:
    """Rotate by an angle drawn from [0, 360) degrees, then flip left-right with p = 0.5.

    Image and instance masks get the same geometry (``tv_tensors.Mask`` makes the masks use
    nearest-neighbour sampling). Instances rotated out of the frame are dropped, never kept
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
        image = F.rotate(tv_tensors.Image(image), angle, interpolation=v2.InterpolationMode.BILINEAR,
                         fill=fill)
        masks = F.rotate(tv_tensors.Mask(masks.to(torch.uint8)), angle, fill=0)
        if flip:
            image, masks = F.horizontal_flip(image), F.horizontal_flip(masks)
        masks = masks.as_subclass(torch.Tensor).bool()
        image = image.as_subclass(torch.Tensor)
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

