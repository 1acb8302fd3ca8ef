"""Reader for the real CVPPP A1 folder, and a writer for the official submission format.

Explained in the book chapter ``book/02_data``.

The A1 layout: ``plantXXX_rgb.png`` (RGBA), ``plantXXX_label.png`` (indexed / palette PNG
whose indices are the leaf ids, 0 = background) and optionally ``plantXXX_fg.png``. Plant
ids need not be contiguous and label ids may have gaps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from .rosette import labels_to_masks

_NAME = re.compile(r"^(plant\d+)_rgb\.png$")


def _read_png(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise FileNotFoundError(f"CVPPP: {what} file missing: {path}") from None
    except Exception as e:
        raise ValueError(f"CVPPP: cannot read {what} file {path} ({type(e).__name__}: {e})") from None


def read_label_png(path: str | Path) -> np.ndarray:
    """An indexed (palette) or grey label PNG -> ``(H, W)`` int64 of raw indices."""
    img = _read_png(Path(path), "label")
    if img.mode in ("P", "L", "I", "I;16"):
        return np.asarray(img).astype(np.int64)
    raise ValueError(f"CVPPP: label file {path} has mode {img.mode}; expected an indexed/palette PNG")


class CVPPP(torch.utils.data.Dataset):
    """A CVPPP A1-style folder. Item = ``(image (3,H,W) float32, masks (n,H,W) bool)``.

    Args:
        root: the folder holding ``plantXXX_rgb.png`` / ``plantXXX_label.png``.
        size: optional ``(H, W)`` to resize to (bilinear image, nearest labels), e.g. the
            model's working size; ``None`` keeps the original 530 x 500.
        require_labels: if False, plants without a label file are allowed (test set);
            their masks are empty.
    """

    def __init__(self, root: str | Path, size: Optional[Tuple[int, int]] = None,
                 require_labels: bool = True, transform=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"CVPPP: no such folder: {self.root}")
        self.names: List[str] = sorted(m.group(1) for p in self.root.iterdir() if (m := _NAME.match(p.name)))
        if not self.names:
            raise FileNotFoundError(f"CVPPP: no plantXXX_rgb.png files in {self.root}")
        if require_labels:
            missing = [n for n in self.names if not (self.root / f"{n}_label.png").is_file()]
            if missing:
                raise FileNotFoundError(f"CVPPP: {self.root / (missing[0] + '_label.png')} is missing "
                                        f"(the pair of {missing[0]}_rgb.png; {len(missing)} plant(s) without labels)")
        self.size = tuple(size) if size is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def original_size(self, i: int) -> Tuple[int, int]:
        with Image.open(self.root / f"{self.names[i]}_rgb.png") as im:
            return im.size[1], im.size[0]

    def labels(self, i: int) -> torch.Tensor:
        """The ``(H, W)`` int64 label map (raw ids, gaps kept), resized if ``size`` is set."""
        path = self.root / f"{self.names[i]}_label.png"
        if not path.is_file():
            return torch.zeros(self.size or self.original_size(i), dtype=torch.int64)
        lab = read_label_png(path)
        if self.size is not None and lab.shape != self.size:
            lab = np.asarray(Image.fromarray(lab.astype(np.int32)).resize(self.size[::-1], Image.NEAREST))
        return torch.from_numpy(lab.astype(np.int64))

    def image(self, i: int) -> torch.Tensor:
        path = self.root / f"{self.names[i]}_rgb.png"
        img = _read_png(path, "image").convert("RGB")
        if self.size is not None and img.size != self.size[::-1]:
            img = img.resize(self.size[::-1], Image.BILINEAR)
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()

    def __getitem__(self, i: int):
        image, labels = self.image(i), self.labels(i)
        if image.shape[1:] != labels.shape:
            raise ValueError(f"CVPPP: {self.names[i]}_rgb.png is {tuple(image.shape[1:])} but "
                             f"{self.names[i]}_label.png is {tuple(labels.shape)}")
        masks = labels_to_masks(labels)
        if self.transform is not None:
            image, masks = self.transform(image, masks)
        return image, masks


def write_label_png(labels, path: str | Path, size: Optional[Tuple[int, int]] = None) -> Path:
    """Write a prediction the way the CVPPP scorer reads it.

    Background 0, leaves renumbered 1..N in increasing id order, resized (nearest)
    to ``size`` = the original ``(H, W)`` if given, saved as an indexed PNG with a palette.
    """
    lab = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {lab.shape}")
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
    img.save(path)
    return path
