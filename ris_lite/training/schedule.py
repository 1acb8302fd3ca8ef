"""When a stage has converged, and what the learning rate does then.

Explained in the book chapters ``book/06_training`` (the plateau rule, the paper's schedule)
and ``book/12_beyond`` (the cosine schedule, ours).

The paper's rule, as ``PlateauRule`` applies it: every ``eval_every`` steps the validation loss
of the current stage is measured; a stage has *converged* when that loss has not improved by
``min_delta`` (relative) for ``patience`` evaluations, or, below the last stage, after
``stage_max_steps`` steps. Converged below the last stage: the curriculum moves on. Converged at
the last stage: ``cut_lr`` multiplies the lr by ``lr_factor`` (``ReduceLROnPlateau``
semantics), down to ``min_lr``. ``hold_steps`` (``TrainConfig.lr_hold_steps``) keeps every lr of
the last stage for at least that many steps before a plateau may count: the paper cuts when the
*training* error stops falling, while a 64-plant validation loss measured every 50 steps looks
flat by chance, and cut the shipped run's lr 200 steps into its last stage. Ours, off by default: ``cosine_lr`` spans the whole run instead.
"""

from __future__ import annotations

import math
from typing import Optional

import torch


class PlateauRule:
    """Counts evaluations without improvement; ``update`` says whether the stage converged."""

    def __init__(self, patience: int, min_delta: float, stage_max_steps: int, hold_steps: int = 0):
        self.patience, self.min_delta, self.stage_max_steps = patience, min_delta, stage_max_steps
        self.hold_steps = hold_steps
        self.best, self.bad = math.inf, 0

    def update(self, val: float, stage_step: int, at_last: bool) -> bool:
        """Take a new validation loss after ``stage_step`` steps of the stage (at the last stage:
        of the current lr)."""
        if not math.isfinite(self.best) or val < self.best - self.min_delta * abs(self.best):
            self.best, self.bad = val, 0
        else:
            self.bad += 1
        if at_last and stage_step < self.hold_steps:  # the lr is held: no plateau counts yet
            self.bad = 0
            return False
        # The step cap only moves the curriculum on; at the last stage the lr is cut on a true
        # plateau only (capping there too decayed the lr 10x every stage_max_steps steps).
        return self.bad >= self.patience or (not at_last and stage_step >= self.stage_max_steps)

    def reset(self) -> None:
        """A new stage (or a new lr) starts counting afresh."""
        self.best, self.bad = math.inf, 0


def cut_lr(optimizer: torch.optim.Optimizer, factor: float, min_lr: float) -> Optional[str]:
    """Every group's lr times ``factor``, not below ``min_lr``; the event's text, or None when
    the lr was already at ``min_lr``."""
    before = optimizer.param_groups[0]["lr"]
    for g in optimizer.param_groups:
        g["lr"] = max(g["lr"] * factor, min_lr)
    after = optimizer.param_groups[0]["lr"]
    return f"lr -> {after:.2e}" if after < before else None


def cosine_lr(step: int, lr: float, min_lr: float, total_steps: int, warmup_steps: int = 0) -> float:
    """Learning rate of optimiser step ``step`` (0-based): a linear warm-up over
    ``warmup_steps``, then a cosine from ``lr`` to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
