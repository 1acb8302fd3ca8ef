"""The permutation-invariant loss of eq. (2)-(5) and Algorithm 1.

Explained in the book chapter ``book/05_loss``.

Batched like DETR's ``HungarianMatcher``: one soft-IoU tensor ``(B, T, N)`` for the whole
batch on the model's device, ONE copy of the small cost matrices to the CPU, one
``scipy.optimize.linear_sum_assignment`` per image, then the matched IoUs are gathered
back on the device so autograd differentiates the chosen branch of the min (eq. 5).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

EPS = 1e-6


def soft_iou(pred: torch.Tensor, target: torch.Tensor, dims: Optional[int] = None,
             eps: float = EPS) -> torch.Tensor:
    """Relaxed IoU ``<p, y> / (|p|_1 + |y|_1 - <p, y>)`` of eq. (3).

    Masks are ``(..., H, W)`` (reduced over the last two dimensions) or flattened ``(P,)``;
    pass ``dims=1`` for flattened batches ``(..., P)``. Broadcasts over leading dimensions.
    Two empty masks give 0, never NaN (eps in the denominator only, so values stay in [0, 1]).
    """
    pred = torch.as_tensor(pred, dtype=torch.float32) if not torch.is_tensor(pred) else pred
    target = torch.as_tensor(target) if not torch.is_tensor(target) else target
    target = target.to(pred.dtype)
    if dims is None:
        dims = min(2, pred.ndim)
    red = tuple(range(-dims, 0))
    inter = (pred * target).sum(red)
    union = pred.sum(red) + target.sum(red) - inter
    return inter / (union + eps)


def pairwise_soft_iou(masks: torch.Tensor, targets: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """All pairs: ``masks (B,T,H,W)``, ``targets (B,N,H,W)`` -> ``(B, T, N)``."""
    p = masks.flatten(2)
    y = targets.flatten(2).to(p.dtype)
    inter = torch.bmm(p, y.transpose(1, 2))
    union = p.sum(-1, keepdim=True) + y.sum(-1).unsqueeze(1) - inter
    return inter / (union + eps)


def match(iou: torch.Tensor, counts, lengths=None) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Hungarian matching per image on a ``(B, T, N)`` IoU tensor.

    Only the first ``min(T_i, n_i)`` predictions of image i take part (eq. 3); when
    ``T_i < n_i`` they are matched to the best ``T_i`` of the ``n_i`` instances.
    Returns per image ``(pred_idx, gt_idx)`` numpy arrays.
    """
    B, T, _ = iou.shape
    counts = [int(n) for n in counts]
    lengths = [T] * B if lengths is None else [int(t) for t in lengths]
    cost = iou.detach().float().cpu().numpy()  # the one device->host copy
    out = []
    for b in range(B):
        k = min(lengths[b], counts[b])
        if k == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
            continue
        rows, cols = linear_sum_assignment(cost[b, :k, : counts[b]], maximize=True)
        out.append((rows.astype(np.int64), cols.astype(np.int64)))
    return out


def _check_inputs(masks, scores, targets, counts):
    if masks.ndim != 4:
        raise ValueError(f"masks must be (B,T,H,W), got {tuple(masks.shape)}")
    if scores.shape != masks.shape[:2]:
        raise ValueError(f"scores must be (B,T)={tuple(masks.shape[:2])}, got {tuple(scores.shape)}")
    if targets.ndim != 4 or targets.shape[0] != masks.shape[0] or targets.shape[2:] != masks.shape[2:]:
        raise ValueError(f"targets must be (B,N,H,W) matching masks {tuple(masks.shape)}, got {tuple(targets.shape)}")
    counts = torch.as_tensor(counts)
    if counts.shape != (masks.shape[0],) or counts.is_floating_point():
        raise ValueError(f"counts must be an int tensor of shape (B,)=({masks.shape[0]},), got {tuple(counts.shape)} {counts.dtype}")
    if int(counts.max()) > targets.shape[1] or bool((counts < 0).any()):
        raise ValueError(f"counts {counts.tolist()} do not fit targets with N={targets.shape[1]}")
    return counts


