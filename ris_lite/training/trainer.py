"""The training loop: BPTT through the unrolled RIS, Adam, clipping, curriculum and lr rule.

Explained in the book chapter ``book/06_training``.

``Trainer`` owns the model, the optimiser, the RNG and where the run stands; the pieces it
calls are small objects of their own: the data (``sources``), the curriculum
(``curriculum.Curriculum``), the lr rule (``schedule``), the bookkeeping around the loop
(``hooks``) and the checkpoint format (``checkpointing``). Under ``torchrun`` each process is
one rank of a DistributedDataParallel run (``distributed``: its shard of the data, averaged
gradients, rank 0 alone writes); in one process nothing of it runs. Ours, off by default: a
canvas model (``RISConfig(canvas=True)``) trains with teacher forcing (``ris_lite.training.canvas``);
RIS's successor families (``TrainConfig.model_kind`` "set" / "embedding", book chapter
``book/13_where_ris_stands``) take their loss and first stage from ``ris_lite.training.successors``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import List, Optional

import torch

from ..data.augment import collate_instances
from ..data.folder import LabelledFolder
from ..device import pick_device
from ..model.checkpoint import load_checkpoint, replace_atomic, run_summary, save_atomic
from ..model.kinds import build_model
from ..precision import autocast, grad_scaler, resolve_precision, warn_if_emulated
from ..pretrained import load_model
from .canvas import canvas_loss, sampling_probability, sequence_canvas_loss
from .checkpointing import (
    TrainerCounters,
    check_same_config,
    copy_fcn,
    load_init_weights,
    restore_trainer,
    trainer_state,
)
from .config import TrainConfig
from .curriculum import Curriculum
from .distributed import Ranks
from .divergence import check_weights, checked_loss
from .hooks import PeriodicCheckpoint, ProgressLog, Snapshots
from .loss import ris_loss, with_monotonic_penalty, with_overlap_penalty
from .schedule import PlateauRule, cut_lr
from .sources import check_split, open_source, write_split
from .successors import first_stage, successor_loss


class Trainer(TrainerCounters):
    """``run()`` trains; ``save()`` / ``Trainer.resume()`` make it exactly resumable."""

    def clock(self) -> float:
        """What ``budget_minutes`` and ``elapsed`` count: wall-clock seconds. Benchmarks that run
        arms side by side set ``trainer.clock = time.process_time`` (the process's CPU seconds)."""
        return time.time()

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, device: Optional[str] = None,
                 data: Optional[LabelledFolder] = None):
        """``data``: the real data set of ``config.source``, already opened (it is opened here
        otherwise); every file is decoded and checked before anything is written."""
        self.config = c = config
        self.out = Path(out_dir)
        self.device = pick_device(device)
        #: the precision used on this device (``config.precision`` is what was asked for)
        self.precision = resolve_precision(c.precision, self.device)
        warn_if_emulated(self.precision, self.device.type)
        self.scaler = grad_scaler(self.precision, self.device)
        torch.manual_seed(c.seed)
        self.model = build_model(c.model_kind, c.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.trainable_parameters(c.freeze_fcn), lr=c.lr)
        self.gen = torch.Generator().manual_seed(c.seed)
        self.canvas = getattr(self.model.config, "canvas", False)  # set / embedding models have none
        # one step per sample needs no growing sequence length: single-step canvas models start
        # at the last stage, and so do set and embedding models (``successors.first_stage``);
        # canvas models with memory unroll sequences and follow the curriculum
        single_step = self.canvas and not self.model.config.canvas_memory
        start = len(c.curriculum) - 1 if single_step else first_stage(c.model_kind, c.curriculum)
        self.curriculum = Curriculum(c.curriculum, start)
        self.plateau = PlateauRule(c.patience, c.min_delta, c.stage_max_steps, c.lr_hold_steps)
        # ``diverged``: a NaN or infinity stopped the run (``divergence``); nothing more is saved
        self.step, self.images_seen, self.elapsed, self.diverged = 0, 0, 0.0, False
        self.snapshots_kept = 0  # index k of the last snapshot kept (at k x snapshot_minutes)
        self.events: List[dict] = []
        self.source = open_source(c, self.model.config.input_size, data)
        self.ranks = Ranks.current()  # rank 0 of 1 without torchrun
        self._datasets = {}

    @property
    def split(self):
        """Real data: ``{"train": ids, "val": ids}``, the split by file id; else None."""
        return self.source.split

    # ----- data -------------------------------------------------------------------------------
    def _dataset(self, side: str, stage: int):
        _, lo, hi = self.curriculum.stages[stage]
        if (side, lo, hi) not in self._datasets:
            augment = side == "train" and self.config.augment
            transform = self.source.augment(generator=self.gen) if augment else None
            self._datasets[side, lo, hi] = self.ranks.shard(self.source.dataset(side, lo, hi, transform), side)
        return self._datasets[side, lo, hi]

    def _batch(self):
        ds = self._dataset("train", self.stage)
        idx = torch.randint(len(ds), (self.config.batch_size,), generator=self.gen).tolist()
        return collate_instances([ds[i] for i in idx])

    def lengths(self, counts: torch.Tensor) -> torch.Tensor:
        """Per-image sequence length ``min(L, n + 2)`` at the current stage."""
        return self.curriculum.lengths(counts)

    def load_weights(self, source: str) -> None:
        """Start from the weights of a checkpoint or a shipped model name (fine-tuning); its
        architecture must be this trainer's. Recorded as ``config.init``."""
        load_init_weights(self.model, load_model(source), source)
        self.config.init = source

    def load_fcn_weights(self, source: str) -> None:
        """Ours: start the plant FCN from the FCN of a checkpoint or shipped model (e.g. the
        embedding model's), the rest as built. Recorded as ``config.init_fcn``."""
        if self.config.model_kind != "ris":
            raise ValueError("init_fcn starts a RIS's FCN; a set or embedding model starts with init")
        copy_fcn(self.model, load_model(source), source)
        self.config.init_fcn = source

    def frozen_parameters(self) -> List[torch.nn.Parameter]:
        """The parameters the optimiser leaves as they are this step: the FCN's during its first
        ``fcn_frozen_stages`` curriculum stages (ours), else none."""
        if self.stage < self.config.fcn_frozen_stages:
            return list(self.model.fcn.parameters())
        return []

    # ----- one step ---------------------------------------------------------------------------
    def sampling_probability(self) -> float:
        """Scheduled sampling's chance of the model's own canvas at the current step."""
        c = self.config
        return sampling_probability(self.step, c.max_steps, c.sampling_final, c.sampling_start)

    def _loss(self, images, targets, counts, return_parts=False, generator=None):
        images, targets = images.to(self.device), targets.to(self.device)
        if self.config.model_kind != "ris":
            return successor_loss(self, images, targets, counts, return_parts)
        if self.canvas:
            return _canvas_loss(self, images, targets, counts, return_parts, self.gen if generator is None else generator)
        return _ris_loss(self, images, targets, counts, return_parts)

    def train_step(self) -> dict:
        """One optimiser step (a NaN or infinity raises ``divergence.TrainingDiverged`` before it counts)."""
        self.model.train()
        self.ranks.reseed(self.gen, self.config.seed, self.step)
        images, targets, counts = self._batch()
        loss, parts = checked_loss(self, images, targets, counts)
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.schedule == "cosine":
            for g in self.optimizer.param_groups:
                g["lr"] = self.config.lr_at(self.step)
        optimizer_step(loss, self.optimizer, self.scaler, self.model, self.config.clip, self.frozen_parameters())
        check_weights(self)
        self.step += 1
        self.curriculum.stage_step += 1
        self.images_seen += images.shape[0] * self.ranks.world  # every rank's images
        return {"loss": float(loss.detach()), "iou": parts["iou"]}

    @torch.no_grad()
    def validate(self) -> float:
        self.model.eval()
        ds = self._dataset("val", self.stage)  # this rank's share (all of it in one process)
        total, chunk = 0.0, max(self.config.batch_size, 16)  # no gradients: bigger batches are free
        if len(ds):  # several ranks: a small validation set may leave one rank none
            images, targets, counts = collate_instances([ds[i] for i in range(len(ds))])
            gen = torch.Generator().manual_seed(self.config.seed + 1)  # the same done-sets every time
            for s in range(0, len(ds), chunk):
                sl = slice(s, s + chunk)
                total += float(self._loss(images[sl], targets[sl], counts[sl], generator=gen)) * images[sl].shape[0]
        return self.ranks.mean(total, len(ds), self.device)

    def after_validation(self, val: float) -> Optional[str]:
        """Apply the curriculum / lr rule to a new validation loss; returns the event, if any."""
        if not self.plateau.update(val, self.stage_step, self.curriculum.at_last):
            return None
        if not self.curriculum.at_last:
            event = self.curriculum.advance()
        elif self.config.schedule == "cosine":  # the cosine owns the lr: a plateau only resets the count
            event = None
        else:
            event = cut_lr(self.optimizer, self.config.lr_factor, self.config.min_lr)
        self.curriculum.stage_step = 0
        self.plateau.reset()
        if event:
            self.events.append({"step": self.step, "event": event, "val_loss": val})
        return event

    # ----- loop -------------------------------------------------------------------------------
    def run(self, budget_minutes: Optional[float] = None, max_steps: Optional[int] = None,
            progress: bool = True, checkpoint_every: int = 200,
            snapshot_minutes: Optional[float] = None) -> Trainer:
        """Train until ``max_steps`` or ``budget_minutes`` of training time (resumed runs count
        the time already spent); ``snapshot_minutes``: see ``hooks.Snapshots``."""
        max_steps = self.config.max_steps if max_steps is None else max_steps
        budget = math.inf if budget_minutes is None else budget_minutes * 60
        hooks = [ProgressLog(self, max_steps, progress), PeriodicCheckpoint(self, checkpoint_every)]
        if snapshot_minutes is not None:
            hooks.append(Snapshots(self, snapshot_minutes))
        hooks = self.ranks.hooks(self, hooks)  # several ranks: rank 0 alone writes
        if self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.split is not None:
                write_split(self.source, self.config, self.out)
        t0, start_elapsed = self.clock(), self.elapsed
        for h in hooks:
            h.before_train()
        try:
            while self.step < max_steps and self.elapsed < budget:
                stats = self.train_step()
                self.elapsed = start_elapsed + self.clock() - t0
                val = event = None
                if self.step % self.config.eval_every == 0:
                    val = self.validate()
                    event = self.after_validation(val)
                for h in hooks:
                    h.after_step(stats, val, event)
        finally:
            for h in hooks:
                h.after_train()
        return self

    # ----- checkpoints ------------------------------------------------------------------------
    def save(self, path: Optional[str | os.PathLike] = None) -> Path:
        """Write ``last.pt`` (or ``path``) atomically (a temporary file, then a rename), and its
        readable summary beside it (``last.json``)."""
        path = Path(path) if path else self.out / "last.pt"
        state = trainer_state(self)
        save_atomic(state, path)
        replace_atomic(path.with_suffix(".json"), lambda tmp: tmp.write_text(run_summary(state)))
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, out_dir: Optional[str | os.PathLike] = None,
               device: Optional[str] = None, config: Optional[TrainConfig] = None) -> Trainer:
        """Rebuild a trainer from a checkpoint; ``config`` (if given) must equal the stored one."""
        state = load_checkpoint(path)
        stored = TrainConfig(**state["config"])
        check_same_config(stored, config, path)
        t = cls(stored, out_dir or Path(path).parent, device)
        restore_trainer(t, state)
        if t.split is not None:
            check_split(t.source, t.config, t.out)
        return t


