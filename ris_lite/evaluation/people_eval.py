"""Scoring the people experiment: region AP of RIS, of RIS+CRF and of a non-learned baseline,
and the occlusion test (does RIS emit the front figures first?).

Explained in the book chapter ``book/11_people``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from ..model.crf import CRFConfig, refine
from ..model.ris import first_claim_labels
from .metrics import (
    ImageDetections,
    average_precision_r,
    average_precision_r_mean,
    failure_kinds,
    mask_iou,
)


@torch.no_grad()
def ris_detections(model, images: torch.Tensor, max_steps: int = 10, batch_size: int = 16
                   ) -> List[Tuple[torch.Tensor, np.ndarray]]:
    """RIS's instances as scored detections: for each image ``(labels (H,W) int64, scores
    (k,))`` where ``labels`` is ``predict``'s map (ids 1..k in the order emitted) and
    ``scores[j]`` is the confidence s_t of the step that emitted id j + 1. Detection j is
    ``labels == j + 1``."""
    out = []
    for s in range(0, len(images), batch_size):
        for masks, scores in model.kept_masks(images[s:s + batch_size], max_steps, return_scores=True):
            labels, steps = first_claim_labels(masks, return_steps=True)
            out.append((labels, scores[steps].double().numpy()))
    return out


def refined_detections(image: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor,
                       config: Optional[CRFConfig] = None) -> Tuple[torch.Tensor, np.ndarray]:
    """RIS+CRF's instances on one image as scored detections, as :func:`ris_detections` gives
    RIS's: ``image (3, H, W)``, RIS's kept soft masks ``(k, H, W)`` and their scores ``(k,)``
    -> ``(labels (H, W) int64, scores (k',))``. ``labels`` is the CRF's map
    (:func:`ris_lite.model.crf.refine`), ids 1..k' in the order emitted; detection j keeps the
    score of the step that emitted it: the CRF moves boundaries, it does not re-rank."""
    claims, steps = first_claim_labels(masks, return_steps=True)
    # only the steps that own pixels in RIS's map: RIS+CRF refines RIS's instances, never adds one
    labels = refine(image, masks[steps], config)
    k = int(labels.max())
    if k < len(steps):
        # an instance lost every pixel to the CRF and the ids closed up: each survivor is the
        # RIS instance it overlaps most (ids stay in the order emitted, so the order holds)
        overlap = np.zeros((k + 1, len(steps) + 1), np.int64)
        np.add.at(overlap, (labels.numpy().ravel(), claims.numpy().ravel()), 1)
        steps = steps[overlap[1:, 1:].argmax(1)]
    return labels, scores[steps].double().numpy()


@torch.no_grad()
def crf_detections(model, images: torch.Tensor, config: Optional[CRFConfig] = None, max_steps: int = 10,
                   batch_size: int = 16) -> List[Tuple[torch.Tensor, np.ndarray]]:
    """RIS+CRF (the paper's Table 1 row) on ``images (B, 3, H, W)``: :func:`refined_detections`
    of each image, with ``config`` (default: the model's ``crf_config``, tuned on validation
    scenes for a shipped model, else ``CRFConfig()``)."""
    config = config or getattr(model, "crf_config", None) or CRFConfig()
    out = []
    for s in range(0, len(images), batch_size):
        batch = images[s:s + batch_size]
        for image, (masks, scores) in zip(batch, model.kept_masks(batch, max_steps, return_scores=True)):
            out.append(refined_detections(image.cpu(), masks, scores, config))
    return out


def label_masks(labels, k: int) -> np.ndarray:
    """``(k, H, W)`` bool: ``labels == 1 .. k``."""
    labels = torch.as_tensor(labels)
    return np.stack([(labels == j).numpy() for j in range(1, k + 1)]) if k else np.zeros((0, *labels.shape), bool)


def label_detections(labels, scores, gt_masks, void=None, crowd=None) -> ImageDetections:
    """A label map and one score per id as :class:`~ris_lite.evaluation.metrics.ImageDetections`."""
    return ImageDetections(label_masks(labels, len(scores)), np.asarray(scores, float), np.asarray(gt_masks, bool),
                           void, crowd)


def predictions_region_ap(predictions, gts) -> Dict[str, float]:
    """:func:`region_ap` of label-map predictions ``(labels (H,W), scores (k,))``, one per
    image, against true masks ``(n,H,W)`` (no void, no crowd: the stand-in)."""
    return region_ap([label_detections(lab, sc, g) for (lab, sc), g in zip(predictions, gts)])


def model_region_ap(model, dataset, max_steps: int = 10, batch_size: int = 8,
                    crf: Optional[CRFConfig] = None) -> Dict[str, float]:
    """APʳ(0.5) and APʳ Ave of RIS (of RIS+CRF with the CRF parameters ``crf``) on any data set
    whose ``ground_truth(i)`` gives an item's true masks, void and crowd (``PeopleDataset``,
    ``VOCPeople``, ``COCOPeople``), images read ``batch_size`` at a time."""
    dets = []
    for s in range(0, len(dataset), batch_size):
        idx = range(s, min(s + batch_size, len(dataset)))
        images = torch.stack([dataset[i][0] for i in idx])
        found = (ris_detections(model, images, max_steps, batch_size) if crf is None
                 else crf_detections(model, images, crf, max_steps, batch_size))
        for i, (labels, scores) in zip(idx, found):
            dets.append(ImageDetections(label_masks(labels, len(scores)), np.asarray(scores, float),
                                        *dataset.ground_truth(i)))
    return region_ap(dets)


def row_median_foreground(image: torch.Tensor, threshold: float) -> np.ndarray:
    """``(H, W)`` bool: pixels whose colour is farther than ``threshold`` from their row's median.

    Outdoor backgrounds change mostly with height (sky, horizon, ground), people stand out
    within their row: a non-learned foreground detector. A binary opening removes specks."""
    img = torch.as_tensor(image).numpy()
    median = np.median(img, axis=2, keepdims=True)
    return ndimage.binary_opening(np.sqrt(((img - median) ** 2).sum(0)) > threshold)


def components_detections(foreground: np.ndarray, min_area: int = 20) -> Tuple[np.ndarray, np.ndarray]:
    """Connected components of a foreground mask as detections ``(labels (H,W), scores (k,))``,
    larger components first and scored higher (area / image area)."""
    labels, n = ndimage.label(foreground)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = [k + 1 for k in np.argsort(-areas, kind="stable") if areas[k] >= min_area]
    out = np.zeros_like(labels)
    for new, old in enumerate(keep, 1):
        out[labels == old] = new
    return out, np.array([areas[k - 1] / foreground.size for k in keep])


def baseline_detections(images: Sequence[torch.Tensor], threshold: float, min_area: int = 20):
    """The non-learned baseline on each image: :func:`row_median_foreground` then
    :func:`components_detections`."""
    return [components_detections(row_median_foreground(im, threshold), min_area) for im in images]


def tune_people_baseline(images, gts, thresholds=(0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6), min_areas=(10, 20, 40)) -> Dict:
    """The baseline's threshold and minimum area that maximise APʳ(0.5) on (validation)
    ``images`` with true masks ``gts``."""
    best = None
    for t in thresholds:
        for a in min_areas:
            dets = [label_detections(lab, sc, g) for (lab, sc), g in zip(baseline_detections(images, t, a), gts)]
            ap = average_precision_r(dets, 0.5)
            if best is None or ap > best["ap50"]:
                best = {"threshold": t, "min_area": a, "ap50": ap}
    return best


def region_ap(detections: Sequence[ImageDetections]) -> Dict[str, float]:
    """APʳ at IoU 0.5 and averaged over 0.1..0.9 (Table 1's two rows), VOC/SDS protocol."""
    detections = list(detections)
    return {"ap50": average_precision_r(detections, 0.5), "ap_mean": average_precision_r_mean(detections)}


def matched_instances(labels, gt_masks, iou_threshold: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Predicted instances (``labels (H, W)``, ids 1..k) matched one-to-one to true masks
    ``(n, H, W)`` (maximum total IoU, pairs below ``iou_threshold`` dropped): ``(ids - 1,
    figures)``, two int arrays of the matched pairs' indices, sorted by predicted id."""
    labels = torch.as_tensor(labels)
    k = int(labels.max())
    if k == 0 or len(gt_masks) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    iou = mask_iou(label_masks(labels, k), np.asarray(gt_masks, bool))
    rows, cols = linear_sum_assignment(-iou)
    ok = iou[rows, cols] >= iou_threshold
    return rows[ok], cols[ok]


def emission_vs_depth(labels, gt_masks, depth, iou_threshold: float = 0.5) -> Dict:
    """Match RIS's instances (ids in the order emitted) to the true figures (one-to-one,
    maximum total IoU, IoU >= ``iou_threshold``) and compare the emission order with depth.

    Returns ``{"tau": Kendall's tau (NaN below two matches), "matched": m, "front_first":
    whether the first matched emission is the nearest matched figure (None below two)}``."""
    steps, figures = matched_instances(labels, gt_masks, iou_threshold)
    depths = np.asarray(depth, float)[figures]
    if len(steps) < 2:
        return {"tau": float("nan"), "matched": int(len(steps)), "front_first": None}
    return {"tau": depth_rank_correlation(steps, depths), "matched": int(len(steps)),
            "front_first": bool(depths[np.argmin(steps)] == depths.min())}


def bootstrap_ci(values: Sequence[float], level: float = 0.95, samples: int = 2000, seed: int = 0
                 ) -> Tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its percentile-bootstrap interval."""
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if len(v) == 0:
        raise ValueError("no finite values to average")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (samples, len(v)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def score_people(model, dataset, baseline: Dict, max_steps: int = 10, oracle: bool = True,
                 crf: Optional[CRFConfig] = None) -> Dict:
    """Everything the people benchmark reports on a :class:`~ris_lite.data.people.PeopleDataset`.

    ``baseline``: the parameters of :func:`tune_people_baseline` (tuned on another split);
    ``crf``: also score RIS+CRF with these CRF parameters (:func:`crf_detections`). Returns a
    dict with

    * ``"ris"``, ``"baseline"``, ``"oracle_foreground"``: region AP of RIS, of the baseline and of
      the connected components of the TRUE foreground (what separating touching figures is worth);
    * with ``crf``: ``"ris_crf"``, region AP of RIS+CRF, with its label maps and scores
      (``"ris_crf_labels"``, ``"ris_crf_scores"``);
    * ``"occlusion"``: one :func:`emission_vs_depth` record per image;
    * ``"failures"``: RIS's joined / missed / hallucinated instances
      (:func:`ris_lite.evaluation.metrics.failure_kinds`) summed, with the numbers of true and
      predicted people;
    * ``"ris_labels"``, ``"ris_scores"``: RIS's label maps and the scores of their ids.
    """
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    gts = [dataset[i][1].numpy() for i in range(len(dataset))]
    ris = ris_detections(model, images, max_steps)
    base = baseline_detections(list(images), baseline["threshold"], baseline["min_area"])
    out = {"ris": predictions_region_ap(ris, gts), "baseline": predictions_region_ap(base, gts)}
    if oracle:
        out["oracle_foreground"] = predictions_region_ap([components_detections(g.any(0), 1) for g in gts], gts)
    out["occlusion"] = [emission_vs_depth(lab, g, dataset.scene(i).depth) for i, ((lab, _), g) in
                        enumerate(zip(ris, gts))]
    kinds = {"joined": 0, "missed": 0, "hallucinated": 0}
    for i, (lab, _) in enumerate(ris):
        for kind, ids in failure_kinds(lab, dataset.labels(i)).items():
            kinds[kind] += len(ids)
    out["failures"] = {**kinds, "people": int(sum(len(g) for g in gts)),
                       "predicted": int(sum(len(sc) for _, sc in ris))}
    out["ris_labels"], out["ris_scores"] = [lab for lab, _ in ris], [sc for _, sc in ris]
    if crf is not None:
        refined = crf_detections(model, images, crf, max_steps)
        out["ris_crf"] = predictions_region_ap(refined, gts)
        out["ris_crf_labels"], out["ris_crf_scores"] = [lab for lab, _ in refined], [sc for _, sc in refined]
    return out


def occlusion_summary(records: Sequence[Dict]) -> Dict:
    """Mean Kendall tau with its 95 % bootstrap interval over images with two or more matched
    figures, and how often the first matched emission is the nearest figure vs chance (1/m)."""
    usable = [r for r in records if r["front_first"] is not None]
    if not usable:
        raise ValueError("no image has two figures matched: the occlusion test needs some")
    tau, lo, hi = bootstrap_ci([r["tau"] for r in usable])
    return {"images": len(usable), "tau": tau, "tau_low": lo, "tau_high": hi,
            "front_first": float(np.mean([r["front_first"] for r in usable])),
            "front_first_chance": float(np.mean([1 / r["matched"] for r in usable]))}


def depth_rank_correlation(order: Sequence[int], depth: Sequence[float]) -> float:
    """Kendall's tau between the step at which each figure was emitted (``order``) and its
    depth: +1 = strictly front to back, -1 = back to front, NaN for fewer than two figures."""
    from scipy.stats import kendalltau

    order, depth = np.asarray(order, float), np.asarray(depth, float)
    if len(order) != len(depth):
        raise ValueError(f"{len(order)} emission steps for {len(depth)} depths")
    if len(order) < 2:
        return float("nan")
    return float(kendalltau(order, depth).statistic)