def painted_leaf_targets(masks: torch.Tensor, targets: torch.Tensor, counts, iou_threshold: float = 0.5,
                         mask_threshold: float = 0.5) -> torch.Tensor:
    """Ours, not the paper's: the stop target of each step from what it painted, ``(B, T)`` in {0, 1}.

    ``masks (B, T, H, W)`` in [0, 1], ``targets (B, N, H, W)`` bool with image i's leaves in
    ``targets[i, :counts[i]]``. Step t's mask, thresholded at ``mask_threshold`` (as ``RIS.predict``
    does), is compared with every leaf by IoU; its target is 1 when the leaf it covers best has IoU
    >= ``iou_threshold`` and no earlier step has claimed that leaf (a new leaf), else 0 (it repeats
    or fragments a claimed leaf, or covers none). Eq. (5)'s target ``[t <= n]`` trains the score to
    1 for the first n steps whatever they painted, so a repeated leaf before n is rewarded with a
    high score and the count comes out right only by chance. No gradient flows through the target.
    """
    counts = [int(n) for n in torch.as_tensor(counts).tolist()]
    hard = (masks.detach() > mask_threshold).float()
    iou = pairwise_soft_iou(hard, targets.float(), eps=EPS).float().cpu()  # exact IoU of binary masks
    out = torch.zeros(masks.shape[:2])
    for b, n in enumerate(counts):
        if n == 0:
            continue
        best, leaf = iou[b, :, :n].max(dim=1)
        claimed = set()
        for t in range(masks.shape[1]):
            if best[t] >= iou_threshold and int(leaf[t]) not in claimed:
                out[b, t] = 1.0
                claimed.add(int(leaf[t]))
    return out.to(masks.device)


#: the stop score's target in eq. (5): "count" (the paper: 1 for t <= n) or "painted" (ours:
#: ``painted_leaf_targets``)
SCORE_TARGETS = ("count", "painted")


def ris_loss(masks: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor, counts,
             lam: float = 1.0, lengths=None, scores_are_logits: bool = False,
             return_parts: bool = False, score_target: str = "count"):
    """Eq. (5) for a batch, summed over images and divided by B.

    Args:
        masks: ``(B, T, H, W)`` predicted masks in [0, 1].
        scores: ``(B, T)`` confidence in [0, 1] (or logits with ``scores_are_logits``).
        targets: ``(B, N, H, W)`` bool, instances of image i in ``targets[i, :counts[i]]``.
        counts: ``(B,)`` int, instances per image (0 allowed: only the score term remains).
        lam: weight of the score term (lambda, 1 in the paper).
        lengths: optional ``(B,)`` int, predictions of image i that count (default T);
            the curriculum uses ``min(T, n_i + 2)``.
        return_parts: also return a dict with ``iou`` (mean matched soft IoU per instance,
            detached), ``mask_loss``, ``score_loss`` and the ``matches``.
        score_target: "count", eq. (5)'s ``[t <= n]``; or "painted" (ours), 1 only for a step
            that paints a leaf no earlier step painted (``painted_leaf_targets``).
    """
    if score_target not in SCORE_TARGETS:
        raise ValueError(f"score_target must be one of {', '.join(SCORE_TARGETS)}, got {score_target!r}")
    counts = _check_inputs(masks, scores, targets, counts)
    B, T = scores.shape
    lengths_t = torch.full((B,), T, dtype=torch.int64) if lengths is None else torch.as_tensor(lengths).long().cpu()
    iou = pairwise_soft_iou(masks, targets)
    matches = match(iou, counts, lengths_t)
    b_idx = np.concatenate([np.full(len(r), b) for b, (r, _) in enumerate(matches)]).astype(np.int64)
    p_idx = np.concatenate([r for r, _ in matches]).astype(np.int64)
    g_idx = np.concatenate([c for _, c in matches]).astype(np.int64)
    dev = masks.device
    matched = iou[torch.from_numpy(b_idx).to(dev), torch.from_numpy(p_idx).to(dev), torch.from_numpy(g_idx).to(dev)]
    mask_loss = -matched.sum()

    steps = torch.arange(T).unsqueeze(0)
    if score_target == "painted":
        wanted = painted_leaf_targets(masks, targets, counts).to(scores.dtype)
    else:
        wanted = (steps < counts.cpu().unsqueeze(1)).to(scores.dtype).to(dev)  # [t <= n], t 1-based
    valid = (steps < lengths_t.unsqueeze(1)).to(scores.dtype).to(dev)
    if scores_are_logits:
        bce = F.binary_cross_entropy_with_logits(scores, wanted, reduction="none")
    else:
        bce = F.binary_cross_entropy(scores.clamp(EPS, 1 - EPS), wanted, reduction="none")
    score_loss = (bce * valid).sum()
    loss = (mask_loss + lam * score_loss) / B
    if not return_parts:
        return loss
    n_matched = max(len(p_idx), 1)
    parts = {"iou": float(matched.detach().sum()) / n_matched, "mask_loss": float(mask_loss.detach()) / B,
             "score_loss": float(score_loss.detach()) / B, "matches": matches}
    return loss, parts


