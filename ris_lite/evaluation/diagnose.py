"""Why a model's segments are wrong: segment kinds, repeated steps, the probe of its features.

Explained in the book chapter ``book/12_beyond`` (section "A diagnosis"); the benchmark
``benchmarks/diagnose.py`` prints the table for any model or checkpoint.

SBD says *how much* a model misses; these numbers say *how*. For every plant:

- **segment kinds** of the predicted label map (first claim, as ``RIS.predict``), each segment S
  against its main leaf L* (the leaf it overlaps most): ``background`` (under half of S lies on
  any leaf), ``whole`` (Dice(S, L*) > 0.8), ``merge`` (S holds at least half of two or more
  leaves), ``fragment`` (S holds under half of L*) or ``spill`` (the rest: at least half of L*,
  plus pixels of its neighbours or the background);
- **steps** (RIS's soft masks > 0.5, before the first-claim rule hides repeats): a step is a
  ``duplicate`` when its best leaf (highest IoU) is one an earlier step already had; a leaf that
  is no step's best is ``untargeted``; the first step's Dice with its best leaf and the number
  of leaves it *touches* (holds at least 10 % of);
- **per-leaf Dice by area**: each true leaf's best Dice over the predicted segments, by leaf size;
- **the same-leaf probe**: for pairs of foreground cells 2-4 grid cells apart, how well a small
  MLP tells "same leaf?" from a representation of the two cells (raw 3 x 3 RGB patches, the
  features the ConvLSTM reads, its first state), as a ROC AUC on held-out plants. Features
  that score below the raw pixels have lost the boundary between touching leaves.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.rosette import masks_to_labels
from ..model.ris import first_claim_labels

SEGMENT_KINDS = ("whole", "fragment", "merge", "spill", "background")
#: leaf-area bins (pixels at the model's input size) of ``leaf_dice_by_area``
AREA_BINS = (0, 100, 200, 400, 10**9)


def _overlaps(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(P + 1, T + 1)`` pixel counts of every (predicted id, true id) pair, 0 = background."""
    p, t = int(pred.max()), int(true.max())
    return np.bincount(pred.ravel().astype(np.int64) * (t + 1) + true.ravel(), minlength=(p + 1) * (t + 1)).reshape(p + 1, t + 1)


