"""``TrainConfig``: every setting of a training run, stored in each checkpoint.

Explained in the book chapter ``book/06_training``; the options marked "ours" in
``book/12_beyond``. Defaults are the paper's recipe where the paper gives one.
"""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, field
from typing import List, Optional

from ..model.ris import RISConfig
from ..precision import PRECISIONS
from .canvas import sampling_probability
from .curriculum import A1_CURRICULUM
from .schedule import cosine_lr


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
    #: "auto" (bf16 autocast on CUDA, fp16 + a gradient scaler on GPUs without bf16, and on a
    #: CPU bf16 only where it runs natively, else fp32), "fp32", "bf16" or "fp16" (CUDA only);
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
    #: canvas models only: final chance of training on the model's own canvas, and the
    #: fraction of max_steps where the ramp from 0 starts (scheduled sampling)
    sampling_final: float = 0.0
    sampling_start: float = 0.3
    #: "synthetic" (the rosettes), "people" (the people stand-in, ``ris_lite.data.people``), a real
    #: folder: "cvppp:PATH" / "folder:PATH" (``ris_lite.data.folder``), or "voc:PATH" (the people
    #: of VOC 2012's train split; its val split is the paper's test set and is never used
    #: here); real data is split by file id, ``val_fraction`` to validation
    source: str = "synthetic"
    #: real sources: ``image_pattern`` / ``label_pattern`` of a ``folder:`` source
    folder: dict = field(default_factory=dict)
    val_fraction: float = 0.2
    #: the checkpoint (or shipped model name) the weights started from, when fine-tuning
    init: Optional[str] = None
    #: the paper's first people phase: train only the FCN's last layer, the ConvLSTM and the
    #: heads (the second phase is a fine-tune of everything, ``init`` set and lr 1e-6)
    freeze_fcn: bool = False
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
        if self.lr_hold_steps < 0 or self.overlap_weight < 0:
            raise ValueError(f"lr_hold_steps and overlap_weight must be >= 0, got {self.lr_hold_steps}, "
                             f"{self.overlap_weight}")
        if self.schedule == "cosine" and self.max_steps >= 1_000_000:
            raise ValueError("schedule='cosine' needs max_steps set to the run's length")
        sampling_probability(0, 1, self.sampling_final, self.sampling_start)  # validates both
        if self.source not in ("synthetic", "people") and not self.source.startswith(("cvppp:", "folder:", "voc:")):
            raise ValueError("source must be 'synthetic', 'people', 'cvppp:PATH', 'folder:PATH' or 'voc:PATH', "
                             f"got {self.source!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based) under the cosine schedule."""
        return cosine_lr(step, self.lr, self.min_lr, self.max_steps, self.warmup_steps)

    def to_dict(self) -> dict:
        return asdict(self)