def overlap_penalty(masks: torch.Tensor, lengths=None, threshold: float = 0.5, eps: float = EPS) -> torch.Tensor:
    """Ours, not the paper's: how much of each step's mask lies on pixels earlier steps already
    took, summed over steps and divided by B (chapter ``book/12_beyond``).

    ``masks (B, T, H, W)`` in [0, 1]; step t of image i counts when ``t < lengths[i]``. The
    pixels taken before step t are ``U_t = [max_{s<t} m_s > threshold]`` (detached, the rule by
    which ``RIS.predict`` gives a pixel to the first step that claims it: the penalty moves step
    t, never the earlier steps); the term of step t is ``<m_t, U_t> / (|m_t|_1 + eps)``, the share
    of its mass on taken pixels: 0 for a step that paints only new pixels, 1 for a step that
    repeats an earlier one. Eq. (5)'s matching gives a step that repeats a leaf no push away
    from it; this term does. (Measured: without the threshold, the diffuse masks of the first
    stages overlap everywhere and the term stalled learning.)
    """
    if masks.ndim != 4:
        raise ValueError(f"masks must be (B,T,H,W), got {tuple(masks.shape)}")
    B, T = masks.shape[:2]
    if T < 2:
        return masks.new_zeros(())
    union = torch.cummax(masks.detach().flatten(2), dim=1).values[:, :-1]  # (B, T-1, P): before steps 2..T
    taken = (union > threshold).to(masks.dtype)
    m = masks[:, 1:].flatten(2)
    share = (m * taken).sum(-1) / (m.sum(-1) + eps)  # (B, T-1)
    if lengths is not None:
        lengths = torch.as_tensor(lengths).to(masks.device)
        share = share * (torch.arange(1, T, device=masks.device).unsqueeze(0) < lengths.unsqueeze(1))
    return share.sum() / B


def with_overlap_penalty(loss, masks: torch.Tensor, lengths, weight: float):
    """``loss`` (a value, or ``(value, parts)`` of ``ris_loss(return_parts=True)``) plus
    ``weight * overlap_penalty(masks, lengths)``; the parts get its value as ``overlap``."""
    penalty = weight * overlap_penalty(masks, lengths)
    if not isinstance(loss, tuple):
        return loss + penalty
    loss[1]["overlap"] = float(penalty.detach())
    return loss[0] + penalty, loss[1]


