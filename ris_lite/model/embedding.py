"""Ours, not the paper's: proposal-free pixel embeddings (De Brabandere, Neven & Van Gool 2017,
"Semantic instance segmentation with a discriminative loss function").

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR").

::

    image -> FCN (RIS's plant FCN) -> head_layers x (3x3 conv, ReLU) -> 1x1 conv -> embeddings (E per pixel)
                                                                     -> 1x1 conv -> foreground logit
    (both bilinearly upsampled to the input size)

No step, no query, no count: training pulls every leaf's pixel embeddings to within ``delta_v``
of their mean and pushes the means of two leaves at least ``2 delta_d`` apart (the
discriminative loss, ``ris_lite.training.discriminative``); a foreground head says which
pixels are plant. The leaves, and so the count, only appear at inference, by clustering the
foreground's embeddings (:func:`cluster_embeddings`).

Why the clustering can be exact: when the pull and push terms are zero, each embedding lies
within ``delta_v`` of its leaf's mean and two means lie at least ``2 delta_d`` apart. Then every
embedding of a leaf lies within ``2 delta_v`` of every other of the same leaf, and at least
``2 delta_d - 2 delta_v`` from any embedding of another leaf: with ``delta_d > 2 delta_v`` (the
paper's 1.5 > 2 x 0.5) a ball of radius ``bandwidth = 2 delta_v`` around ANY embedding holds its
whole leaf and nothing else. Around the leaf's mean the other leaves are even ``2 delta_d -
delta_v`` away.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast, resolve_precision
from .assembly import consecutive_in_order
from .inputs import as_image_batch, check_max_steps, check_size, check_threshold
from .set_prediction import PlantConfig, PlantFeatures, check_images


@dataclass
class EmbeddingConfig(PlantConfig):
    """Everything needed to rebuild an :class:`EmbeddingModel` (stored in checkpoints); the loss's
    margins live here because the clustering at inference is built on them."""

    embed_dim: int = 16
    #: pull margin: an embedding within delta_v of its leaf's mean costs nothing (the paper: 0.5)
    delta_v: float = 0.5
    #: push margin: two leaves' means at least 2 delta_d apart cost nothing (the paper: 1.5)
    delta_d: float = 1.5
    #: weights of the pull, push and regulariser terms (the paper: 1, 1, 0.001)
    var_weight: float = 1.0
    dist_weight: float = 1.0
    reg_weight: float = 0.001
    #: clustering radius in embedding space; None: 2 delta_v (module docstring)
    bandwidth: Optional[float] = None
    #: clusters of fewer pixels join the nearest larger cluster (ours: stray pixels between two
    #: leaves would otherwise each count as a leaf)
    min_cluster_size: int = 8

    def __post_init__(self):
        super().__post_init__()
        if not 0 < 2 * self.delta_v < self.delta_d:
            raise ValueError(f"need 0 < 2 delta_v < delta_d for the clustering to separate leaves, got "
                             f"delta_v={self.delta_v}, delta_d={self.delta_d}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {self.bandwidth}")

    @property
    def radius(self) -> float:
        """The clustering bandwidth: ``bandwidth``, else ``2 delta_v``."""
        return 2 * self.delta_v if self.bandwidth is None else self.bandwidth


class EmbeddingModel(nn.Module):
    """``forward(images (B,3,H,W)) -> (embeddings (B,E,H,W), foreground logits (B,H,W))``."""

    def __init__(self, config: Optional[EmbeddingConfig] = None, **overrides):
        super().__init__()
        config = config or EmbeddingConfig()
        if overrides:
            config = EmbeddingConfig.from_dict({**config.to_dict(), **overrides})
        self.config = c = config
        self.features = PlantFeatures(c)
        self.embedding = nn.Conv2d(c.channels, c.embed_dim, 1)
        self.foreground = nn.Conv2d(c.channels, 1, 1)
        #: no RIS+CRF parameters: ``predict`` has no ``crf`` (RIS's alone)
        self.crf_config = None

    def trainable_parameters(self, freeze_fcn: bool = False) -> List[nn.Parameter]:
        """All parameters (the trainer's optimiser); ``freeze_fcn`` belongs to RIS's people phase."""
        if freeze_fcn:
            raise ValueError("freeze_fcn is RIS's first people phase: an embedding model trains all its parameters")
        return list(self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: torch.Tensor):
        """``images (B,3,H,W)`` -> ``(embeddings (B,E,H,W), foreground logits (B,H,W))``, both
        computed at the feature grid and bilinearly upsampled to the input size."""
        check_images(images, self.config.in_channels, "EmbeddingModel")
        size = images.shape[2:]
        x = self.features(images)
        emb, fg = self.embedding(x), self.foreground(x)
        if emb.shape[2:] != size:
            emb = F.interpolate(emb, size=size, mode="bilinear", align_corners=False)
            fg = F.interpolate(fg, size=size, mode="bilinear", align_corners=False)
        return emb, fg.squeeze(1)

    @torch.no_grad()
    def predict(self, images, max_steps: int = 30, fg_threshold: float = 0.5, bandwidth: Optional[float] = None,
                min_size: Optional[int] = None, crf=False, precision: str = "fp32") -> List[torch.Tensor]:
        """``(H, W)`` int64 label maps on the CPU (0 background, ids 1..k consecutive): the pixels
        whose foreground probability exceeds ``fg_threshold``, clustered by
        :func:`cluster_embeddings` (``bandwidth`` and ``min_size`` default to the config's
        ``radius`` and ``min_cluster_size``); at most ``max_steps`` segments, the largest (the
        rest become background). Images as ``RIS.predict`` takes them. ``crf`` must be False."""
        if crf is not False and crf is not None:
            raise ValueError("crf: RIS+CRF refines RIS's masks; an embedding model predicts without it")
        check_max_steps(max_steps)
        check_threshold("fg_threshold", fg_threshold)
        if bandwidth is not None and not (isinstance(bandwidth, numbers.Real) and 0 < bandwidth < math.inf):
            raise ValueError(f"bandwidth must be a finite number > 0 (None: the config's radius), got {bandwidth!r}")
        if min_size is not None:
            check_size("min_size", min_size)
        c = self.config
        images = as_image_batch(images, c.in_channels, c.input_size, self.device)
        was_training = self.training
        self.eval()
        with autocast(resolve_precision(precision, images.device), images.device):
            emb, fg = self(images)
        self.train(was_training)
        radius = c.radius if bandwidth is None else bandwidth
        size = c.min_cluster_size if min_size is None else min_size
        out = []
        for e, f in zip(emb.float().cpu(), torch.sigmoid(fg.float()).cpu()):
            labels = cluster_embeddings(e, f > fg_threshold, radius, size)
            out.append(keep_largest(labels, max_steps))
        return out


def cluster_embeddings(embeddings: torch.Tensor, foreground: torch.Tensor, bandwidth: float, min_size: int = 0,
                       max_clusters: int = 64, iterations: int = 10) -> torch.Tensor:
    """Pixel embeddings ``(E, H, W)`` and a ``(H, W)`` bool foreground -> ``(H, W)`` int64 labels
    (0 background, ids 1..k consecutive in the order found).

    Greedy seeds with a mean-shift step, as De Brabandere et al. cluster at test time:

    1. the seed is the first unassigned foreground pixel in raster order;
    2. its centre starts at the seed's embedding and moves to the mean of the unassigned
       foreground embeddings within ``bandwidth`` of it, until it stops moving (at most
       ``iterations`` times; a flat-kernel mean shift);
    3. every unassigned foreground pixel within ``bandwidth`` of the centre, and the seed,
       take the next id; repeat from 1 until every foreground pixel has an id.

    After ``max_clusters`` seeds the pixels left join their nearest centre (a bound on the work
    when the embeddings are not yet trained); then clusters of fewer than ``min_size`` pixels
    join the nearest centre of a larger one (by the pixel's embedding), or become background
    when no cluster is that large. For embeddings at zero pull and push loss and
    ``bandwidth = 2 delta_v`` the result is exactly the leaves (module docstring).
    """
    if embeddings.ndim != 3 or foreground.shape != embeddings.shape[1:]:
        raise ValueError(f"embeddings must be (E,H,W) and foreground (H,W), got {tuple(embeddings.shape)} and "
                         f"{tuple(foreground.shape)}")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    fg = foreground.bool()
    points = embeddings.permute(1, 2, 0)[fg].float()  # (P, E) in raster order
    ids = torch.zeros(len(points), dtype=torch.int64)
    centres = []
    while len(centres) < max_clusters and bool((ids == 0).any()):
        free = ids == 0
        seed = int(free.nonzero()[0])
        centre = points[seed]
        for _ in range(iterations):
            near = free & ((points - centre).norm(dim=1) <= bandwidth)
            moved = points[near].mean(0)
            if torch.allclose(moved, centre):
                break
            centre = moved
        take = free & ((points - centre).norm(dim=1) <= bandwidth)
        take[seed] = True  # the seed always takes an id: every round assigns a pixel
        centres.append(centre)
        ids[take] = len(centres)
    if centres and bool((ids == 0).any()):
        left = ids == 0
        ids[left] = torch.cdist(points[left], torch.stack(centres)).argmin(1) + 1
    if centres and min_size > 1:
        ids = _merge_small(points, ids, min_size)
    labels = torch.zeros(fg.shape, dtype=torch.int64)
    labels[fg] = ids
    return consecutive_in_order(labels)


def _merge_small(points: torch.Tensor, ids: torch.Tensor, min_size: int) -> torch.Tensor:
    """Pixels of clusters under ``min_size`` go to the nearest mean of a cluster that is not
    (0, background, when none is)."""
    sizes = torch.bincount(ids, minlength=int(ids.max()) + 1)
    big = [k for k in range(1, len(sizes)) if sizes[k] >= min_size]
    small = (sizes[ids] < min_size)
    if not bool(small.any()):
        return ids
    out = ids.clone()
    if not big:
        out[small] = 0
        return out
    means = torch.stack([points[ids == k].mean(0) for k in big])
    out[small] = torch.tensor(big)[torch.cdist(points[small], means).argmin(1)]
    return out


def keep_largest(labels: torch.Tensor, k: int) -> torch.Tensor:
    """``(H, W)`` labels with all but the ``k`` largest segments set to background, the rest
    renumbered 1..k' in their order (ties: the earlier id stays)."""
    sizes = torch.bincount(labels.flatten())[1:]
    if len(sizes) <= k:
        return labels
    order = torch.argsort(sizes, descending=True, stable=True)
    out = labels.clone()
    out[torch.isin(out, order[k:] + 1)] = 0
    return consecutive_in_order(out)
