"""Does RIS count? Its count against the truth and against a constant guess, and where it stops.

Explained in the book chapter ``book/08_evaluation`` (section "Does it count?"); the benchmark
``benchmarks/diagnose.py --counts`` prints the report for any model or checkpoint.

|DiC| alone cannot tell a counter from a guess: on plants whose counts cluster around 16, always
answering 16 scores well. So the report sets the model beside **the best constant** -- the
integer whose mean |DiC| on the *training* counts is lowest (a median; never chosen on the plants
scored) -- and adds what a constant cannot have: the correlation of predicted with true counts.
For the stop itself it gives the mean score at each step relative to the true count n (steps
n-4 .. n+4), how far past n the first score below the threshold falls, and what the steps RIS
takes after n do: repeat a leaf (``duplicate``), paint an untaken leaf (``new``, IoU >= 0.5),
a piece of one (``fragment``) or no leaf (``background``).
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..model.assembly import assemble
from .diagnose import step_targets

#: steps relative to the true count n at which the report gives the mean score
OFFSETS = tuple(range(-4, 5))
LATE_KINDS = ("duplicate", "new", "fragment", "background")


def best_constant(train_counts: Sequence[int]) -> int:
    """The integer c minimising ``mean |c - n|`` over ``train_counts`` (the smallest such c)."""
    counts = np.asarray(list(train_counts), np.int64)
    if counts.size == 0:
        raise ValueError("best_constant needs at least one training count")
    candidates = np.arange(counts.min(), counts.max() + 1)
    cost = np.abs(candidates[:, None] - counts[None]).mean(1)
    return int(candidates[int(cost.argmin())])


def count_correlation(pred: Sequence[int], true: Sequence[int]) -> Optional[float]:
    """Pearson correlation of predicted and true counts; None when either is constant."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    if p.std() == 0 or t.std() == 0:
        return None
    return float(np.corrcoef(p, t)[0, 1])


def late_step_kinds(masks: torch.Tensor, leaves: torch.Tensor, n: int, mask_threshold: float = 0.5) -> List[str]:
    """The kind (``LATE_KINDS``) of each kept step after the n-th: ``masks (k, H, W)`` in RIS's
    order against the true ``leaves (N, H, W)``."""
    t = step_targets(masks, leaves, mask_threshold)
    binary = (masks > mask_threshold).flatten(1).float()
    flat = leaves.flatten(1).float()
    kinds = []
    for s in range(n, masks.shape[0]):
        b = t["best"][s]
        if b < 0:
            kinds.append("background")
        elif t["duplicate"][s]:
            kinds.append("duplicate")
        else:
            inter = float(binary[s] @ flat[b])
            iou = inter / max(float(binary[s].sum() + flat[b].sum()) - inter, 1.0)
            kinds.append("new" if iou >= 0.5 else "fragment")
    return kinds


@torch.no_grad()
def count_report(model, dataset, constant: int, plants: Optional[int] = None, max_steps: int = 30,
                 batch_size: int = 8, score_threshold: float = 0.5, assembly: str = "first",
                 min_size: int = 0) -> Dict:
    """The count report of ``model`` on (the first ``plants`` items of) a data set of
    ``(image, leaves (N, H, W))`` items, as a dict of rounded numbers. ``constant``: the guess
    to beat (:func:`best_constant` of the training counts). The predicted count is the number
    of segments of ``model.predict``'s label map under ``assembly`` and ``min_size``."""
    n_items = len(dataset) if plants is None else min(plants, len(dataset))
    true, pred, stops = [], [], []
    curve: Dict[int, List[float]] = {o: [] for o in OFFSETS}
    late: Counter = Counter()
    was_training = model.training
    model.eval()
    for s in range(0, n_items, batch_size):
        items = [dataset[i] for i in range(s, min(s + batch_size, n_items))]
        images = torch.stack([it[0] for it in items]).to(model.device)
        masks, scores = model(images, max_steps)
        masks, scores = masks.float().cpu(), scores.float().cpu()
        if masks.shape[-2:] != images.shape[-2:]:
            masks = torch.nn.functional.interpolate(masks, size=images.shape[-2:], mode="bilinear",
                                                    align_corners=False)
        for (_, leaves, *_), m, sc in zip(items, masks, scores):
            n = int(leaves.shape[0])
            below = (sc < score_threshold).nonzero()
            k = int(below[0]) if len(below) else max_steps
            labels = assemble(m[:k], sc[:k], assembly, min_size=min_size)
            true.append(n)
            pred.append(int(labels.max()))
            stops.append(k - n)
            for o in OFFSETS:
                if 1 <= n + o <= max_steps:  # step n + o, 1-based
                    curve[o].append(float(sc[n + o - 1]))
            late.update(late_step_kinds(m[:k], leaves, n))
    model.train(was_training)
    true_a, pred_a = np.asarray(true), np.asarray(pred)
    late_total = max(sum(late.values()), 1)
    return {
        "plants": n_items, "constant": constant,
        "abs_dic": round(float(np.abs(pred_a - true_a).mean()), 3),
        "dic": round(float((pred_a - true_a).mean()), 3),
        "constant_abs_dic": round(float(np.abs(constant - true_a).mean()), 3),
        "count_correlation": (None if count_correlation(pred, true) is None
                              else round(count_correlation(pred, true), 3)),
        "true_counts": true, "predicted_counts": pred,
        "histogram": {f"{t},{p}": c for (t, p), c in sorted(Counter(zip(true, pred)).items())},
        "score_by_offset": {str(o): round(float(np.mean(v)), 3) for o, v in curve.items() if v},
        "stop_minus_true": {"mean": round(float(np.mean(stops)), 2),
                            "histogram": {str(k): c for k, c in sorted(Counter(stops).items())}},
        "steps_after_true_count": sum(late.values()),
        "after_true_count": {k: round(late[k] / late_total, 3) for k in LATE_KINDS},
    }


def training_counts(dataset, items: Optional[int] = None) -> List[int]:
    """Leaf counts of (the first ``items`` of) a data set whose ``labels(i)`` gives label maps
    (the synthetic splits), else of its ``(image, leaves)`` items."""
    n = len(dataset) if items is None else min(items, len(dataset))
    if hasattr(dataset, "labels"):
        return [int(torch.unique(dataset.labels(i)).gt(0).sum()) for i in range(n)]
    return [int(dataset[i][1].shape[0]) for i in range(n)]

