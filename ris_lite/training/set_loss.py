"""Ours: eq. (5)'s loss for a set model, whose K masks come out at once
(``ris_lite.model.set_prediction``).

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR").

The mask term is RIS's: the Hungarian matching of soft IoUs (``loss.pairwise_soft_iou``,
``loss.match``), each matched pair's soft IoU subtracted. Two things change with the order gone:

* every query takes part in the matching, not the first n (``ris_loss`` matches RIS's first
  ``min(T, n)`` steps, since its steps before the stop are the ones that should hold leaves);
* the score target of a query is "this query was matched", not "t <= n": a set has no first n.
  The cross-entropy is summed over all K queries, as ``ris_loss`` sums it over the steps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .loss import EPS, _check_inputs, match, pairwise_soft_iou


def set_matches(iou: torch.Tensor, counts) -> list:
    """Hungarian matching of all K predictions to the instances: ``iou (B, K, N)`` -> per image
    ``(pred_idx, gt_idx)`` numpy arrays, ``min(K, n)`` pairs. ``loss.match`` on the transposed
    IoUs: its "first min(T, n) rows" are then the image's n instances, each free to take any
    of the K queries."""
    B, K, _ = iou.shape
    flipped = match(iou.transpose(1, 2), [K] * B, counts)  # rows: instances, columns: queries
    return [(queries, instances) for instances, queries in flipped]


def set_loss(masks: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor, counts, lam: float = 1.0,
             scores_are_logits: bool = False, return_parts: bool = False):
    """The set model's loss for a batch, summed over images and divided by B (module docstring).

    Args:
        masks: ``(B, K, H, W)`` predicted masks in [0, 1].
        scores: ``(B, K)`` in [0, 1] (or logits with ``scores_are_logits``).
        targets: ``(B, N, H, W)`` bool, instances of image i in ``targets[i, :counts[i]]``.
        counts: ``(B,)`` int; an image may not hold more instances than there are queries.
        lam: weight of the score term (1, as eq. 5).
        return_parts: also return a dict with ``iou`` (mean matched soft IoU per instance,
            detached), ``mask_loss``, ``score_loss`` and the ``matches``.
    """
    counts = _check_inputs(masks, scores, targets, counts)
    B, K = scores.shape
    if int(counts.max()) > K:
        raise ValueError(f"an image holds {int(counts.max())} instances but the set model has {K} queries: "
                         "build it with queries >= the largest count")
    iou = pairwise_soft_iou(masks, targets)
    matches = set_matches(iou, counts)
    b_idx = np.concatenate([np.full(len(r), b) for b, (r, _) in enumerate(matches)]).astype(np.int64)
    p_idx = np.concatenate([r for r, _ in matches]).astype(np.int64)
    g_idx = np.concatenate([c for _, c in matches]).astype(np.int64)
    dev = masks.device
    b_t, p_t = torch.from_numpy(b_idx).to(dev), torch.from_numpy(p_idx).to(dev)
    matched = iou[b_t, p_t, torch.from_numpy(g_idx).to(dev)]
    mask_loss = -matched.sum()

    score_target = torch.zeros_like(scores)
    score_target[b_t, p_t] = 1.0  # matched queries hold a leaf, the rest none
    if scores_are_logits:
        score_loss = F.binary_cross_entropy_with_logits(scores, score_target, reduction="sum")
    else:
        score_loss = F.binary_cross_entropy(scores.clamp(EPS, 1 - EPS), score_target, reduction="sum")
    loss = (mask_loss + lam * score_loss) / B
    if not return_parts:
        return loss
    parts = {"iou": float(matched.detach().sum()) / max(len(p_idx), 1), "mask_loss": float(mask_loss.detach()) / B,
             "score_loss": float(score_loss.detach()) / B, "matches": matches}
    return loss, parts
