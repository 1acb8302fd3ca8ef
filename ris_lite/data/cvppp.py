"""Reader for the real CVPPP A1 folder, and a writer for the official submission format.

Explained in the book chapter ``book/01_data``.

The A1 layout: ``plantXXX_rgb.png`` (RGBA), ``plantXXX_label.png`` (indexed / palette PNG
whose indices are the leaf ids, 0 = background) and optionally ``plantXXX_fg.png``. Plant
ids need not be contiguous and label ids may have gaps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .folder import LabelledFolder, read_label_image


def read_label_png(path: str | Path) -> np.ndarray:
    """An indexed (palette) or grey label PNG -> ``(H, W)`` int64 of raw indices."""
    return read_label_image(path, "CVPPP")


class CVPPP(LabelledFolder):
    """A CVPPP A1-style folder. Item = ``(image (3,H,W) float32, masks (n,H,W) bool)``.

    A :class:`~ris_lite.data.folder.LabelledFolder` with the A1 names: ids are ``plantXXX``, the
    image ``plantXXX_rgb.png``, the labels ``plantXXX_label.png``.

    Args:
        root: the folder holding ``plantXXX_rgb.png`` / ``plantXXX_label.png``.
        size: the model's input ``(h, w)``; ``None`` keeps the original 530 x 500.
        require_labels: if False, plants without a label file are allowed (test set);
            their masks are empty.
        zoom: the scale the model learned (the synthetic benchmark's 1.8: it saw 1/1.8 of
            the frame in ``size``); the whole frame is read at ``(zoom h, zoom w)``.
        ids: only these plants (a split), e.g. ``["plant001", "plant007"]``.
        frame: ``"whole"`` (default) or ``"plant"`` (a padded box around the plant, same scale).
    """

    kind = "CVPPP"
    id_hint = "plantXXX"

    def __init__(self, root: str | Path, size: Optional[Tuple[int, int]] = None,
                 require_labels: bool = True, transform=None, zoom: float = 1.0,
                 ids: Optional[Sequence[str]] = None, cache: bool = True, frame: str = "whole"):
        super().__init__(root, "{id}_rgb.png", "{id}_label.png", size=size, zoom=zoom, ids=ids,
                         require_labels=require_labels, transform=transform, cache=cache,
                         id_regex=r"plant\d+", frame=frame)


def write_label_png(labels, path: str | Path, size: Optional[Tuple[int, int]] = None) -> Path:
    """Write a prediction the way the CVPPP scorer reads it.

    Background 0, leaves renumbered 1..N in increasing id order, resized (nearest)
    to ``size`` = the original ``(H, W)`` if given, saved as an indexed PNG with a palette.
    Ids must be integers >= 0 (whole numbers in a float map are fine). The file is written
    beside ``path`` and renamed onto it: a link at ``path`` is replaced, never written through.
    """
    lab = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {lab.shape}")
    if lab.dtype.kind == "f":
        bad = lab[np.mod(lab, 1) != 0]  # NaN too
        if bad.size:
            raise ValueError(f"labels must hold integer ids, got {bad.size} non-integer value(s) such as "
                             f"{bad.flat[0]:g}: round them, or pass the integer map predict returns")
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise ValueError(f"labels hold negative ids (down to {lab.min()}): ids are 0 (background) and positive")
    ids = [i for i in np.unique(lab) if i != 0]
    if len(ids) > 255:
        raise ValueError(f"{len(ids)} labels do not fit an 8-bit indexed PNG")
    lut = {0: 0, **{int(v): k + 1 for k, v in enumerate(ids)}}
    out = np.vectorize(lut.get, otypes=[np.uint8])(lab) if ids else np.zeros(lab.shape, np.uint8)
    img = Image.fromarray(out, mode="P")
    if size is not None and tuple(size) != out.shape:
        img = img.resize((size[1], size[0]), Image.NEAREST)
    rng = np.random.default_rng(0)
    palette = np.concatenate([[0, 0, 0], rng.integers(40, 256, 255 * 3)]).astype(np.uint8)
    img.putpalette(palette.tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # the same suffix: PIL picks the format by it
    img.save(tmp)
    os.replace(tmp, path)
    return path


def write_plant(root: str | Path, name: str, image: torch.Tensor, labels: torch.Tensor) -> Path:
    """Store one plant exactly as A1 does: ``NAME_rgb.png`` (RGBA, opaque), ``NAME_label.png``
    (palette PNG of the raw ids, 0 = background) and ``NAME_fg.png`` (0 / 255). For fixtures,
    and for bringing other data into the A1 layout. ``image (3,H,W)`` in [0, 1], ``labels (H,W)``
    ids < 256."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1:] != labels.shape:
        raise ValueError(f"expected image (3,H,W) and labels (H,W) of one size, got {tuple(image.shape)} "
                         f"and {tuple(labels.shape)}")
    lab = torch.as_tensor(labels).numpy()
    if lab.min() < 0 or lab.max() > 255:
        raise ValueError(f"A1 label PNGs hold ids 0..255, got {lab.min()}..{lab.max()}")
    rgb = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(root / f"{name}_rgb.png", optimize=True)
    img = Image.fromarray(lab.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0] + np.random.default_rng(0).integers(0, 256, 765).tolist())
    img.save(root / f"{name}_label.png", optimize=True)
    Image.fromarray(((lab > 0) * 255).astype(np.uint8)).save(root / f"{name}_fg.png", optimize=True)
    return root / f"{name}_rgb.png"
