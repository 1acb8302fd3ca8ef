"""Readers of the paper's people data: Pascal VOC 2012 and MS COCO person instances.

Explained in the book chapter ``book/11_people``.

Both give the contract of every ``ris_lite`` data set -- item ``i`` is ``(image (3,S,S)
float32 in [0, 1], masks (n,S,S) bool)`` -- and carry what region AP must leave out:
``void(i)`` (VOC's 255 pixels, which outline every object and hide hard regions, plus the
padding) and ``crowd(i)`` (COCO's ``iscrowd`` regions). ``detections(i, masks, scores)``
packs a prediction for :func:`ris_lite.evaluation.metrics.average_precision_r`.

Each image goes to ``S x S`` (500 in the paper) the way the paper describes: shrunk to fit if
a side is longer than ``S`` (COCO; VOC images are at most 500 pixels), then padded right and
bottom. ``letterbox`` says where the image went, so predictions map back.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import warnings
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

#: the person class of VOC's 20 (+ background 0, void 255)
VOC_PERSON = 15
VOC_VOID = 255


class Letterbox(NamedTuple):
    """Where an ``original`` (rows, cols) image sits in the square frame: scaled by
    ``scale`` to ``placed`` (rows, cols) at the top left."""

    original: Tuple[int, int]
    placed: Tuple[int, int]
    scale: float


def letterbox(image: torch.Tensor, masks: torch.Tensor, void: torch.Tensor, size: int):
    """``image (3,h,w)``, ``masks (n,h,w)`` bool, ``void (h,w)`` bool -> the same in an
    ``size x size`` frame (shrunk to fit, never enlarged; padding is void) and the
    :class:`Letterbox`."""
    h, w = image.shape[1:]
    scale = min(1.0, size / max(h, w))
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    if (ph, pw) != (h, w):
        image = F.interpolate(image[None], size=(ph, pw), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        stack = torch.cat([masks, void[None]]).float()[None]
        stack = F.interpolate(stack, size=(ph, pw), mode="nearest")[0] > 0.5
        masks, void = stack[:-1], stack[-1]
    out_image = torch.zeros(3, size, size)
    out_image[:, :ph, :pw] = image
    out_masks = torch.zeros(len(masks), size, size, dtype=torch.bool)
    out_masks[:, :ph, :pw] = masks
    out_void = torch.ones(size, size, dtype=torch.bool)
    out_void[:ph, :pw] = void
    return out_image, out_masks, out_void, Letterbox((h, w), (ph, pw), scale)


def _read_rgb(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"image file missing: {path}")
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _read_index_png(path: Path) -> np.ndarray:
    """A VOC palette PNG as its raw indices (not the colours)."""
    if not path.is_file():
        raise FileNotFoundError(f"label file missing: {path}")
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: VOC label images are palette (P) PNGs of indices, got mode {im.mode}")
        return np.asarray(im).astype(np.int64)


class PersonRecord(NamedTuple):
    image: torch.Tensor  # (3, S, S)
    masks: torch.Tensor  # (n, S, S) bool
    void: torch.Tensor  # (S, S) bool
    crowd: torch.Tensor  # (c, S, S) bool
    box: Letterbox


class PersonDataset(torch.utils.data.Dataset):
    """Base of the person readers: subclasses set ``names`` and ``size`` and implement
    ``_read(i) -> (image (3,h,w), masks (n,h,w), void (h,w), crowd (c,h,w))`` at file size."""

    names: List[str]
    size: int
    transform = None

    def _init_cache(self, cache: bool) -> None:
        self._cache = {} if cache else None

    def __len__(self) -> int:
        return len(self.names)

    def record(self, i: int) -> PersonRecord:
        """Item ``i`` in the square frame with its void, crowd regions and letterbox (cached)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        i %= len(self)
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image, masks, void, crowd = self._read(i)
        image, both, void, box = letterbox(image, torch.cat([masks, crowd]), void, self.size)
        masks, crowd = both[:len(masks)], both[len(masks):]
        masks = masks[masks.flatten(1).any(1)]  # an instance shrunk to nothing is no instance
        rec = PersonRecord(image, masks, void, crowd, box)
        if self._cache is not None:
            self._cache[i] = rec
        return rec

    def __getitem__(self, i: int):
        rec = self.record(i)
        if self.transform is not None:
            return self.transform(rec.image, rec.masks)
        return rec.image, rec.masks

    def void(self, i: int) -> torch.Tensor:
        """``(S, S)`` bool: pixels no IoU counts (unlabelled borders, padding)."""
        return self.record(i).void

    def crowd(self, i: int) -> torch.Tensor:
        """``(c, S, S)`` bool crowd regions (none in VOC)."""
        return self.record(i).crowd

    def labels(self, i: int) -> torch.Tensor:
        """``(S, S)`` int64 label map of item ``i``: where true instances overlap (COCO), the
        pixel goes to the one listed first."""
        labels = torch.zeros(self.size, self.size, dtype=torch.int64)
        for k, m in enumerate(self.record(i).masks):
            labels[m & (labels == 0)] = k + 1
        return labels

    def ground_truth(self, i: int):
        """Item ``i``'s true masks ``(n, S, S)`` bool, void and crowd ``(S, S)`` bool, as region
        AP reads them (``ris_lite.evaluation.people_eval``)."""
        rec = self.record(i)
        return rec.masks.numpy(), rec.void.numpy(), rec.crowd.numpy()