def monotonic_score_penalty(scores: torch.Tensor, lengths=None, scores_are_logits: bool = False) -> torch.Tensor:
    """Ours, after Ren & Zemel (CVPR 2017): ``sum_t max(0, s_t - s_{t-1})`` over the steps that
    count, divided by B (chapter ``book/12_beyond``).

    ``scores (B, T)`` in [0, 1] (or logits with ``scores_are_logits``); step t of image i counts
    when ``t < lengths[i]``. Zero for a non-increasing sequence, positive when a later step is
    more confident than the one before it: a stop score that rises again after falling is what
    lets RIS emit a few more leaves past the plant's count.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B,T), got {tuple(scores.shape)}")
    B, T = scores.shape
    if T < 2:
        return scores.new_zeros(())
    p = torch.sigmoid(scores) if scores_are_logits else scores
    rise = torch.relu(p[:, 1:] - p[:, :-1])  # (B, T-1): step t+1 over step t
    if lengths is not None:
        lengths = torch.as_tensor(lengths).to(scores.device)
        rise = rise * (torch.arange(1, T, device=scores.device).unsqueeze(0) < lengths.unsqueeze(1))
    return rise.sum() / B


def with_monotonic_penalty(loss, logits: torch.Tensor, lengths, weight: float):
    """``loss`` (a value, or ``(value, parts)``) plus ``weight * monotonic_score_penalty`` of the
    score ``logits (B, T)``; the parts get its value as ``monotonic``."""
    penalty = weight * monotonic_score_penalty(logits, lengths, scores_are_logits=True)
    if not isinstance(loss, tuple):
        return loss + penalty
    loss[1]["monotonic"] = float(penalty.detach())
    return loss[0] + penalty, loss[1]


def fixed_order_loss(masks: torch.Tensor, scores: torch.Tensor, targets: torch.Tensor, counts,
                     lam: float = 1.0) -> torch.Tensor:
    """A NON-permutation-invariant control for the loss chapter.

    Ground-truth instances are sorted by area (largest first) and prediction t is compared
    with instance t; otherwise identical to :func:`ris_loss`.
    """
    counts = _check_inputs(masks, scores, targets, counts)
    B, T = scores.shape
    iou = pairwise_soft_iou(masks, targets)
    areas = targets.flatten(2).sum(-1)
    total = masks.new_zeros(())
    for b in range(B):
        k = min(T, int(counts[b]))
        order = torch.argsort(areas[b, : int(counts[b])], descending=True)[:k]
        total = total - iou[b, torch.arange(k, device=iou.device), order].sum()
    score_target = (torch.arange(T).unsqueeze(0) < counts.cpu().unsqueeze(1)).to(scores.dtype).to(scores.device)
    bce = F.binary_cross_entropy(scores.clamp(EPS, 1 - EPS), score_target, reduction="sum")
    return (total + lam * bce) / B


def soft_iou_grad(pred: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Analytic d f_IoU / d pred (Algorithm 1's f'_IoU), for checking autograd.

    With ``I = <p, y>`` and ``U = |p| + |y| - I + eps``: ``dI/dp = y``, ``dU/dp = 1 - y``, so
    ``d(I/U)/dp = (y * U - I * (1 - y)) / U^2``.
    """
    target = target.to(pred.dtype)
    inter = (pred * target).sum()
    union = pred.sum() + target.sum() - inter + eps
    return (target * union - inter * (1 - target)) / union**2


def per_image_loss(masks, scores, targets, counts, lam: float = 1.0, lengths: Optional[list] = None):
    """Reference: :func:`ris_loss` one image at a time (for tests and the benchmark)."""
    B = masks.shape[0]
    total = 0.0
    for b in range(B):
        n = int(counts[b])
        lb = None if lengths is None else [lengths[b]]
        total = total + ris_loss(masks[b:b + 1], scores[b:b + 1], targets[b:b + 1, : max(n, 1)],
                                 torch.tensor([n]), lam, lengths=lb)
    return total / B
