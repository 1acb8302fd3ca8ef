"""The curriculum: sequences grow, and so does the number of instances per image.

Explained in the book chapter ``book/06_training`` (section "The curriculum").

A curriculum is a list of stages ``(L, lo, hi)``: unroll at most ``L`` steps on images of
``lo..hi`` instances; an image with n instances uses ``min(L, n + 2)`` steps, so the stop
signal is trained wherever ``n + 2 <= L``. ``Curriculum`` holds where a run stands; when a
stage has converged is the business of ``ris_lite.training.schedule.PlateauRule``.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from ..data.folder import LabelledFolder

#: Grow the leaf count with the sequence length; ends at A1 difficulty (11-20 leaves).
A1_CURRICULUM: Tuple[Tuple[int, int, int], ...] = (
    (2, 2, 4), (4, 2, 6), (6, 4, 8), (8, 6, 10), (10, 8, 12),
    (13, 10, 14), (16, 11, 17), (19, 11, 20), (22, 11, 20),
)
#: The people stand-in (``ris_lite.data.people``): one figure, then up to 2, 4 and 6.
PEOPLE_CURRICULUM: Tuple[Tuple[int, int, int], ...] = ((3, 1, 1), (4, 1, 2), (6, 1, 4), (8, 1, 6))


def check_stages(stages: Sequence[Sequence[int]]) -> None:
    """At least one stage, each ``(L, lo, hi)`` of integers with ``L >= 1`` and ``0 <= lo <= hi``
    (checked before a run writes anything: a bad stage would stop it at its first batch)."""
    if not stages:
        raise ValueError("a curriculum needs at least one stage (L, lo, hi)")
    for s in stages:
        try:
            ok = len(s) == 3 and all(int(v) == v for v in s) and s[0] >= 1 and 0 <= s[1] <= s[2]
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"curriculum stage {list(s) if isinstance(s, (list, tuple)) else s!r} must be "
                             "(L, lo, hi): integers with L >= 1 (steps) and 0 <= lo <= hi (instances)")


class Curriculum:
    """The stages of a run and the one it is at (``stage``, ``stage_step`` steps into it)."""

    def __init__(self, stages: Sequence[Sequence[int]], stage: int = 0):
        check_stages(stages)
        self.stages = [tuple(int(v) for v in s) for s in stages]
        self.stage, self.stage_step = stage, 0

    @property
    def spec(self) -> Tuple[int, int, int]:
        """``(L, lo, hi)`` of the current stage."""
        return self.stages[self.stage]

    @property
    def at_last(self) -> bool:
        return self.stage == len(self.stages) - 1

    def lengths(self, counts: torch.Tensor) -> torch.Tensor:
        """Per-image sequence length ``min(L, n + 2)`` at the current stage."""
        return torch.clamp(counts + 2, max=self.spec[0])

    def advance(self) -> str:
        """Move to the next stage; returns the event's text."""
        if self.at_last:
            raise ValueError("already at the last curriculum stage")
        self.stage += 1
        self.stage_step = 0
        return f"advance to stage {self.stage} {self.spec}"


def people_curriculum(counts: List[int]) -> List[List[int]]:
    """``PEOPLE_CURRICULUM``, plus a last stage of ``max(n) + 2`` steps on every image when
    some image holds more than 6 people (real photographs can)."""
    stages = [list(s) for s in PEOPLE_CURRICULUM]
    if counts and max(counts) > stages[-1][2]:
        stages.append([max(counts) + 2, 1, max(counts)])
    return stages


def real_curriculum(counts: List[int], fine_tune: bool = False) -> List[List[int]]:
    """The A1 curriculum adapted to a real data set's instance counts (``n`` per image).

    Real images cannot be drawn with a chosen number of instances, so every stage trains on
    all of them and only the unrolled length grows: the A1 curriculum's lengths below
    ``max(n) + 2``, then ``max(n) + 2`` (every image's stop signal trained). Fine-tuning a
    model that already segments long sequences starts at that last stage."""
    if not counts:
        raise ValueError("no images to train on")
    lo, hi = min(counts), max(counts)
    last = hi + 2
    lengths = [] if fine_tune else sorted({L for L, _, _ in A1_CURRICULUM if L < last})
    return [[L, lo, hi] for L in lengths] + [[last, lo, hi]]


def check_curriculum(data: LabelledFolder, counts: dict, split: dict, curriculum) -> None:
    """Clear errors before training: an image whose instances the last stage cannot unroll,
    or a stage with no training image."""
    last = curriculum[-1][0]
    worst = max(counts, key=counts.get)
    if counts[worst] > last:
        path = data.label_path(data.names.index(worst))
        raise ValueError(f"{path} has {counts[worst]} instances but the curriculum unrolls at most {last} "
                         f"steps: make the last stage at least {counts[worst] + 2} long")
    for side in ("train", "val"):
        if not split[side]:
            raise ValueError(f"{data.root}: {len(data)} image(s) are too few for a train/validation split")
    train_counts = [counts[i] for i in split["train"]]
    for L, lo, hi in curriculum:
        if not any(lo <= n <= hi for n in train_counts):
            raise ValueError(f"curriculum stage ({L}, {lo}, {hi}) has no training image with {lo}..{hi} instances "
                             f"(the training images have {min(train_counts)}..{max(train_counts)})")
