"""Real data: any folder of images with instance-label images, read the way RIS needs them.

Explained in the book chapter ``book/10_your_data``.

A labelled folder pairs each image with a label image holding one integer id per pixel
(0 = background, any other value = one instance; ids may have gaps). Labels may be palette
PNGs (CVPPP), 8- or 16-bit grey PNGs or TIFFs, or 32-bit integer TIFFs. File names follow two
patterns with an ``{id}`` placeholder, e.g. ``images/{id}.*`` and ``labels/{id}.*``, where a
``.*`` suffix means "any image extension".

Every item is brought to the scale the model learned (:meth:`LabelledFolder.frame_box`,
:meth:`LabelledFolder.working_size`): a model of input ``size = (h, w)`` trained on frames of
which it saw the central ``1/zoom`` reads the **whole** frame resized to ``(zoom h, zoom w)``
(an A1 frame, 530 x 500, for the shipped 106 x 100 model at zoom 1.8: 191 x 180), so plants
appear as large as in training and nothing is cut off. ``frame="plant"`` reads instead a box
around the plant (a colour foreground step, padded; never a fixed central crop) at the same
scale. Images are resized bilinearly, labels by nearest neighbour. Predictions go back to the
file's own resolution by the inverse map (:meth:`LabelledFolder.to_original`), where they are
scored against the untouched label file: the official CVPPP protocol.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .foreground import plant_box
from .rosette import LabelMapDataset

#: how a frame is read: all of it, or a padded box around the plant (both at the model's scale)
FRAMES = ("whole", "plant")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LABEL_EXTENSIONS = (".png", ".tif", ".tiff")
#: the most pixels a frame is read at (``zoom`` times the model's input): 2**25, a (3, H, W) float32
#: image of 400 MB (an A1 frame is 265,000 pixels: a larger zoom would only upsample it)
MAX_WORKING_PIXELS = 2 ** 25


def check_zoom(zoom: float, size: Optional[Tuple[int, int]] = None) -> None:
    """``zoom`` a finite number >= 1 and, for a model of input ``size``, a frame read at ``zoom``
    times that within ``MAX_WORKING_PIXELS`` -- checked before anything is resized."""
    if isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not (math.isfinite(zoom) and zoom >= 1):
        raise ValueError(f"zoom must be a finite number >= 1 (1 = the whole frame in the model's input), got {zoom}")
    if size is not None:
        h, w = size
        top = math.sqrt(MAX_WORKING_PIXELS / (h * w))
        if zoom > top:
            raise ValueError(f"zoom must be in [1, {top:.0f}] for a model of input {h}x{w} (a frame is read at zoom "
                             f"times that, at most {MAX_WORKING_PIXELS} pixels), got {zoom}")


def check_input_size(size) -> None:
    """A model's input ``(rows, cols)``: two integers >= 1."""
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise ValueError(f"size must be (rows, cols), two integers >= 1, got {size!r}")


def _open(path: Path, what: str, kind: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise FileNotFoundError(f"{kind}: {what} file missing: {path}") from None
    except Exception as e:  # PIL raises several types for a corrupt or truncated file
        raise ValueError(f"{kind}: cannot read {what} file {path} ({type(e).__name__}: {e})") from None


def read_label_image(path: str | Path, kind: str = "folder") -> np.ndarray:
    """A label image (palette, 8/16-bit grey, 32-bit integer) -> ``(H, W)`` int64 of raw ids
    (0 and positive: a negative id is an error, as in the metrics)."""
    img = _open(Path(path), "label", kind)
    if img.mode == "1":
        raise ValueError(f"{kind}: label file {path} is a 1-bit foreground mask, not instance labels "
                         "(one integer id per instance)")
    if img.mode not in ("P", "L", "F") and not img.mode.startswith("I"):
        raise ValueError(f"{kind}: label file {path} has mode {img.mode} (colours?); expected instance ids "
                         "as a palette PNG or an 8/16/32-bit grey image")
    lab = np.asarray(img)
    if img.mode == "F" and not np.all(lab == np.round(lab)):
        raise ValueError(f"{kind}: label file {path} holds non-integer floats; expected one integer id per pixel")
    lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:  # a signed TIFF: its -1 was counted as a leaf, and refused by the metrics
        raise ValueError(f"{kind}: label file {path} holds negative ids (down to {lab.min()}): ids are 0 "
                         "(background) and positive integers")
    return lab


def read_image(path: str | Path, kind: str = "folder") -> torch.Tensor:
    """An image file -> ``(3, H, W)`` float32 in [0, 1]. RGBA drops alpha; grey is repeated
    over three channels; 16/32-bit grey (microscopy) is stretched from its min to its max."""
    img = _open(Path(path), "image", kind)
    if img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img).astype(np.float32)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
        return torch.from_numpy(a).expand(3, -1, -1).contiguous()
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def split_ids(ids: Sequence[str], val_fraction: float = 0.2) -> Dict[str, List[str]]:
    """Deterministic train / validation split by file id.

    Ids are ranked by their SHA-1 hash and the first ``round(val_fraction * n)`` go to
    validation (at least one, and at least one left for training, when ``n >= 2``): the same
    files split the same way on any machine, in any listing order, with no random seed.
    Both sides come back sorted."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = sorted(set(ids))
    ranked = sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())
    n_val = min(max(round(val_fraction * len(ids)), 1), len(ids) - 1) if len(ids) >= 2 else 0
    val = set(ranked[:n_val])
    return {"train": [i for i in ids if i not in val], "val": [i for i in ids if i in val]}


def upsample_labels(labels: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``(h, w)`` int label map -> ``(H, W)``: each label's indicator resized bilinearly, then the
    largest wins per pixel. Boundaries come out smooth, not blocky as with nearest neighbour."""
    labels = torch.as_tensor(labels)
    ids = torch.unique(labels)
    best = torch.full(tuple(size), -1.0)
    out = torch.zeros(tuple(size), dtype=labels.dtype)
    for chunk in ids.split(16):  # bounded memory for images with hundreds of instances
        onehot = (labels.unsqueeze(0) == chunk.view(-1, 1, 1)).float().unsqueeze(0)
        value, which = F.interpolate(onehot, size=tuple(size), mode="bilinear", align_corners=False)[0].max(0)
        better = value > best
        best = torch.where(better, value, best)
        out = torch.where(better, chunk[which], out)
    return out