def segment_kinds(pred_labels, true_labels) -> List[str]:
    """The kind (``SEGMENT_KINDS``) of every predicted segment 1..P of an ``(H, W)`` label map
    against the true ``(H, W)`` label map, in id order."""
    pred, true = np.asarray(pred_labels, np.int64), np.asarray(true_labels, np.int64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise ValueError(f"label maps must be two (H, W) arrays of one shape, got {pred.shape} and {true.shape}")
    ov = _overlaps(pred, true)
    seg_area, leaf_area = ov[1:].sum(1), ov.sum(0)[1:]
    kinds = []
    for s in range(1, ov.shape[0]):
        if seg_area[s - 1] == 0:
            continue
        on_leaves = ov[s, 1:]
        if on_leaves.sum() < 0.5 * seg_area[s - 1]:
            kinds.append("background")
            continue
        main = int(on_leaves.argmax())
        dice = 2 * on_leaves[main] / (seg_area[s - 1] + leaf_area[main])
        held = on_leaves / np.maximum(leaf_area, 1)  # share of each leaf inside S
        if dice > 0.8:
            kinds.append("whole")
        elif (held >= 0.5).sum() >= 2:
            kinds.append("merge")
        elif held[main] < 0.5:
            kinds.append("fragment")
        else:
            kinds.append("spill")
    return kinds


def step_targets(masks: torch.Tensor, leaves: torch.Tensor, mask_threshold: float = 0.5) -> Dict:
    """RIS's kept soft masks ``(k, H, W)`` against the true leaves ``(N, H, W)``: each step's best
    leaf (``-1`` when it overlaps none), which steps are duplicates, the untargeted leaves, the
    first step's Dice with its best leaf and how many leaves it touches."""
    binary = (masks > mask_threshold).flatten(1).float()
    leaves = leaves.flatten(1).float()
    inter = binary @ leaves.T  # (k, N)
    union = binary.sum(1, keepdim=True) + leaves.sum(1) - inter
    iou = inter / union.clamp_min(1)
    best = torch.where(inter.amax(1) > 0, iou.argmax(1), torch.full_like(iou.argmax(1), -1)).tolist()
    seen, duplicate = set(), []
    for b in best:
        duplicate.append(b >= 0 and b in seen)
        seen.add(b)
    out = {"best": best, "duplicate": duplicate,
           "untargeted": [n for n in range(leaves.shape[0]) if n not in seen],
           "first_dice": None, "first_touches": None}
    if binary.shape[0] and best[0] >= 0:
        b = best[0]
        out["first_dice"] = float(2 * inter[0, b] / (binary[0].sum() + leaves[b].sum()))
        out["first_touches"] = int((inter[0] >= 0.1 * leaves.sum(1)).sum())
    return out


def leaf_dice_by_area(pred_labels, true_labels, bins: Sequence[int] = AREA_BINS) -> Dict[str, List[float]]:
    """Each true leaf's best Dice over the predicted segments, grouped by the leaf's area."""
    pred, true = np.asarray(pred_labels, np.int64), np.asarray(true_labels, np.int64)
    ov = _overlaps(pred, true)
    seg_area, leaf_area = ov[1:].sum(1), ov.sum(0)[1:]
    out: Dict[str, List[float]] = {}
    for n in range(len(leaf_area)):
        if leaf_area[n] == 0:
            continue
        dice = 2 * ov[1:, n + 1] / np.maximum(seg_area + leaf_area[n], 1) if len(seg_area) else np.zeros(1)
        k = int(np.searchsorted(bins, leaf_area[n], side="right")) - 1
        out.setdefault(f"{bins[k]}-{bins[k + 1] if bins[k + 1] < 10**9 else 'max'}", []).append(float(dice.max()))
    return out


# ----- the same-leaf probe ---------------------------------------------------------------------
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the chance a random positive outscores a random negative; ties
    count half), from ranks."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative pairs")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sample_pairs(grid_labels: torch.Tensor, pairs: int, generator: torch.Generator,
                 min_dist: int = 2, max_dist: int = 4) -> torch.Tensor:
    """``(pairs, 4)`` cells ``(y1, x1, y2, x2)`` of one ``(h, w)`` grid label map, both on the
    foreground, ``min_dist..max_dist`` apart along y and x (Chebyshev distance)."""
    h, w = grid_labels.shape
    fg = (grid_labels > 0).nonzero()
    if len(fg) == 0:
        return torch.zeros(0, 4, dtype=torch.long)
    out = []
    for _ in range(4):  # draw more than needed: offsets leave the grid or the foreground
        a = fg[torch.randint(len(fg), (pairs * 2,), generator=generator)]
        off = torch.randint(-max_dist, max_dist + 1, (pairs * 2, 2), generator=generator)
        ok = off.abs().amax(1) >= min_dist
        b = a + off
        ok &= (b[:, 0] >= 0) & (b[:, 0] < h) & (b[:, 1] >= 0) & (b[:, 1] < w)
        a, b = a[ok], b[ok]
        ok = grid_labels[b[:, 0], b[:, 1]] > 0
        out.append(torch.cat([a[ok], b[ok]], 1))
        if sum(len(o) for o in out) >= pairs:
            break
    return torch.cat(out)[:pairs]


