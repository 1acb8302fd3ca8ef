"""A run that diverges stops at once: a NaN or infinite loss, model output or weight ends training
with one line naming the step and the likely setting, and nothing of that step is kept.

Explained in the book chapter ``book/06_training`` (section "Checkpoints").

Without this, a learning rate far too large (``--lr 1e10``) made weights of 1e10 in one step and
NaN masks in the next, on which the loss's matching crashed -- after a ``last.pt`` of the ruined
weights had been saved, which a corrected rerun then refused to overwrite. Now
:func:`checked_loss` watches the model's outputs while a step's loss is computed (forward hooks
on the model and its parts, which note a non-finite output without waiting for the device) and
the loss itself, and :func:`check_weights` the weights after the optimiser step. The first
failure raises :class:`TrainingDiverged` before the step counts, and sets ``trainer.diverged``,
so that ``hooks.PeriodicCheckpoint`` saves nothing more: a run that diverged at its first
steps leaves no ``last.pt``, and the corrected command starts in the same folder.
"""

from __future__ import annotations

import math
from typing import Dict, List

import torch

#: fields of ``TrainConfig`` that scale the updates or the loss: the likely causes of a divergence
SUSPECTS = ("lr", "overlap_weight", "monotonic_weight")


class TrainingDiverged(FloatingPointError):
    """Training met a NaN or an infinity at ``step`` (1-based: the step that failed);
    ``suspects``: the settings most likely to blame, ``{config field: value}``."""

    def __init__(self, step: int, what: str, suspects: Dict[str, float]):
        self.step, self.what, self.suspects = step, what, suspects
        blame = ", ".join(f"{k}={v:g}" for k, v in suspects.items())
        super().__init__(f"training diverged at step {step}: {what}; nothing of it was saved (likely too large: "
                         f"{blame})")


def _diverged(trainer, what: str) -> TrainingDiverged:
    """The error for the step being taken, with the trainer marked so nothing more is saved."""
    trainer.diverged = True
    c = trainer.config
    suspects = {name: getattr(c, name) for name in SUSPECTS if name == "lr" or getattr(c, name)}
    return TrainingDiverged(trainer.step + 1, what, suspects)


class _OutputWatch:
    """Forward hooks on ``model`` and its direct parts that keep, per call, whether any output
    tensor held a NaN or an infinity (a device tensor: no synchronisation until asked)."""

    def __init__(self, model: torch.nn.Module):
        self.flags: List[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._note) for m in (model, *model.children())]

    def _note(self, module, inputs, output) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        for t in outputs:
            if torch.is_tensor(t) and t.is_floating_point():
                self.flags.append(~torch.isfinite(t.detach()).all())

    def saw_non_finite(self) -> bool:
        return any(bool(f) for f in self.flags)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def checked_loss(trainer, images, targets, counts):
    """``(loss, parts)`` of one training step (``trainer._loss`` through its ranks), or
    :class:`TrainingDiverged` when the model's outputs or the loss are not finite -- also when
    non-finite outputs made the loss itself fail (its matching refuses NaN)."""
    watch = _OutputWatch(trainer.model)
    try:
        loss, parts = trainer.ranks.training_loss(trainer)(images, targets, counts, return_parts=True)
    except Exception:
        if watch.saw_non_finite():
            raise _diverged(trainer, "the model's outputs are NaN or infinite") from None
        raise
    finally:
        watch.remove()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise _diverged(trainer, f"the loss is {value}")
    return loss, parts


def check_weights(trainer) -> None:
    """After the optimiser step: every weight finite, else :class:`TrainingDiverged`."""
    params = [p.detach() for p in trainer.model.parameters()]
    if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
        raise _diverged(trainer, "the optimiser step made weights NaN or infinite")