def _check_listed(root: Path, listing: Path, ids: Sequence[str]) -> None:
    """Every id a VOC split list names has its image and both label files (checked up front: a
    file gone was found half-way through an evaluation, named without the list naming it)."""
    missing = [(i, p) for i in ids for p in (root / "JPEGImages" / f"{i}.jpg", root / "SegmentationObject" / f"{i}.png",
                                             root / "SegmentationClass" / f"{i}.png") if not p.is_file()]
    if missing:
        i, p = missing[0]
        raise FileNotFoundError(f"VOC: {listing} names {i!r} but {p} is missing ({len({m[0] for m in missing})} of "
                                f"its {len(ids)} ids lack a file): restore it, or remove the id from the list")


class VOCPeople(PersonDataset):
    """The person instances of Pascal VOC 2012's segmentation set.

    Args:
        root: ``VOCdevkit/VOC2012`` (or ``VOCdevkit``), holding ``JPEGImages/``,
            ``SegmentationObject/``, ``SegmentationClass/`` and ``ImageSets/Segmentation/``.
        split: ``"train"``, ``"val"`` (the paper's test set) or ``"trainval"``.
        size: side of the square frame (500 in the paper).
        with_people_only: keep only images with at least one person (region AP of the person
            class is computed over every image of the split, so the default keeps them all).
    An object is a person when most of its pixels are of class 15 in ``SegmentationClass``.
    """

    def __init__(self, root, split: str = "val", size: int = 500, ids: Optional[Sequence[str]] = None,
                 with_people_only: bool = False, transform=None, cache: bool = True):
        root = Path(root)
        if (root / "VOC2012").is_dir():
            root = root / "VOC2012"
        for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"{root}: no {sub}/ folder; pass the VOC2012 folder of VOCdevkit")
        self.root, self.size, self.transform = root, int(size), transform
        if ids is None:
            listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"no split file {listing} (splits: train, val, trainval)")
            ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            _check_listed(root, listing, ids)
        self.names = list(ids)
        self._init_cache(cache)
        if with_people_only:
            self.names = [n for n, count in zip(self.names, self.instance_counts()) if count]

    def instance_counts(self) -> List[int]:
        """People per image, read from the label PNGs only (no JPEG is decoded)."""
        return [len(self._person_ids(k)[0]) for k in range(len(self))]

    def _person_ids(self, i: int):
        name = self.names[i]
        objects = _read_index_png(self.root / "SegmentationObject" / f"{name}.png")
        classes = _read_index_png(self.root / "SegmentationClass" / f"{name}.png")
        if objects.shape != classes.shape:
            raise ValueError(f"{name}: SegmentationObject {objects.shape} and SegmentationClass "
                             f"{classes.shape} differ in size")
        people = []
        for k in np.unique(objects):
            if k in (0, VOC_VOID):
                continue
            cls = classes[objects == k]
            if np.bincount(cls[cls != VOC_VOID], minlength=VOC_PERSON + 1).argmax() == VOC_PERSON:
                people.append(int(k))
        return people, objects

    def _read(self, i: int):
        people, objects = self._person_ids(i)
        image = _read_rgb(self.root / "JPEGImages" / f"{self.names[i]}.jpg")
        if tuple(image.shape[1:]) != objects.shape:
            raise ValueError(f"{self.names[i]}: image {tuple(image.shape[1:])} and labels {objects.shape} differ in size")
        objects_t = torch.from_numpy(objects)
        masks = torch.stack([objects_t == k for k in people]) if people else torch.zeros(0, *objects.shape, dtype=torch.bool)
        return image, masks, objects_t == VOC_VOID, torch.zeros(0, *objects.shape, dtype=torch.bool)


