"""``TrainConfig``: every setting of a training run, stored in each checkpoint.

Explained in the book chapter ``book/06_training``; the options marked "ours" in
``book/12_beyond``. Defaults are the paper's recipe where the paper gives one.
"""

from __future__ import annotations

import math
from dataclasses import InitVar, asdict, dataclass, field
from typing import List, Optional

from ..model.kinds import check_kind, model_config
from ..model.ris import RISConfig
from ..precision import PRECISIONS
from .canvas import sampling_probability
from .curriculum import A1_CURRICULUM, check_stages
from .loss import SCORE_TARGETS
from .schedule import cosine_lr

#: the float settings of a run, each checked finite
FLOAT_FIELDS = ("lr", "clip", "lam", "min_delta", "lr_factor", "min_lr", "overlap_weight", "monotonic_weight",
                "sampling_final", "sampling_start", "val_fraction")


@dataclass
class TrainConfig:
    model: dict = field(default_factory=lambda: RISConfig().to_dict())
    data: dict = field(default_factory=dict)  # extra make_rosette options (size, zoom, ...)
    curriculum: List[List[int]] = field(default_factory=lambda: [list(s) for s in A1_CURRICULUM])
    lr: float = 1e-4
    batch_size: int = 4
    clip: float = 5.0
    lam: float = 1.0
    augment: bool = True
    train_images: int = 2000
    val_images: int = 16
    eval_every: int = 100
    patience: int = 2
    min_delta: float = 0.01
    stage_max_steps: int = 1500
    lr_factor: float = 0.1
    min_lr: float = 1e-6
    max_steps: int = 1_000_000
    seed: int = 0
    #: "auto" (bf16 autocast on GPUs that compute it natively, compute capability 8 and up; fp16
    #: + a gradient scaler on older GPUs such as a T4; on a CPU bf16 only where it runs
    #: natively, else fp32), "fp32", "bf16" or "fp16" (CUDA only);
    #: see ``ris_lite.precision``
    precision: str = "auto"
    log_every: int = 10
    #: "plateau" (the paper: lr x lr_factor on a validation plateau) or "cosine" (ours: from lr
    #: to min_lr over max_steps, so set max_steps to the run's length)
    schedule: str = "plateau"
    warmup_steps: int = 0
    #: plateau schedule, at the last stage: every lr is kept for at least this many steps before
    #: the plateau rule may cut it (0: the rule as before, which cut 200 steps into the last
    #: stage of the shipped run and reached the 1e-6 floor 1,350 steps later)
    lr_hold_steps: int = 0
    #: ours, not the paper's: weight of ``loss.overlap_penalty`` (a step's mass on pixels
    #: earlier steps took) added to eq. (5); 0 is the paper's loss
    overlap_weight: float = 0.0
    #: ours, not the paper's: weight of ``loss.monotonic_score_penalty`` (a step's score above
    #: the previous step's); 0 is the paper's loss
    monotonic_weight: float = 0.0
    #: ours, not the paper's: the score term of eq. (5) counts from this curriculum stage on
    #: (0, the paper: from the first stage)
    score_from_stage: int = 0
    #: ours, not the paper's: the stop score's target, "count" (eq. 5: 1 for the first n steps)
    #: or "painted" (1 for a step that paints a leaf no earlier step painted;
    #: ``loss.painted_leaf_targets``)
    score_target: str = "count"
    #: canvas models only: final chance of training on the model's own canvas, and the
    #: fraction of max_steps where the ramp from 0 starts (scheduled sampling)
    sampling_final: float = 0.0
    sampling_start: float = 0.3
    #: "synthetic" (the rosettes), "people" (the people stand-in, ``ris_lite.data.people``), a real
    #: folder: "cvppp:PATH" / "folder:PATH" (``ris_lite.data.folder``), "voc:PATH" (the people
    #: of VOC 2012's train split; its val split is the paper's test set and is never used
    #: here) or "coco:PATH" (the people of a COCO instances file, PATH the .json); real data is
    #: split by file id, ``val_fraction`` to validation
    source: str = "synthetic"
    #: real sources: ``image_pattern`` / ``label_pattern`` of a ``folder:`` source
    folder: dict = field(default_factory=dict)
    val_fraction: float = 0.2
    #: the checkpoint (or shipped model name) the weights started from, when fine-tuning
    init: Optional[str] = None
    #: the paper's first people phase: train only the FCN's last layer, the ConvLSTM and the
    #: heads (the second phase is a fine-tune of everything, ``init`` set and lr 1e-6)
    freeze_fcn: bool = False
    #: ours: the checkpoint (or shipped model name) the plant FCN's weights were copied from, e.g.
    #: the embedding model's FCN (``checkpointing.copy_fcn``); the rest starts fresh
    init_fcn: Optional[str] = None
    #: ours: the FCN is not trained during the first this many curriculum stages (its gradients are
    #: dropped before the optimiser step), then trained with the rest
    fcn_frozen_stages: int = 0
    #: ours: "ris" (the paper's model, ``model`` a ``RISConfig``), or one of RIS's successor
    #: families, "set" (``SetConfig``) or "embedding" (``EmbeddingConfig``): ``ris_lite.model.kinds``,
    #: trained as ``ris_lite.training.successors`` says
    model_kind: str = "ris"
    #: legacy switches, read from old checkpoints and ``--cpu-bf16``: ``cpu_bf16=True`` means
    #: ``precision="bf16"``; ``amp=False`` means ``precision="fp32"`` (neither is stored)
    cpu_bf16: InitVar[bool] = False
    amp: InitVar[bool] = True

    def __post_init__(self, cpu_bf16: bool, amp: bool):
        if cpu_bf16:
            self.precision = "bf16"
        elif not amp:
            self.precision = "fp32"
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.schedule not in ("plateau", "cosine"):
            raise ValueError(f"schedule must be 'plateau' or 'cosine', got {self.schedule!r}")
        for name in FLOAT_FIELDS:  # NaN passes every comparison below: caught here, before a run writes
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if min(self.lr_hold_steps, self.overlap_weight, self.monotonic_weight, self.score_from_stage) < 0:
            raise ValueError("lr_hold_steps, overlap_weight, monotonic_weight and score_from_stage must be >= 0, "
                             f"got {self.lr_hold_steps}, {self.overlap_weight}, {self.monotonic_weight}, "
                             f"{self.score_from_stage}")
        if self.score_target not in SCORE_TARGETS:
            raise ValueError(f"score_target must be one of {', '.join(SCORE_TARGETS)}, got {self.score_target!r}")
        if self.fcn_frozen_stages < 0:
            raise ValueError(f"fcn_frozen_stages must be >= 0, got {self.fcn_frozen_stages}")
        if self.schedule == "cosine" and self.max_steps >= 1_000_000:
            raise ValueError("schedule='cosine' needs max_steps set to the run's length")
        sampling_probability(0, 1, self.sampling_final, self.sampling_start)  # validates both
        for name in ("batch_size", "train_images", "val_images", "eval_every", "stage_max_steps", "max_steps",
                     "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0 or self.warmup_steps < 0:
            raise ValueError(f"patience and warmup_steps must be >= 0, got {self.patience}, {self.warmup_steps}")
        if not self.lr > 0 or not 0 < self.val_fraction < 1:
            raise ValueError(f"lr must be > 0 and val_fraction in (0, 1), got {self.lr}, {self.val_fraction}")
        check_stages(self.curriculum)
        if check_kind(self.model_kind) != "ris":
            self._check_successor()
        if self.source not in ("synthetic", "people") and not self.source.startswith(
                ("cvppp:", "folder:", "voc:", "coco:")):
            raise ValueError("source must be 'synthetic', 'people', 'cvppp:PATH', 'folder:PATH', 'voc:PATH' or "
                             f"'coco:PATH', got {self.source!r}")

    def _check_successor(self) -> None:
        """A set or embedding run (ours): its model config, no option of RIS's training, and
        (set) as many queries as the plants it trains on (the last stage's) hold leaves."""
        try:
            model = model_config(self.model_kind, self.model)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model is not a {self.model_kind} model's config: {e}") from None
        if self.overlap_weight or self.monotonic_weight or self.score_from_stage or self.sampling_final \
                or self.freeze_fcn or self.score_target != "count" or self.fcn_frozen_stages:
            raise ValueError("overlap_weight, monotonic_weight, score_from_stage, score_target, sampling_final, "
                             f"freeze_fcn and fcn_frozen_stages are options of RIS's training, not of a "
                             f"{self.model_kind} model")
        most = self.curriculum[-1][2]  # a set model trains on the last stage's plants (``successors``)
        if self.model_kind == "set" and most > model.queries:
            raise ValueError(f"the last curriculum stage draws images of up to {most} instances but the set model "
                             f"has {model.queries} queries: it needs at least as many")

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based) under the cosine schedule."""
        return cosine_lr(step, self.lr, self.min_lr, self.max_steps, self.warmup_steps)

    def to_dict(self) -> dict:
        return asdict(self)