def pair_features(maps: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """``maps (C, h, w)``, ``cells (P, 4)`` -> ``(P, 3C)``: both cells' vectors and their
    absolute difference (symmetric in the two cells up to the order of the first two parts)."""
    fa = maps[:, cells[:, 0], cells[:, 1]].T
    fb = maps[:, cells[:, 2], cells[:, 3]].T
    return torch.cat([fa, fb, (fa - fb).abs()], 1)


def probe_auc(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
              hidden: int = 64, iterations: int = 400, seed: int = 0) -> float:
    """Fit a one-hidden-layer MLP (``hidden`` units, Adam, full batch) on ``train_x (P, D)`` /
    ``train_y (P,)`` bool, return its ROC AUC on the test pairs."""
    g = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    net = nn.Sequential(nn.Linear(train_x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1 / p.shape[-1]) ** 0.5)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    x, y = (train_x - mean) / std, train_y.float()
    with torch.enable_grad():
        for _ in range(iterations):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(net(x).squeeze(1), y).backward()
            opt.step()
    with torch.no_grad():
        scores = net((test_x - mean) / std).squeeze(1)
    return roc_auc(scores.numpy(), test_y.numpy())


@torch.no_grad()
def representations(model, image: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The three maps the probe reads, each ``(C, h', w')`` on the model's feature grid: ``rgb``
    (the 3 x 3 RGB patch around each cell's pixel, 27 channels), ``features`` (what the ConvLSTM
    reads: FCN output, plus the skip where the model has one) and ``state`` (the top ConvLSTM
    layer's h after the first step)."""
    model.eval()
    x = image.unsqueeze(0).to(model.device, torch.float32)
    _, _, st = model(x, 1, return_stages=True)
    feats, state = st["features"][0].float().cpu(), st["h"][0, 0].float().cpu()
    h, w = feats.shape[-2:]
    stride = model.config.fcn_stride
    patches = F.unfold(image.unsqueeze(0).float(), 3, padding=1)[0].view(27, *image.shape[-2:])
    rgb = patches[:, ::stride, ::stride][:, :h, :w]
    return {"rgb": rgb, "features": feats, "state": state}


def grid_labels(labels: torch.Tensor, stride: int, size) -> torch.Tensor:
    """The ``(H, W)`` label map at the cells' centre pixels, ``(h', w')``."""
    return labels[::stride, ::stride][: size[0], : size[1]]


def same_leaf_probe(model, dataset, plants: Optional[int] = None, pairs_per_plant: int = 200,
                    seed: int = 0) -> Dict[str, float]:
    """The probe AUC of each representation (``representations``): MLP fitted on the pairs of
    the first half of the plants, scored on the second half."""
    n = len(dataset) if plants is None else min(plants, len(dataset))
    if n < 2:
        raise ValueError("the probe needs at least two plants (one to fit, one to score)")
    g = torch.Generator().manual_seed(seed)
    xs: Dict[str, List[List[torch.Tensor]]] = {"rgb": [[], []], "features": [[], []], "state": [[], []]}
    ys: List[List[torch.Tensor]] = [[], []]
    for i in range(n):
        image, leaves = dataset[i][:2]
        reps = representations(model, image)
        gl = grid_labels(masks_to_labels(leaves), model.config.fcn_stride, reps["features"].shape[-2:])
        cells = sample_pairs(gl, pairs_per_plant, g)
        side = 0 if i < n // 2 else 1
        ys[side].append(gl[cells[:, 0], cells[:, 1]] == gl[cells[:, 2], cells[:, 3]])
        for k, m in reps.items():
            xs[k][side].append(pair_features(m, cells))
    train_y, test_y = torch.cat(ys[0]), torch.cat(ys[1])
    return {k: probe_auc(torch.cat(v[0]), train_y, torch.cat(v[1]), test_y, seed=seed) for k, v in xs.items()}


# ----- the whole table --------------------------------------------------------------------------
@torch.no_grad()
def diagnose(model, dataset, plants: Optional[int] = None, max_steps: int = 30, batch_size: int = 8,
             probe_plants: int = 40, seed: int = 0) -> Dict:
    """The diagnosis table of a model on (the first ``plants`` items of) a data set of
    ``(image, leaves (N, H, W))`` items, as a dict of rounded numbers (shares in [0, 1]).
    ``probe_plants=0`` skips the probe."""
    n = len(dataset) if plants is None else min(plants, len(dataset))
    kinds: Counter = Counter()
    steps = duplicates = leaves = untargeted = 0
    first_dice, first_touches = [], []
    by_area: Dict[str, List[float]] = {}
    for s in range(0, n, batch_size):
        items = [dataset[i] for i in range(s, min(s + batch_size, n))]
        images = torch.stack([it[0] for it in items])
        for (_, truth, *_), kept in zip(items, model.kept_masks(images, max_steps)):
            true_labels = masks_to_labels(truth)
            pred_labels = first_claim_labels(kept)
            kinds.update(segment_kinds(pred_labels, true_labels))
            t = step_targets(kept, truth)
            steps += len(t["best"])
            duplicates += sum(t["duplicate"])
            leaves += truth.shape[0]
            untargeted += len(t["untargeted"])
            if t["first_dice"] is not None:
                first_dice.append(t["first_dice"])
                first_touches.append(t["first_touches"])
            for k, v in leaf_dice_by_area(pred_labels, true_labels).items():
                by_area.setdefault(k, []).extend(v)
    segments = max(sum(kinds.values()), 1)
    out = {"plants": n, "segments": sum(kinds.values()),
           "segment_kinds": {k: round(kinds[k] / segments, 3) for k in SEGMENT_KINDS},
           "duplicate_steps": round(duplicates / max(steps, 1), 3),
           "untargeted_leaves": round(untargeted / max(leaves, 1), 3),
           "first_step_dice": round(float(np.mean(first_dice)), 3) if first_dice else None,
           "first_step_leaves_touched": round(float(np.mean(first_touches)), 2) if first_touches else None,
           "leaf_dice_by_area": {k: {"leaves": len(v), "dice": round(float(np.mean(v)), 3)}
                                 for k, v in sorted(by_area.items(), key=lambda kv: int(kv[0].split("-")[0]))}}
    if probe_plants:
        out["probe_auc"] = {k: round(v, 3) for k, v in same_leaf_probe(model, dataset, probe_plants, seed=seed).items()}
    return out
