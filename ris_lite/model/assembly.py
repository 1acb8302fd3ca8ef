"""From RIS's kept soft masks to one label map: the paper's first claim, or ours, score-weighted argmax.

Explained in the book chapter ``book/07_inference`` (section "Assembling the label map").

The paper's rule (``first_claim_labels``, also importable from ``ris_lite.model.ris``): a pixel belongs to the
first step whose mask exceeds 0.5 there, and any step left with a pixel of its own becomes a
leaf, however small. A step that repeats a leaf then survives as a sliver along that leaf's
edge, and every sliver adds one to the count.

Ours, off by default, after Ren & Zemel (CVPR 2017): a pixel is foreground when some step's
mask exceeds the threshold there, and it goes to the step with the highest *score-weighted*
mask ``s_t m_t(p)`` (argmax), so a confident step keeps the pixels a late, doubtful step
repeats; then segments smaller than ``min_size`` pixels are dropped (to background). Both are
inference-only: no retraining; ``benchmarks/tune_assembly.py`` picks ``min_size`` on the
validation plants and scores the choice on the test plants.
"""

from __future__ import annotations

import torch

#: "first" (the paper: first claim) or "argmax" (ours: score-weighted argmax)
ASSEMBLIES = ("first", "argmax")


def first_claim_labels(masks: torch.Tensor, mask_threshold: float = 0.5, return_steps: bool = False):
    """Soft masks ``(k, H, W)`` in RIS's order -> ``(H, W)`` int64 labels: a pixel belongs to
    the first mask above ``mask_threshold`` that claims it; ids 1..k' consecutive (a mask left
    with no pixel of its own gets no id). ``return_steps`` also returns the ``(k',)`` index
    of the mask each id came from."""
    labels = torch.zeros(masks.shape[1:], dtype=torch.int64)
    steps = []
    for t, m in enumerate(masks):
        new = (m > mask_threshold) & (labels == 0)
        if new.any():
            steps.append(t)
            labels[new] = len(steps)
    return (labels, torch.tensor(steps, dtype=torch.int64)) if return_steps else labels


def argmax_labels(masks: torch.Tensor, scores: torch.Tensor, mask_threshold: float = 0.5) -> torch.Tensor:
    """Soft masks ``(k, H, W)`` and their scores ``(k,)`` -> ``(H, W)`` int64 labels: a pixel is
    foreground where ``max_t m_t > mask_threshold`` and takes the step ``argmax_t s_t m_t``; ids
    1..k' consecutive in step order (a step that wins no pixel gets no id)."""
    if masks.ndim != 3 or scores.shape != masks.shape[:1]:
        raise ValueError(f"masks must be (k,H,W) and scores (k,), got {tuple(masks.shape)} and {tuple(scores.shape)}")
    labels = torch.zeros(masks.shape[1:], dtype=torch.int64)
    if masks.shape[0] == 0:
        return labels
    fg = masks.amax(0) > mask_threshold
    winner = (masks * scores.to(masks.dtype)[:, None, None]).argmax(0)
    labels[fg] = winner[fg] + 1
    return consecutive_in_order(labels)


def consecutive_in_order(labels: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` labels with ids in step order, some missing -> ids 1..k' in the same order."""
    ids = torch.unique(labels)
    ids = ids[ids > 0]
    out = torch.zeros_like(labels)
    for new, old in enumerate(ids.tolist(), start=1):
        out[labels == old] = new
    return out


def drop_small(labels: torch.Tensor, min_size: int) -> torch.Tensor:
    """``(H, W)`` labels with every segment of fewer than ``min_size`` pixels set to background,
    the rest renumbered 1..k' in their order. ``min_size`` 0 or 1 changes nothing."""
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    if min_size <= 1:
        return labels
    sizes = torch.bincount(labels.flatten())
    small = (sizes < min_size).nonzero().flatten()
    small = small[small > 0]
    out = labels.clone()
    out[torch.isin(out, small)] = 0
    return consecutive_in_order(out)


def assemble(masks: torch.Tensor, scores: torch.Tensor, assembly: str = "first", mask_threshold: float = 0.5,
             min_size: int = 0) -> torch.Tensor:
    """``(k, H, W)`` kept masks and ``(k,)`` scores -> ``(H, W)`` labels by ``assembly``
    (``ASSEMBLIES``), then :func:`drop_small`. ``("first", 0)`` is the paper's rule."""
    if assembly not in ASSEMBLIES:
        raise ValueError(f"assembly must be one of {', '.join(ASSEMBLIES)}, got {assembly!r}")
    labels = (first_claim_labels(masks, mask_threshold) if assembly == "first"
              else argmax_labels(masks, scores, mask_threshold))
    return drop_small(labels, min_size)