def _pattern_regex(pattern: str, id_regex: str) -> Tuple[str, re.Pattern]:
    """``'images/{id}.*'`` -> (folder part, compiled regex of the file name)."""
    if pattern.count("{id}") != 1:
        raise ValueError(f"a file pattern needs exactly one '{{id}}', got {pattern!r}")
    folder, _, name = pattern.rpartition("/")
    if "{id}" not in name:
        raise ValueError(f"'{{id}}' must be in the file name part of {pattern!r}")
    any_ext = name.endswith(".*")
    stem = name[:-2] if any_ext else name
    head, tail = stem.split("{id}")
    ext = "(" + "|".join(re.escape(e) for e in IMAGE_EXTENSIONS) + ")" if any_ext else ""
    return folder, re.compile(f"^{re.escape(head)}(?P<id>{id_regex}){re.escape(tail)}{ext}$", re.IGNORECASE)


class LabelledFolder(LabelMapDataset):
    """A folder of images and instance-label images.

    Item ``i`` is ``(image (3, h, w) float32, masks (n, h, w) bool)`` at the working size
    the model's scale (:meth:`working_size`); ``labels(i)`` is its label map with the file's
    raw ids (gaps kept).

    Args:
        root: the folder.
        image_pattern, label_pattern: paths relative to ``root`` with one ``{id}``; a ``.*``
            ending accepts any image extension (``.png .jpg .tif ...`` / ``.png .tif .tiff``).
        size: the model's input ``(h, w)``, or ``None`` (the file's own size, no resizing).
        zoom: the scale the model learned: it saw ``1/zoom`` of a frame's height and width in
            its ``size`` input (``make_rosette(zoom=z)``), so the whole frame is read at
            ``(zoom h, zoom w)``; 1 = the whole frame in ``size``.
        frame: ``"whole"`` (default) or ``"plant"``: only a box around the plant
            (:func:`ris_lite.data.foreground.plant_box`), at the same scale; its size differs
            from file to file, so it is for prediction and scoring, not for training batches.
        ids: keep only these ids (a split), in this order.
        require_labels: if False, images without a label file are allowed (no masks).
        transform: ``(image, masks) -> (image, masks)`` after the cache (augmentation).
        cache: keep decoded working-size items in memory (decoding costs more than a step).
    """

    kind = "folder"
    #: how an id looks, for messages
    id_hint = "{id}"

    def __init__(self, root: str | Path, image_pattern: str = "images/{id}.*", label_pattern: str = "labels/{id}.*",
                 size: Optional[Tuple[int, int]] = None, zoom: float = 1.0, ids: Optional[Sequence[str]] = None,
                 require_labels: bool = True, transform=None, cache: bool = True, id_regex: str = ".+?",
                 frame: str = "whole"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.kind}: no such folder: {self.root}")
        if size is not None:
            check_input_size(size)
        check_zoom(zoom, size)
        if size is None and zoom != 1:
            raise ValueError(f"zoom={zoom} needs the model's input size (size=(h, w)) to set the scale")
        if frame not in FRAMES:
            raise ValueError(f"frame must be one of {', '.join(FRAMES)}, got {frame!r}")
        self.frame = frame
        self.image_pattern, self.label_pattern = image_pattern, label_pattern
        folder, regex = _pattern_regex(image_pattern, id_regex)
        _pattern_regex(label_pattern, id_regex)  # validates it
        image_dir = self.root / folder
        found, twice = {}, []
        if image_dir.is_dir():
            for p in sorted(image_dir.iterdir()):
                if (m := regex.match(p.name)) and p.is_file():
                    if m.group("id") in found:
                        twice.append((found[m.group("id")], p))
                    found.setdefault(m.group("id"), p)
        if twice:  # which of them is the image? (one was used silently before)
            a, b = twice[0]
            raise ValueError(f"{self.kind}: id {regex.match(a.name).group('id')!r} has two image files, {a} and {b} "
                             f"({len(twice)} such id(s)): keep one, or give the pattern a fixed extension")
        if not found:
            shown = image_pattern.replace("{id}", self.id_hint)
            raise FileNotFoundError(f"{self.kind}: no images matching {shown!r} in {self.root}")
        if ids is not None:
            unknown = [i for i in ids if i not in found]
            if unknown:
                raise FileNotFoundError(f"{self.kind}: no image for id {unknown[0]!r} in {self.root} "
                                        f"({len(unknown)} id(s) of the split are missing)")
        self.names: List[str] = list(ids) if ids is not None else sorted(found)
        self._images = {i: found[i] for i in self.names}
        self._labels = {i: self._find_label(i) for i in self.names}
        if require_labels:
            missing = [i for i in self.names if self._labels[i] is None]
            jpeg = next((j for j in map(self._jpeg_label, missing) if j is not None), None)
            if jpeg is not None:
                raise ValueError(f"{self.kind}: label file {jpeg} is a JPEG, whose lossy compression changes ids "
                                 "along every edge: save the labels as PNG or TIFF")
            if missing:
                raise FileNotFoundError(
                    f"{self.kind}: {self._label_hint(missing[0])} is missing (the label of "
                    f"{self._images[missing[0]].relative_to(self.root)}; {len(missing)} image(s) without labels)")
        self.size = tuple(size) if size is not None else None
        self.zoom = float(zoom)
        self.transform = transform
        self._cache: Optional[dict] = {} if cache else None
        self._boxes: Dict[str, Tuple[int, int, int, int]] = {}

    def _label_hint(self, i: str) -> str:
        return str(self.root / self.label_pattern.replace("{id}", i))

    def _candidates(self, i: str, extensions: Sequence[str]) -> List[Path]:
        """The files of id ``i``'s label pattern ending ``.*`` with one of ``extensions`` (any case)."""
        path = self.root / self.label_pattern.replace("{id}", i)
        files = {}
        for ext in extensions:
            for candidate in (path.with_suffix(ext), path.with_suffix(ext.upper())):
                if candidate.is_file():  # one file under two spellings on a case-blind disk
                    files.setdefault((candidate.stat().st_dev, candidate.stat().st_ino), candidate)
        return sorted(files.values())

    def _find_label(self, i: str) -> Optional[Path]:
        path = self.root / self.label_pattern.replace("{id}", i)
        if not self.label_pattern.endswith(".*"):
            return path if path.is_file() else None
        files = self._candidates(i, LABEL_EXTENSIONS)
        if len(files) > 1:
            raise ValueError(f"{self.kind}: id {i!r} has {len(files)} label files, {' and '.join(map(str, files))}: "
                             "keep one, or give the label pattern a fixed extension")
        return files[0] if files else None

    def _jpeg_label(self, i: str) -> Optional[Path]:
        """A JPEG where id ``i``'s label should be (never read as one: see the refusal)."""
        files = self._candidates(i, (".jpg", ".jpeg")) if self.label_pattern.endswith(".*") else []
        return files[0] if files else None

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, i: int) -> Path:
        return self._images[self.names[i]]

    def label_path(self, i: int) -> Optional[Path]:
        return self._labels[self.names[i]]

    # ----- geometry -----------------------------------------------------------------------
    def original_size(self, i: int) -> Tuple[int, int]:
        with Image.open(self.image_path(i)) as im:
            return im.size[1], im.size[0]

    def scale(self, i: int) -> Tuple[float, float]:
        """Working pixels per file pixel of item i, ``(rows, columns)``: ``zoom h / H`` and
        ``zoom w / W`` (1 without a ``size``)."""
        if self.size is None:
            return 1.0, 1.0
        H, W = self.original_size(i)
        return self.zoom * self.size[0] / H, self.zoom * self.size[1] / W

    def frame_box(self, i: int, image: Optional[torch.Tensor] = None) -> Tuple[int, int, int, int]:
        """``(top, left, height, width)``, in file pixels, of the part of item i that is read:
        the whole frame, or with ``frame="plant"`` the padded box around the plant (from
        ``image``, item i's decoded file, when the caller has it)."""
        if self.frame == "whole":
            return (0, 0, *self.original_size(i))
        key = self.names[i]
        if key not in self._boxes:  # shared with every view(): one foreground step per file
            self._boxes[key] = plant_box(image if image is not None else read_image(self.image_path(i), self.kind))
        return self._boxes[key]

    def working_size(self, i: int) -> Tuple[int, int]:
        """``(h, w)`` of item i as the model reads it: its frame box at the model's scale
        (the whole frame: ``(round(zoom h), round(zoom w))``)."""
        _, _, bh, bw = self.frame_box(i)
        sy, sx = self.scale(i)
        return max(round(bh * sy), 1), max(round(bw * sx), 1)

    def to_original(self, labels: torch.Tensor, i: int) -> torch.Tensor:
        """A working-size label map of item i -> the file's ``(H, W)``: smoothly upsampled into
        the frame box (:func:`upsample_labels`), background outside it."""
        H, W = self.original_size(i)
        top, left, h, w = self.frame_box(i)
        if tuple(labels.shape) != self.working_size(i):
            raise ValueError(f"{self.kind}: labels of item {i} must be {self.working_size(i)} (its working "
                             f"size), got {tuple(labels.shape)}")
        out = torch.zeros(H, W, dtype=torch.int64)
        out[top:top + h, left:left + w] = upsample_labels(labels, (h, w))
        return out

    def _to_working(self, a: np.ndarray, box: Tuple[int, int, int, int], size: Tuple[int, int],
                    resample) -> np.ndarray:
        """One ``(H, W)`` channel (float32 or int32) -> its frame ``box`` resized to ``size``."""
        top, left, h, w = box
        a = a[top:top + h, left:left + w]
        if a.shape == tuple(size):
            return np.ascontiguousarray(a)
        return np.asarray(Image.fromarray(a).resize(tuple(size)[::-1], resample))

    # ----- reading ------------------------------------------------------------------------
    def original_labels(self, i: int) -> torch.Tensor:
        """The label file of item i as it is: ``(H, W)`` int64 raw ids (zeros without a file)."""
        path = self.label_path(i)
        if path is None:
            return torch.zeros(self.original_size(i), dtype=torch.int64)
        return torch.from_numpy(read_label_image(path, self.kind))

    def _index(self, i: int) -> int:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        return i % len(self)

    def _working_image(self, i: int, image: torch.Tensor) -> torch.Tensor:
        """Item i's decoded file ``(3, H, W)`` -> its frame box at the working size."""
        box, size = self.frame_box(i, image), self.working_size(i)
        return torch.from_numpy(np.stack([self._to_working(c, box, size, Image.BILINEAR) for c in image.numpy()]))

    def _item(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        i = self._index(i)
        key = self.names[i]
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        image = read_image(self.image_path(i), self.kind)
        labels = self.original_labels(i)
        if self.label_path(i) is not None and image.shape[1:] != labels.shape:
            raise ValueError(f"{self.kind}: {self.image_path(i)} is {tuple(image.shape[1:])} but "
                             f"{self.label_path(i)} is {tuple(labels.shape)} (rows, columns)")
        box, size = self.frame_box(i, image), self.working_size(i)
        image = self._working_image(i, image)
        labels = labels.numpy().astype(np.int32)
        labels = torch.from_numpy(self._to_working(labels, box, size, Image.NEAREST).astype(np.int64))
        item = (image, labels)
        if self._cache is not None:
            self._cache[key] = item
        return item

    def image(self, i: int) -> torch.Tensor:
        """Item i's ``(3, h, w)`` image at the working size; its label file is not read
        (prediction needs none, and a bad one must not stop it)."""
        i = self._index(i)
        if self._cache is not None and self.names[i] in self._cache:
            return self._cache[self.names[i]][0]
        return self._working_image(i, read_image(self.image_path(i), self.kind))

    def view(self, ids: Sequence[str], transform=None) -> LabelledFolder:
        """The same folder restricted to ``ids`` (a split, a curriculum stage), sharing the
        decoded-item cache, with its own ``transform``."""
        unknown = [i for i in ids if i not in self._images]
        if unknown:
            raise KeyError(f"{self.kind}: id {unknown[0]!r} is not in this data set")
        out = copy.copy(self)
        out.names, out.transform = list(ids), transform
        return out

    def instance_counts(self) -> List[int]:
        """Instances per item at the working size (decodes, and checks, every file once)."""
        return [int((torch.unique(self.labels(i)) > 0).sum()) for i in range(len(self))]
