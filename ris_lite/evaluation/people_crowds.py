"""The people stand-in read the way the paper's figures read VOC: scores by crowd size (its
Figs. 3, 9, 10 show scenes with 1-2, 3 and 4+ people), and how often a scene's depth order can
be seen at all, which bounds what the occlusion test can show.

Explained in the book chapter ``book/11_people``.

A scene's depth order is *visible* when some figure hides a real part of a farther one: the
front figure's visible pixels cover at least ``min_hidden`` of the back figure's whole
silhouette (``PeopleScene.amodal``). Two figures side by side give no clue which is nearer
(the ground plane aside), so only such pairs can tell a front-to-back order from any other:
:func:`occluding_pairs_order` asks, for each of them that both methods found, whether the front
one was emitted first.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from .people_eval import label_masks, matched_instances, predictions_region_ap

CROWD_GROUPS = ("1-2", "3", "4+")


def crowd_group(people: int) -> str:
    """``"1-2"``, ``"3"`` or ``"4+"``: the paper's grouping of its qualitative figures by the
    number of people in the image (a scene with nobody visible falls in ``"1-2"``)."""
    return "1-2" if people <= 2 else "3" if people == 3 else "4+"


def region_ap_by_crowd(predictions: Sequence[Tuple[torch.Tensor, np.ndarray]], gts: Sequence[np.ndarray]
                       ) -> Dict[str, Dict]:
    """Region AP of label-map predictions ``(labels (H, W), scores (k,))`` computed separately
    on the scenes of each crowd group (true masks ``gts``, ``(n, H, W)`` each). Per group:
    ``scenes``, ``people`` (true), ``predicted`` (instances) and ``ap50`` / ``ap_mean``."""
    out = {}
    for group in CROWD_GROUPS:
        idx = [i for i, g in enumerate(gts) if crowd_group(len(g)) == group]
        if not idx:
            continue
        ap = predictions_region_ap([predictions[i] for i in idx], [gts[i] for i in idx])
        out[group] = {"scenes": len(idx), "people": int(sum(len(gts[i]) for i in idx)),
                      "predicted": int(sum(len(predictions[i][1]) for i in idx)), **ap}
    return out


def hidden_share(labels, amodal) -> np.ndarray:
    """``(n, n)``: entry ``[i, j]`` is the share of figure j's whole silhouette (``amodal (n, H,
    W)`` bool) that the visible pixels of figure i (``labels (H, W) == i + 1``) cover: how much of
    j that i visibly hides. Ids run front to back, so it is 0 for ``i >= j``."""
    labels, amodal = np.asarray(torch.as_tensor(labels)), np.asarray(torch.as_tensor(amodal), bool)
    n = len(amodal)
    share = np.zeros((n, n))
    area = amodal.reshape(n, -1).sum(1)
    for i in range(n):
        front = labels == i + 1
        for j in range(i + 1, n):
            share[i, j] = (front & amodal[j]).sum() / max(area[j], 1)
    return share


def depth_order_visible(labels, amodal, min_hidden: float = 0.1) -> bool:
    """Whether one figure visibly hides at least ``min_hidden`` of a farther one
    (:func:`hidden_share`)."""
    return bool((hidden_share(labels, amodal) >= min_hidden).any())


def visible_order_share(scenes: Sequence, thresholds: Sequence[float] = (0.05, 0.1, 0.25)) -> Dict[str, float]:
    """For each ``min_hidden`` in ``thresholds``, the share of ``scenes``
    (:class:`~ris_lite.data.people.PeopleScene`) whose depth order is visible; keys are the
    thresholds as strings."""
    shares = [hidden_share(s.labels, s.amodal) for s in scenes]
    return {str(t): float(np.mean([bool((h >= t).any()) for h in shares])) for t in thresholds}


def occluding_pairs_order(labels, scene, min_hidden: float = 0.1, iou_threshold: float = 0.5) -> Dict[str, int]:
    """Of the pairs of figures in ``scene`` where the nearer one visibly hides at least
    ``min_hidden`` of the farther one and both are matched by an instance of ``labels (H, W)``
    (ids in the order emitted; :func:`~ris_lite.evaluation.people_eval.matched_instances`): how
    many there are (``pairs``) and in how many the nearer one was emitted first
    (``front_first``)."""
    steps, figures = matched_instances(labels, label_masks(scene.labels, len(scene.amodal)), iou_threshold)
    step_of = dict(zip(figures.tolist(), steps.tolist()))
    share = hidden_share(scene.labels, scene.amodal)
    pairs = [(i, j) for i, j in zip(*np.nonzero(share >= min_hidden)) if i in step_of and j in step_of]
    return {"pairs": len(pairs), "front_first": sum(step_of[i] < step_of[j] for i, j in pairs)}


def pairs_summary(records: Sequence[Dict[str, int]], samples: int = 2000, seed: int = 0) -> Dict:
    """:func:`occluding_pairs_order` over many scenes: the pairs, the scenes they come from, the
    share of pairs with the front figure first (chance: 0.5) and its 95 % interval from a
    bootstrap over scenes (the pairs of one scene are not independent of each other)."""
    counts = np.array([(r["front_first"], r["pairs"]) for r in records if r["pairs"] > 0], float).reshape(-1, 2)
    if not len(counts):
        return {"pairs": 0, "scenes": 0, "front_first": None, "low": None, "high": None}
    resampled = counts[np.random.default_rng(seed).integers(0, len(counts), (samples, len(counts)))].sum(1)
    lo, hi = np.quantile(resampled[:, 0] / resampled[:, 1], [0.025, 0.975])
    return {"pairs": int(counts[:, 1].sum()), "scenes": len(counts),
            "front_first": float(counts[:, 0].sum() / counts[:, 1].sum()), "low": float(lo), "high": float(hi)}
