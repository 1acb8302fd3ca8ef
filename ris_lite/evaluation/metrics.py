"""CVPPP leaf-segmentation metrics (SBD, FgBgDice, DiC, ``|DiC|``) and region AP (APʳ).

Explained in the book chapter ``book/08_evaluation``.

Semantics follow the official CVPPP evaluation code: in a label map the LOWEST value is
background; ``BestDice(A, B)`` averages, over the labels of A, the best Dice against any
label of B; ``count`` is the number of labels. Ids are ranks: a raw label map with gaps (a
deleted leaf, 16-bit instance ids) is scored as its renumbered map, by default. The official
code sums over every id from min+1 to max and divides by ``max - min``, so a skipped id
counts as a leaf with Dice 0 and ``count = max - min``: ``keep_gaps=True`` gives exactly that.
Both cost memory in proportion to the map, whatever the ids' size. Negative ids are an error.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

import numpy as np
import torch


def _as_labels(x, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be an (H, W) label map, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        elif np.issubdtype(a.dtype, np.floating):
            bad = a[np.mod(a, 1) != 0]
            raise TypeError(f"{name} must hold integer labels, got {bad.size} non-integer value(s) such as "
                            f"{bad.flat[0]:g} (dtype {a.dtype}): round them, or pass the integer map")
        else:
            raise TypeError(f"{name} must hold integer labels, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} holds negative ids (down to {a.min()}): ids are 0 (background) and positive")
    return a.astype(np.int64)


def _pair(a, b):
    a, b = _as_labels(a, "first label map"), _as_labels(b, "second label map")
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in size: {a.shape} vs {b.shape}")
    return a, b


def _ranks(a: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(codes (H*W,) int64, ids (k + 1,))``: each pixel's rank among the map's distinct
    values (0: the lowest, background), and those values in increasing order."""
    ids, codes = np.unique(a.ravel(), return_inverse=True)
    return codes.reshape(-1), ids