def _ris_loss(t: Trainer, images, targets, counts, return_parts: bool):
    """``Trainer._loss`` of RIS: eq. (5) over the unrolled steps, with ours, when on, the
    overlap and monotonic-score penalties and the score term from ``score_from_stage``."""
    c = t.config
    lengths = t.lengths(counts)
    with autocast(t.precision, t.device):
        masks, logits = t.model(images, int(lengths.max()), score_logits=True)
    lam = c.lam if t.stage >= c.score_from_stage else 0.0
    out = ris_loss(masks.float(), logits.float(), targets, counts, lam, lengths=lengths,
                   scores_are_logits=True, return_parts=return_parts, score_target=c.score_target)
    if c.overlap_weight:
        out = with_overlap_penalty(out, masks.float(), lengths, c.overlap_weight)
    if c.monotonic_weight and lam:
        out = with_monotonic_penalty(out, logits.float(), lengths, c.monotonic_weight)
    return out


def _canvas_loss(t: Trainer, images, targets, counts, return_parts: bool, gen: torch.Generator):
    """``Trainer._loss`` of a canvas model (ours): teacher-forced steps, with scheduled sampling
    of the model's own canvas while training (``ris_lite.training.canvas``)."""
    c = t.config
    own = None
    if t.model.training and c.sampling_final > 0:
        own = torch.rand(images.shape[0], generator=gen) < t.sampling_probability()
    with autocast(t.precision, t.device):
        if t.model.config.canvas_memory:
            return sequence_canvas_loss(t.model, images, targets, counts, t.lengths(counts), own, c.lam, return_parts)
        return canvas_loss(t.model, images, targets, counts, own, c.lam, gen, return_parts)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                   model: torch.nn.Module, clip: float, frozen=()) -> None:
    """Backward, clip every gradient, step. fp16 (CUDA without native bf16): the loss is scaled
    so small gradients survive, and the gradients unscaled before they are clipped. ``frozen``
    parameters lose their gradient after the backward pass (every rank's, after DDP averaged
    them), so Adam skips them and they stay exactly as they are."""
    (loss if scaler is None else scaler.scale(loss)).backward()
    for p in frozen:
        p.grad = None
    if scaler is not None:
        scaler.unscale_(optimizer)
    clip_gradients(model, clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()


def clip_gradients(model: torch.nn.Module, clip: float) -> None:
    """Element-wise clipping to [-clip, clip] of EVERY parameter's gradient.

    (The authors' code clipped the recurrent part only and left the CNN unclipped.)
    """
    for p in model.parameters():
        if p.grad is not None:
            p.grad.clamp_(-clip, clip)