@functools.lru_cache(maxsize=2)
def _coco_index(path: str, mtime_ns: int):
    """pycocotools' index of an instances file, read once per process and file version (COCO's
    train file is 450 MB; a training run asks for it for its curriculum, its split and each
    stage's data set)."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("COCOPeople needs pycocotools (pip install pycocotools, or ris-lite[people])") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None


def coco_image_folder(annotations) -> Path:
    """The image folder of a COCO instances file: COCO's own layout (``annotations/
    instances_train2017.json`` beside ``train2017/``), else ``images/`` beside ``annotations/``."""
    annotations = Path(annotations)
    if not annotations.is_file():
        raise FileNotFoundError(f"no COCO annotation file {annotations}")
    root, stem = annotations.parent.parent, annotations.stem
    tried = ([root / stem.partition("_")[2]] if stem.startswith("instances_") else []) + [root / "images"]
    for folder in tried:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"{annotations}: no image folder at {' or '.join(str(f) for f in tried)}")


class COCOPeople(PersonDataset):
    """The person instances of an MS COCO instances file (needs ``pycocotools``).

    Args:
        annotations: e.g. ``annotations/instances_val2017.json``.
        images: the folder of that set's images.
        size: side of the square frame (500 as for VOC).
        ids: COCO image ids to read (default: every image with a person annotation).
    Polygon, uncompressed-RLE and compressed-RLE masks are all read. ``iscrowd`` annotations
    are no instances: they become crowd regions, which region AP ignores the COCO way.
    """

    def __init__(self, annotations, images, size: int = 500, ids: Optional[Sequence[int]] = None,
                 category: str = "person", transform=None, cache: bool = True):
        annotations, self.image_dir = Path(annotations), Path(images)
        if not annotations.is_file():
            raise FileNotFoundError(f"no COCO annotation file {annotations}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"no image folder {self.image_dir}")
        self.coco = _coco_index(str(annotations), annotations.stat().st_mtime_ns)
        cats = self.coco.getCatIds(catNms=[category])
        if not cats:
            raise ValueError(f"{annotations}: no category named {category!r}")
        self.category = cats[0]
        self.ids = list(ids) if ids is not None else sorted(self.coco.getImgIds(catIds=[self.category]))
        self.names = [str(i) for i in self.ids]
        self.size, self.transform = int(size), transform
        self._init_cache(cache)

    def instance_counts(self) -> List[int]:
        """People per image (its person annotations that are no crowd), from the annotations
        alone: no image is decoded. A person the frame shrinks to nothing is dropped when the
        image is read, so an item may hold fewer."""
        def people(image_id: int) -> int:
            anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], catIds=[self.category], iscrowd=None))
            return sum(not a.get("iscrowd", 0) for a in anns)

        return [people(i) for i in self.ids]

    def _read(self, i: int):
        info = self.coco.loadImgs(self.ids[i])[0]
        image = _read_rgb(self.image_dir / info["file_name"])
        h, w = info["height"], info["width"]
        if tuple(image.shape[1:]) != (h, w):
            raise ValueError(f"{info['file_name']}: the file is {tuple(image.shape[1:])}, the annotations say {(h, w)}")
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[self.ids[i]], catIds=[self.category], iscrowd=None))

        def stack(group):
            with warnings.catch_warnings():  # pycocotools <= 2.0.11 warns under numpy 2
                warnings.simplefilter("ignore", DeprecationWarning)
                ms = [torch.from_numpy(self.coco.annToMask(a).astype(bool)) for a in group]
            return torch.stack(ms) if ms else torch.zeros(0, h, w, dtype=torch.bool)

        people = stack([a for a in anns if not a.get("iscrowd", 0)])
        crowd = stack([a for a in anns if a.get("iscrowd", 0)])
        return image, people, torch.zeros(h, w, dtype=torch.bool), crowd