def _best_dice_of_labels(a: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For each label of a present in the map: its best Dice with any label of b, and its id.

    Only the label pairs that overlap are visited (Dice 0 otherwise), so the cost is that of
    the map, not of the ids: ``(best (k,), ids (k,))``, k the labels of a."""
    ca, ida = _ranks(a)
    cb, idb = _ranks(b)
    ka, kb = max(len(ida) - 1, 0), max(len(idb) - 1, 0)
    best = np.zeros(ka)
    if ka == 0 or kb == 0:
        return best, ida[1:]
    size_a, size_b = np.bincount(ca, minlength=ka + 1), np.bincount(cb, minlength=kb + 1)
    both = (ca > 0) & (cb > 0)
    pairs, inter = np.unique(ca[both] * (kb + 1) + cb[both], return_counts=True)
    pa, pb = pairs // (kb + 1), pairs % (kb + 1)
    np.maximum.at(best, pa - 1, 2.0 * inter / (size_a[pa] + size_b[pb]))
    return best, ida[1:]


def best_dice_per_label(a, b, keep_gaps: bool = False) -> np.ndarray:
    """``(count(a),)`` array: for each label of a, in increasing id order, its best Dice with
    any label of b (0 when b has no labels). ``best_dice`` is its mean; the array says *which*
    leaves lose the score (small ones? partly covered ones?). ``keep_gaps=True``: the official
    code's ``(max(a) - min(a),)`` entries, one per id, 0 for a skipped id (so this array, unlike
    the scores, grows with the ids' range)."""
    a, b = _pair(a, b)
    best, ids = _best_dice_of_labels(a, b)
    if not keep_gaps:
        return best
    lo = a.min() if a.size else 0
    out = np.zeros(count_labels(a, keep_gaps=True))
    out[ids - lo - 1] = best
    return out


def best_dice(a, b, keep_gaps: bool = False) -> float:
    """BestDice(a, b): mean over a's labels of the best Dice with any label of b (0 without
    labels). ``keep_gaps=True``: the official code's mean over every id from min+1 to max of a,
    a skipped id counting as a leaf with Dice 0."""
    a, b = _pair(a, b)
    best, _ = _best_dice_of_labels(a, b)
    n = count_labels(a, keep_gaps)
    return float(best.sum() / n) if n else 0.0


def symmetric_best_dice(a, b, keep_gaps: bool = False) -> float:
    """SBD = min(BestDice(a, b), BestDice(b, a)); ``keep_gaps`` as in :func:`best_dice`."""
    return min(best_dice(a, b, keep_gaps), best_dice(b, a, keep_gaps))


def fg_bg_dice(a, b) -> float:
    """Dice of the foreground (label > min) of a and b; 1 if both are empty."""
    a, b = _pair(a, b)
    fa, fb = a > a.min(), b > b.min()
    s = fa.sum() + fb.sum()
    return 1.0 if s == 0 else float(2.0 * (fa & fb).sum() / s)


def count_labels(a, keep_gaps: bool = False) -> int:
    """Leaves in a label map: its distinct values but the lowest (background);
    ``keep_gaps=True``: the official ``max - min``."""
    a = _as_labels(a, "label map")
    if a.size == 0:
        return 0
    return int(a.max() - a.min()) if keep_gaps else len(np.unique(a)) - 1


def diff_fg_labels(pred, gt, keep_gaps: bool = False) -> int:
    """DiC = count(pred) - count(gt) (``keep_gaps`` as in :func:`count_labels`)."""
    pred, gt = _pair(pred, gt)
    return count_labels(pred, keep_gaps) - count_labels(gt, keep_gaps)


def consecutive_labels(labels) -> torch.Tensor:
    """The same instances with ids 1..n in increasing order of the old ids (0 stays background).

    The official scorer takes ``max - min`` as the count and assumes consecutive ids; label
    files with gaps (a deleted leaf) or large ids (16-bit instance images) are renumbered
    first, which changes no instance."""
    labels = torch.as_tensor(labels)
    ids, inverse = torch.unique(labels, return_inverse=True)
    if ids[0] != 0:  # no background pixel: every id moves up by one
        inverse = inverse + 1
    return inverse.to(torch.int64)


def evaluate_labels(preds: Sequence, gts: Sequence) -> Dict[str, float]:
    """Mean and std over images of SBD, FgBgDice, DiC and ``|DiC|``, as in the paper's Table 2."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    if len(gts) == 0:
        raise ValueError("nothing to evaluate: no images")
    rows = np.array([[symmetric_best_dice(p, g), fg_bg_dice(p, g), diff_fg_labels(p, g)]
                     for p, g in zip(preds, gts)], dtype=float)
    sbd, fg, dic = rows.T
    return {"sbd": float(sbd.mean()), "sbd_std": float(sbd.std()),
            "fgbg_dice": float(fg.mean()), "fgbg_dice_std": float(fg.std()),
            "dic": float(dic.mean()), "dic_std": float(dic.std()),
            "abs_dic": float(np.abs(dic).mean()), "abs_dic_std": float(np.abs(dic).std()),
            "n_images": int(len(gts))}


class ImageDetections(NamedTuple):
    """One image's input to region AP. ``masks (k,H,W)`` bool predicted instances with
    ``scores (k,)``; ``gt_masks (n,H,W)`` bool true instances; ``void (H,W)`` bool pixels left
    out of every IoU (VOC's 255 border and "difficult" regions, padding); ``crowd (c,H,W)``
    bool regions of many instances labelled as one (COCO's ``iscrowd``). A plain 3-tuple
    ``(masks, scores, gt_masks)`` is accepted wherever this is."""

    masks: object
    scores: object
    gt_masks: object
    void: object = None
    crowd: object = None


def mask_iou(pred_masks, gt_masks, void=None) -> np.ndarray:
    """``(k, n)`` IoU of every predicted against every true mask (``(k,H,W)``, ``(n,H,W)``),
    void pixels ``(H,W)`` left out of both the intersection and the union (as the SDS / VOC
    evaluation does)."""
    p, g = np.asarray(pred_masks, bool), np.asarray(gt_masks, bool)
    if p.ndim != 3 or g.ndim != 3 or p.shape[1:] != g.shape[1:]:
        raise ValueError(f"masks must be (k,H,W) and (n,H,W) of one size, got {p.shape} and {g.shape}")
    p, g = p.reshape(len(p), -1), g.reshape(len(g), -1)
    if void is not None:
        keep = ~np.asarray(void, bool).reshape(-1)
        if keep.size != p.shape[1]:
            raise ValueError(f"void mask has {keep.size} pixels, the masks {p.shape[1]}")
        p, g = p[:, keep], g[:, keep]
    p, g = p.astype(np.float64), g.astype(np.float64)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match_detections(detections: Iterable, iou_threshold: float = 0.5, protocol: str = "voc"):
    """Label every detection of a data set true or false positive, in decreasing score order.

    ``protocol="voc"`` (Hariharan et al.'s SDS evaluation, as VOC scores APʳ): a detection
    is compared with the ground truth it overlaps MOST; it is a true positive if that IoU
    reaches the threshold and that instance is still free, otherwise a false positive -- even
    when a second-best instance would have been free. ``protocol="coco"``: a detection takes
    the free instance it overlaps most among those reaching the threshold (COCO's rule).

    Under both, a detection that is no true positive but lies inside a crowd region (its
    intersection with the region over its own area reaches the threshold) is ignored, as COCO
    does. Returns ``(scores (m,), true_positive (m,) bool, n_gt)`` over the m detections
    kept, sorted by score (ties keep image and index order).
    """
    if protocol not in ("voc", "coco"):
        raise ValueError(f"protocol must be 'voc' or 'coco', got {protocol!r}")
    records, n_gt, images = [], 0, []
    for img, det in enumerate(detections):
        det = ImageDetections(*det)
        pm, gm = np.asarray(det.masks, bool), np.asarray(det.gt_masks, bool)
        sc = np.asarray(det.scores, float).reshape(-1)
        if len(pm) != len(sc):
            raise ValueError(f"image {img}: {len(pm)} masks but {len(sc)} scores")
        if len(pm) and len(gm) and pm.shape[1:] != gm.shape[1:]:
            raise ValueError(f"image {img}: predicted masks {pm.shape[1:]} and true masks {gm.shape[1:]} differ in size")
        n_gt += len(gm)
        iou = mask_iou(pm, gm, det.void) if len(pm) and len(gm) else np.zeros((len(pm), len(gm)))
        in_crowd = np.zeros(len(pm))
        if det.crowd is not None and len(det.crowd) and len(pm):
            crowd = np.asarray(det.crowd, bool).any(0).reshape(-1)
            flat = pm.reshape(len(pm), -1)
            in_crowd = (flat & crowd).sum(1) / np.maximum(flat.sum(1), 1)
        images.append((iou, in_crowd))
        records += [(-s, img, i) for i, s in enumerate(sc)]
    if n_gt == 0:
        raise ValueError("AP^r needs at least one ground-truth instance")
    records.sort()
    taken = [np.zeros(iou.shape[1], bool) for iou, _ in images]
    scores, tp = [], []
    for neg_score, img, i in records:
        iou, in_crowd = images[img]
        hit = False
        if iou.shape[1]:
            if protocol == "voc":
                j = int(np.argmax(iou[i]))
                hit = iou[i, j] >= iou_threshold and not taken[img][j]
            else:
                free = np.where(taken[img], -1.0, iou[i])
                j = int(np.argmax(free))
                hit = free[j] >= iou_threshold
            if hit:
                taken[img][j] = True
        if not hit and in_crowd[i] >= iou_threshold:
            continue  # a detection on a crowd region counts neither way
        scores.append(-neg_score)
        tp.append(hit)
    return np.array(scores), np.array(tp, bool), n_gt


def precision_recall_area(true_positive, n_gt: int, interpolation: str = "voc") -> float:
    """Area under the precision-recall curve of detections in score order.

    ``"voc"``: VOC 2010+'s all-point area under the monotone precision envelope (what the SDS
    code uses); ``"coco101"``: the mean of the envelope at recall 0, 0.01, ..., 1 (COCO's)."""
    tp = np.asarray(true_positive, float)
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    if interpolation == "coco101":
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(tp) else precision
        at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        return float(np.mean([envelope[k] if k < len(tp) else 0.0 for k in at]))
    if interpolation != "voc":
        raise ValueError(f"interpolation must be 'voc' or 'coco101', got {interpolation!r}")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def average_precision_r(detections: Iterable, iou_threshold: float = 0.5, protocol: str = "voc",
                        interpolation: str = "voc") -> float:
    """Region AP (APʳ) over a data set at one IoU threshold.

    Args:
        detections: per image an :class:`ImageDetections` (or ``(masks (k,H,W) bool,
            scores (k,), gt_masks (n,H,W) bool)``), void pixels and crowd regions optional.
        protocol: ``"voc"`` (SDS, the paper's Table 1) or ``"coco"`` matching
            (:func:`match_detections`); ``interpolation``: see :func:`precision_recall_area`.
    """
    _, tp, n_gt = match_detections(detections, iou_threshold, protocol)
    return precision_recall_area(tp, n_gt, interpolation)


def average_precision_r_mean(detections: Sequence, thresholds: Sequence[float] = tuple(np.arange(1, 10) / 10),
                             protocol: str = "voc") -> float:
    """APʳ averaged over IoU thresholds 0.1..0.9 (the paper's 'APʳ Ave')."""
    detections = list(detections)
    return float(np.mean([average_precision_r(detections, t, protocol) for t in thresholds]))


def failure_kinds(pred, gt, iou_threshold: float = 0.5) -> Dict[str, List[int]]:
    """Find the paper's failure kinds (Figs. 11-13) in one image.

    * ``joined``: predicted ids covering >= 2 ground-truth leaves by more than half each;
    * ``missed``: ground-truth ids that no prediction overlaps with IoU >= threshold;
    * ``hallucinated``: predicted ids lying mostly (> 50 %) on background.

    Background is id 0 in both maps, not the lowest id as the official scorer takes it: a
    prediction without a background pixel still has its segments judged, and a truth without
    one has none to hallucinate on.
    """
    pred, gt = _pair(pred, gt)
    pids = [i for i in np.unique(pred) if i != 0]
    gids = [i for i in np.unique(gt) if i != 0]
    joined, hallucinated = [], []
    for p in pids:
        pm = pred == p
        if (gt[pm] == 0).mean() > 0.5:
            hallucinated.append(int(p))
        covered = [g for g in gids if (pm & (gt == g)).sum() > 0.5 * (gt == g).sum()]
        if len(covered) >= 2:
            joined.append(int(p))
    missed = []
    for g in gids:
        gm = gt == g
        best = max(((pm_ := pred == p) & gm).sum() / (pm_ | gm).sum() for p in pids) if pids else 0.0
        if best < iou_threshold:
            missed.append(int(g))
    return {"joined": joined, "missed": missed, "hallucinated": hallucinated}
