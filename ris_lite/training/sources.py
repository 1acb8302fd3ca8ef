"""Where training images come from: one small protocol, one class per kind of data.

Explained in the book chapters ``book/06_training`` (synthetic plants), ``book/10_your_data``
(real folders) and ``book/11_people`` (the people stand-in, VOC, COCO).

A source answers two questions for the trainer: which data set serves a curriculum stage's
``lo..hi`` instances on one side (``train`` / ``val``), and how training images are augmented.
Real sources also hold their split by file id (``split``, ``counts``), written to
``OUT/split.json`` so that a resumed run can check that the folder still splits the same way.
A new kind of data is a new class with ``dataset`` and ``augment``; nothing in the loop changes.
Under ``torchrun`` each rank trains on its own share of every data set (``distributed.Ranks.shard``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Tuple

from ..data.augment import RotateFlip
from ..data.folder import LabelledFolder, split_ids
from ..data.people import PEOPLE_SPLITS, FlipLeftRight, PeopleDataset
from ..data.people_readers import COCOPeople, VOCPeople, coco_image_folder
from ..data.real import open_folder
from ..data.rosette import SPLITS, RosetteDataset
from .config import TrainConfig
from .curriculum import check_curriculum


class DataSource(Protocol):
    #: ``{"train": ids, "val": ids}`` for real data (a split by file id), else None
    split: Optional[Dict[str, List[str]]]
    #: plants are seen from above and may turn any way; people stand upright: mirror only
    augment: type

    def dataset(self, side: str, lo: int, hi: int, transform):
        """The data set of one side for a stage on ``lo..hi`` instances."""


class _DrawnSource:
    """A procedural data set: ``train_images`` / ``val_images`` scenes of one side (at most
    the side's seed range), drawn with ``lo..hi`` instances."""

    split = None
    splits: Dict[str, Tuple[int, int]]

    def __init__(self, config: TrainConfig):
        self.config = config

    def length(self, side: str) -> int:
        n = self.config.train_images if side == "train" else self.config.val_images
        return min(n, self.splits[side][1] - self.splits[side][0])


class SyntheticSource(_DrawnSource):
    """The procedural rosettes (``ris_lite.data.rosette``), drawn with ``lo..hi`` leaves."""

    augment, splits = RotateFlip, SPLITS

    def dataset(self, side: str, lo: int, hi: int, transform):
        return RosetteDataset(side, length=self.length(side), transform=transform, n_leaves=(lo, hi),
                              count_sampling="uniform", **self.config.data)


class PeopleSource(_DrawnSource):
    """The people stand-in (``ris_lite.data.people``), drawn with ``lo..hi`` figures."""

    augment, splits = FlipLeftRight, PEOPLE_SPLITS

    def dataset(self, side: str, lo: int, hi: int, transform):
        return PeopleDataset(side, length=self.length(side), transform=transform, n_people=(lo, hi),
                             **self.config.data)


class _SplitSource:
    """A real data set split by file id: ``split`` and ``counts`` (instances per id)."""

    split: Dict[str, List[str]]
    counts: Dict[str, int]

    def ids(self, side: str, lo: int, hi: int) -> List[str]:
        """The side's ids with ``lo..hi`` instances (all of the side when none has)."""
        return [i for i in self.split[side] if lo <= self.counts[i] <= hi] or self.split[side]

    def record(self, source: str, val_fraction: float) -> dict:
        return {"source": source, "val_fraction": val_fraction,
                **{k: {i: self.counts[i] for i in v} for k, v in self.split.items()}}


class FolderSource(_SplitSource):
    """A folder of images and instance labels (``cvppp:PATH`` / ``folder:PATH``), read at the
    model's input size and the config's zoom; checked against the curriculum up front."""

    augment = RotateFlip

    def __init__(self, config: TrainConfig, input_size: Tuple[int, int], data: Optional[LabelledFolder] = None):
        self.real = data if data is not None else open_real_data(config, input_size)
        self.split = split_ids(self.real.names, config.val_fraction)
        self.counts = dict(zip(self.real.names, self.real.instance_counts()))
        check_curriculum(self.real, self.counts, self.split, config.curriculum)

    def dataset(self, side: str, lo: int, hi: int, transform):
        # only validation can lack a stage's counts (check_curriculum): it is then scored whole
        return self.real.view(self.ids(side, lo, hi), transform)


class _PhotoSource(_SplitSource):
    """Photographs of people read into a square frame (``ris_lite.data.people_readers``), split
    by image; images without a person are left out. ``reader(ids, transform)`` opens them."""

    augment = FlipLeftRight
    kind: str

    def __init__(self, config: TrainConfig, input_size: Tuple[int, int]):
        self.config = config
        self.root = config.source.partition(":")[2]
        h, w = input_size
        if h != w:
            raise ValueError(f"{self.kind} images are read into square frames: the model's input must be square, "
                             f"got {h}x{w}")
        self.size = h
        everything = self.reader()
        self.counts = {n: k for n, k in zip(everything.names, everything.instance_counts()) if k}
        self.split = split_ids(sorted(self.counts), config.val_fraction)

    def dataset(self, side: str, lo: int, hi: int, transform):
        ids = self.ids(side, lo, hi)
        if side == "val":
            ids = ids[:self.config.val_images]
        return self.reader(ids, transform)


class VOCSource(_PhotoSource):
    """The people of VOC 2012's *train* list, split by file name (VOC val, the paper's test
    set, is never read here)."""

    kind = "VOC"

    def reader(self, ids: Optional[List[str]] = None, transform=None) -> VOCPeople:
        return VOCPeople(self.root, "train", ids=ids, size=self.size, transform=transform, cache=False)


class COCOSource(_PhotoSource):
    """The people of an MS COCO instances file (``coco:PATH``, PATH e.g.
    ``annotations/instances_train2017.json``; its images in COCO's layout, see
    ``coco_image_folder``), split by image id; crowd regions are no training targets."""

    kind = "COCO"

    def reader(self, ids: Optional[List[str]] = None, transform=None) -> COCOPeople:
        return COCOPeople(self.root, coco_image_folder(self.root), size=self.size, transform=transform, cache=False,
                          ids=None if ids is None else [int(i) for i in ids])


def open_real_data(config: TrainConfig, input_size) -> LabelledFolder:
    """The real data set of a training config: whole frames at the scale of a model of ``input_size``
    trained at the config's zoom (``LabelledFolder``: one working size per folder, so they batch)."""
    return open_folder(config.source, size=tuple(input_size), zoom=config.data.get("zoom", 1.0), **config.folder)


def open_source(config: TrainConfig, input_size: Tuple[int, int], data: Optional[LabelledFolder] = None):
    """The source named by ``config.source`` (``data``: a real folder already opened)."""
    if config.source == "synthetic":
        return SyntheticSource(config)
    if config.source == "people":
        return PeopleSource(config)
    if config.source.startswith("voc:"):
        return VOCSource(config, input_size)
    if config.source.startswith("coco:"):
        return COCOSource(config, input_size)
    return FolderSource(config, input_size, data)


def write_split(source: _SplitSource, config: TrainConfig, out: Path) -> None:
    """``OUT/split.json``: the ids of each side and their instance counts (written once)."""
    path = out / "split.json"
    if path.is_file():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(source.record(config.source, config.val_fraction), indent=1) + "\n")
    os.replace(tmp, path)


def check_split(source: _SplitSource, config: TrainConfig, out: Path) -> None:
    """A resumed real-data run must split its folder as when it started: files added or
    removed would move images between training and validation."""
    path = out / "split.json"
    if path.is_file():
        old, new = json.loads(path.read_text()), source.record(config.source, config.val_fraction)
        if {k: old.get(k) for k in ("train", "val")} != {k: new[k] for k in ("train", "val")}:
            raise ValueError(f"{path}: the data no longer splits as when this run started "
                             "(files added, removed or relabelled); start a new --out")
