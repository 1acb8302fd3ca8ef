"""Training: BPTT, Adam, clipping, the curriculum, atomic and resumable checkpoints.

Explained in the book chapter ``book/07_training``.

The curriculum is a list of stages ``(L, lo, hi)``: unroll at most ``L`` steps on plants of
``lo..hi`` leaves; an image with n leaves uses ``min(L, n + 2)`` steps (so the stop signal is
trained wherever ``n + 2 <= L``). The rule that moves on is logged and checked in tests:

* every ``eval_every`` steps the validation loss of the current stage is measured;
* a stage is *converged* when that loss has not improved by ``min_delta`` (relative) for
  ``patience`` evaluations, or, below the last stage, after ``stage_max_steps`` steps;
* converged below the last stage -> next stage; converged at the last stage -> lr x 0.1
  (``ReduceLROnPlateau`` semantics, the paper's schedule).

Ours, off by default: ``schedule="cosine"`` replaces the plateau cuts by a cosine from ``lr``
to ``min_lr`` over ``max_steps`` (after ``warmup_steps`` of linear warm-up), so the decay spans
the whole run; and a canvas model (``RISConfig(canvas=True)``) trains one teacher-forced step
per sample on the last curriculum stage's plants (``ris_lite.canvas``), with scheduled
sampling rising to ``sampling_final``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import InitVar, asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from .augment import RotateFlip, collate_instances
from .canvas import canvas_loss, sampling_probability, sequence_canvas_loss
from .folder import LabelledFolder, open_folder, split_ids
from .loss import ris_loss
from .model import RIS, RISConfig
from .people import PEOPLE_SPLITS, FlipLeftRight, PeopleDataset
from .people_readers import VOCPeople
from .precision import PRECISIONS, autocast, grad_scaler, resolve_precision, warn_if_emulated
from .rosette import SPLITS, RosetteDataset

CHECKPOINT_FORMAT = 1

#: Grow the leaf count with the sequence length; ends at A1 difficulty (11-20 leaves).
A1_CURRICULUM: Tuple[Tuple[int, int, int], ...] = (
    (2, 2, 4), (4, 2, 6), (6, 4, 8), (8, 6, 10), (10, 8, 12),
    (13, 10, 14), (16, 11, 17), (19, 11, 20), (22, 11, 20),
)
#: The people stand-in (``ris_lite.people``): one figure, then up to 2, 4 and 6.
PEOPLE_CURRICULUM: Tuple[Tuple[int, int, int], ...] = ((3, 1, 1), (4, 1, 2), (6, 1, 4), (8, 1, 6))


def pick_device(device: Optional[str] = None) -> torch.device:
    """``"cuda"`` when available (or as asked), else ``"cpu"``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    return dev


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
    #: canvas models only: final chance of training on the model's own canvas, and the
    #: fraction of max_steps where the ramp from 0 starts (scheduled sampling)
    sampling_final: float = 0.0
    sampling_start: float = 0.3
    #: "synthetic" (the rosettes), "people" (the people stand-in, ``ris_lite.people``), a real
    #: folder: "cvppp:PATH" / "folder:PATH" (``ris_lite.folder``), or "voc:PATH" (the people
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
        if self.schedule == "cosine" and self.max_steps >= 1_000_000:
            raise ValueError("schedule='cosine' needs max_steps set to the run's length")
        sampling_probability(0, 1, self.sampling_final, self.sampling_start)  # validates both
        if self.source not in ("synthetic", "people") and not self.source.startswith(("cvppp:", "folder:", "voc:")):
            raise ValueError("source must be 'synthetic', 'people', 'cvppp:PATH', 'folder:PATH' or 'voc:PATH', "
                             f"got {self.source!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based) under the cosine schedule."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(self.max_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        return asdict(self)


class Trainer:
    """Owns the model, optimiser, curriculum state and RNG; ``run()`` trains, ``save()`` /
    ``Trainer.resume()`` make it exactly resumable."""

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
        self.model = RIS(RISConfig.from_dict(c.model)).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.trainable_parameters(c.freeze_fcn), lr=c.lr)
        self.gen = torch.Generator().manual_seed(c.seed)
        self.canvas = self.model.config.canvas
        self.step = 0
        self.images_seen = 0
        # one step per sample needs no growing sequence length: single-step canvas models start
        # at the last stage; canvas models with memory unroll sequences and follow the curriculum
        single_step = self.canvas and not self.model.config.canvas_memory
        self.stage = len(c.curriculum) - 1 if single_step else 0
        self.stage_step = 0
        self.best_val = math.inf
        self.bad_evals = 0
        self.elapsed = 0.0
        self.snapshots_kept = 0  # index k of the last snapshot kept (at k x snapshot_minutes)
        self.events: List[dict] = []
        self._datasets = {}
        self.real = None
        self.split = None
        if c.source.startswith("voc:"):
            self.voc_root = c.source.partition(":")[2]
            h, w = self.model.config.input_size
            if h != w:
                raise ValueError(f"VOC images are read into square frames: the model's input must be square, got {h}x{w}")
            train = VOCPeople(self.voc_root, "train", size=h, cache=False)
            self.counts = {n: k for n, k in zip(train.names, train.instance_counts()) if k}
            self.split = split_ids(sorted(self.counts), c.val_fraction)
        elif c.source not in ("synthetic", "people"):
            self.real = data if data is not None else open_real_data(c, self.model.config.input_size)
            self.split = split_ids(self.real.names, c.val_fraction)
            self.counts = dict(zip(self.real.names, self.real.instance_counts()))
            check_curriculum(self.real, self.counts, self.split, c.curriculum)

    # ----- data ---------------------------------------------------------------------------
    def _dataset(self, split: str, stage: int):
        _, lo, hi = self.config.curriculum[stage]
        key = (split, lo, hi)
        if key not in self._datasets:
            # plants are seen from above and may turn any way; people stand upright: mirror only
            upright = self.config.source == "people" or self.config.source.startswith("voc:")
            augment = FlipLeftRight if upright else RotateFlip
            tf = augment(generator=self.gen) if split == "train" and self.config.augment else None
            if self.config.source.startswith("voc:"):  # VOC train's people, one side of our split
                ids = [i for i in self.split[split] if lo <= self.counts[i] <= hi] or self.split[split]
                if split == "val":
                    ids = ids[:self.config.val_images]
                h = self.model.config.input_size[0]
                self._datasets[key] = VOCPeople(self.voc_root, ids=ids, size=h, transform=tf, cache=False)
                return self._datasets[key]
            if self.real is not None:  # the split's images with lo..hi instances
                ids = [i for i in self.split[split] if lo <= self.counts[i] <= hi]
                if not ids:  # only validation can be empty here (check_curriculum): score on all of it
                    ids = self.split[split]
                self._datasets[key] = self.real.view(ids, tf)
                return self._datasets[key]
            n = self.config.train_images if split == "train" else self.config.val_images
            if self.config.source == "people":
                n = min(n, PEOPLE_SPLITS[split][1] - PEOPLE_SPLITS[split][0])
                self._datasets[key] = PeopleDataset(split, length=n, transform=tf, n_people=(lo, hi),
                                                    **self.config.data)
                return self._datasets[key]
            n = min(n, SPLITS[split][1] - SPLITS[split][0])
            self._datasets[key] = RosetteDataset(split, length=n, transform=tf, n_leaves=(lo, hi),
                                                 count_sampling="uniform", **self.config.data)
        return self._datasets[key]

    def load_weights(self, source: str) -> None:
        """Start from the weights of a checkpoint or a shipped model name (fine-tuning); its
        architecture must be this trainer's. Recorded as ``config.init``."""
        model = load_model(source)
        if model.config.to_dict() != self.model.config.to_dict():
            raise ValueError(f"{source}: its model config differs from this trainer's")
        self.model.load_state_dict(model.state_dict())
        self.config.init = source

    def _batch(self):
        ds = self._dataset("train", self.stage)
        idx = torch.randint(len(ds), (self.config.batch_size,), generator=self.gen).tolist()
        return collate_instances([ds[i] for i in idx])

    def lengths(self, counts: torch.Tensor) -> torch.Tensor:
        """Per-image sequence length ``min(L, n + 2)`` at the current stage."""
        L = self.config.curriculum[self.stage][0]
        return torch.clamp(counts + 2, max=L)

    # ----- one step ---------------------------------------------------------------------------
    def sampling_probability(self) -> float:
        """Scheduled sampling's chance of the model's own canvas at the current step."""
        c = self.config
        return sampling_probability(self.step, c.max_steps, c.sampling_final, c.sampling_start)

    def _loss(self, images, targets, counts, return_parts=False, generator=None):
        images, targets = images.to(self.device), targets.to(self.device)
        c = self.config
        if self.canvas:
            gen = self.gen if generator is None else generator
            own = None
            if self.model.training and c.sampling_final > 0:
                own = torch.rand(images.shape[0], generator=gen) < self.sampling_probability()
            with autocast(self.precision, self.device):
                if self.model.config.canvas_memory:
                    return sequence_canvas_loss(self.model, images, targets, counts, self.lengths(counts),
                                                own, c.lam, return_parts)
                return canvas_loss(self.model, images, targets, counts, own, c.lam, gen, return_parts)
        lengths = self.lengths(counts)
        T = int(lengths.max())
        with autocast(self.precision, self.device):
            masks, logits = self.model(images, T, score_logits=True)
        return ris_loss(masks.float(), logits.float(), targets, counts, self.config.lam, lengths=lengths,
                        scores_are_logits=True, return_parts=return_parts)

    def train_step(self) -> dict:
        self.model.train()
        images, targets, counts = self._batch()
        loss, parts = self._loss(images, targets, counts, return_parts=True)
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.schedule == "cosine":
            for g in self.optimizer.param_groups:
                g["lr"] = self.config.lr_at(self.step)
        if self.scaler is None:
            loss.backward()
            clip_gradients(self.model, self.config.clip)
            self.optimizer.step()
        else:  # fp16: scale the loss so small gradients survive, unscale before clipping
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.model, self.config.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        self.stage_step += 1
        self.images_seen += images.shape[0]
        return {"loss": float(loss.detach()), "iou": parts["iou"]}

    @torch.no_grad()
    def validate(self) -> float:
        self.model.eval()
        ds = self._dataset("val", self.stage)
        images, targets, counts = collate_instances([ds[i] for i in range(len(ds))])
        total, chunk = 0.0, max(self.config.batch_size, 16)  # no gradients: bigger batches are free
        gen = torch.Generator().manual_seed(self.config.seed + 1)  # the same done-sets every time
        for s in range(0, len(ds), chunk):
            sl = slice(s, s + chunk)
            total += float(self._loss(images[sl], targets[sl], counts[sl], generator=gen)) * images[sl].shape[0]
        return total / len(ds)

    def after_validation(self, val: float) -> Optional[str]:
        """Apply the curriculum / lr rule to a new validation loss; returns the event, if any."""
        c = self.config
        if not math.isfinite(self.best_val) or val < self.best_val - c.min_delta * abs(self.best_val):
            self.best_val, self.bad_evals = val, 0
        else:
            self.bad_evals += 1
        last = self.stage == len(c.curriculum) - 1
        # The step cap only moves the curriculum on; at the last stage the lr is cut on a true
        # plateau only (capping there too decayed the lr 10x every stage_max_steps steps).
        converged = self.bad_evals >= c.patience or (not last and self.stage_step >= c.stage_max_steps)
        if not converged:
            return None
        event = None
        if not last:
            self.stage += 1
            event = f"advance to stage {self.stage} {tuple(c.curriculum[self.stage])}"
        elif c.schedule == "cosine":  # the cosine owns the lr: a plateau only resets the count
            pass
        else:
            before = self.optimizer.param_groups[0]["lr"]
            for g in self.optimizer.param_groups:
                g["lr"] = max(g["lr"] * c.lr_factor, c.min_lr)
            after = self.optimizer.param_groups[0]["lr"]
            event = f"lr -> {after:.2e}" if after < before else None  # already at min_lr: no event
        self.stage_step, self.bad_evals, self.best_val = 0, 0, math.inf
        if event:
            self.events.append({"step": self.step, "event": event, "val_loss": val})
        return event

    # ----- loop -------------------------------------------------------------------------------
    def run(self, budget_minutes: Optional[float] = None, max_steps: Optional[int] = None,
            progress: bool = True, checkpoint_every: int = 200,
            snapshot_minutes: Optional[float] = None) -> Trainer:
        """Train until ``max_steps`` or ``budget_minutes`` of training time (resumed runs count
        the time already spent). ``snapshot_minutes`` also keeps a weights-only copy in
        ``OUT/snapshots/min_MMMM.mm.pt`` each time that much training time has passed: the
        learning curve in SBD / ``|DiC|`` is scored from them afterwards, off the training clock."""
        from tqdm.auto import tqdm

        if snapshot_minutes is not None and snapshot_minutes <= 0:
            raise ValueError(f"snapshot_minutes must be > 0, got {snapshot_minutes}")

        self.out.mkdir(parents=True, exist_ok=True)
        if self.split is not None:
            self._write_split()
        max_steps = self.config.max_steps if max_steps is None else max_steps
        budget = math.inf if budget_minutes is None else budget_minutes * 60
        log_path = self.out / "log.csv"
        new_log = not log_path.exists() or self.step == 0
        log_file = open(log_path, "w" if new_log else "a", newline="")
        writer = csv.writer(log_file)
        if new_log:
            writer.writerow(["step", "images", "stage", "length", "loss", "iou", "val_loss", "lr", "images_per_s", "minutes"])
        bar = tqdm(total=max_steps, initial=self.step, disable=not progress, desc="train", dynamic_ncols=True)
        t0, imgs0, last = self.clock(), self.images_seen, time.time()
        start_elapsed = self.elapsed
        try:
            while self.step < max_steps and self.elapsed < budget:
                stats = self.train_step()
                self.elapsed = start_elapsed + self.clock() - t0
                val = ""
                if self.step % self.config.eval_every == 0:
                    v = self.validate()
                    val = f"{v:.4f}"
                    event = self.after_validation(v)
                    if event:
                        bar.write(f"step {self.step}: {event} (val loss {v:.3f})")
                if self.step % self.config.log_every == 0 or val:
                    ips = (self.images_seen - imgs0) / max(self.clock() - t0, 1e-9)
                    L = self.config.curriculum[self.stage][0]
                    lr = self.optimizer.param_groups[0]["lr"]
                    writer.writerow([self.step, self.images_seen, self.stage, L, f"{stats['loss']:.4f}",
                                     f"{stats['iou']:.4f}", val, f"{lr:.3e}", f"{ips:.2f}", f"{self.elapsed / 60:.2f}"])
                    log_file.flush()
                    bar.set_postfix(loss=f"{stats['loss']:.3f}", iou=f"{stats['iou']:.3f}", L=L, img_s=f"{ips:.1f}")
                bar.update(1)
                if self.step % checkpoint_every == 0 or time.time() - last > 300:
                    self.save()
                    last = time.time()
                if snapshot_minutes and self.elapsed >= self._next_snapshot(snapshot_minutes):
                    self.save_snapshot(snapshot_minutes)
        finally:
            bar.close()
            log_file.close()
            self.save()
        return self

    def _split_record(self) -> dict:
        return {"source": self.config.source, "val_fraction": self.config.val_fraction,
                **{k: {i: self.counts[i] for i in v} for k, v in self.split.items()}}

    def check_split(self) -> None:
        """A resumed real-data run must split its folder as when it started: files added or
        removed would move images between training and validation."""
        path = self.out / "split.json"
        if path.is_file():
            old, new = json.loads(path.read_text()), self._split_record()
            if {k: old.get(k) for k in ("train", "val")} != {k: new[k] for k in ("train", "val")}:
                raise ValueError(f"{path}: the data no longer splits as when this run started "
                                 "(files added, removed or relabelled); start a new --out")

    def _write_split(self) -> None:
        """``OUT/split.json``: the ids of each side and their instance counts."""
        path = self.out / "split.json"
        if path.is_file():
            return
        record = self._split_record()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        os.replace(tmp, path)

    # ----- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "precision": {"requested": self.config.precision, "used": self.precision, "device": self.device.type},
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "trainer": {"step": self.step, "images_seen": self.images_seen, "stage": self.stage,
                        "stage_step": self.stage_step, "best_val": self.best_val,
                        "bad_evals": self.bad_evals, "elapsed": self.elapsed,
                        "snapshots_kept": self.snapshots_kept},
            "events": self.events,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def save(self, path: Optional[str | os.PathLike] = None) -> Path:
        """Write ``last.pt`` (or ``path``) atomically: a temporary file, then a rename."""
        path = Path(path) if path else self.out / "last.pt"
        state = self.state_dict()
        save_atomic(state, path)
        path.with_suffix(".json").write_text(run_summary(state))
        return path

    def _next_snapshot(self, every_minutes: float) -> float:
        """Training seconds at which the next snapshot is due (the first multiple not yet kept)."""
        return (self.snapshots_kept + 1) * every_minutes * 60

    def save_snapshot(self, every_minutes: float) -> Path:
        """Weights, config and counters (no optimiser) as ``snapshots/min_MMMM.mm.pt``."""
        self.snapshots_kept = int(self.elapsed // (every_minutes * 60))
        path = self.out / "snapshots" / f"min_{self.snapshots_kept * every_minutes:07.2f}.pt"
        state = self.state_dict()
        save_atomic({k: state[k] for k in ("format", "config", "model", "trainer")}, path)
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, out_dir: Optional[str | os.PathLike] = None,
               device: Optional[str] = None, config: Optional[TrainConfig] = None) -> Trainer:
        """Rebuild a trainer from a checkpoint; ``config`` (if given) must equal the stored one."""
        state = load_checkpoint(path)
        stored = TrainConfig(**state["config"])
        if config is not None and config.to_dict() != stored.to_dict():
            diff = sorted(k for k, v in config.to_dict().items() if stored.to_dict()[k] != v)
            raise ValueError(f"checkpoint {path} was made with a different config (differs in: {', '.join(diff)})")
        t = cls(stored, out_dir or Path(path).parent, device)
        t.model.load_state_dict(state["model"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        for k, v in state["trainer"].items():
            setattr(t, k, v)
        t.events = list(state["events"])
        if t.scaler is not None and "scaler" in state:
            t.scaler.load_state_dict(state["scaler"])
        used_before = state.get("precision", {}).get("used")
        if used_before is not None and used_before != t.precision:  # resumed on another kind of machine
            t.events.append({"step": t.step, "event": f"precision {used_before} -> {t.precision} on {t.device.type}"})
        if t.split is not None:
            t.check_split()
        return t


def people_curriculum(counts: List[int]) -> List[List[int]]:
    """``PEOPLE_CURRICULUM``, plus a last stage of ``max(n) + 2`` steps on every image when
    some image holds more than 6 people (real photographs can)."""
    stages = [list(s) for s in PEOPLE_CURRICULUM]
    if counts and max(counts) > stages[-1][2]:
        stages.append([max(counts) + 2, 1, max(counts)])
    return stages


def open_real_data(config: TrainConfig, input_size) -> LabelledFolder:
    """The real data set of a training config, at the model's input size and the config's zoom."""
    return open_folder(config.source, size=tuple(input_size), zoom=config.data.get("zoom", 1.0), **config.folder)


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


def load_model(source: str | os.PathLike, device: Optional[str] = None) -> RIS:
    """A checkpoint path, or the name of a shipped model (``load_pretrained``)."""
    from .pretrained import PRETRAINED, load_pretrained

    if not Path(source).exists():
        if str(source) not in PRETRAINED:
            raise FileNotFoundError(f"{source}: no such checkpoint file, nor a shipped model name "
                                    f"({', '.join(sorted(PRETRAINED))})")
        model = load_pretrained(str(source))
        return model.to(pick_device(device)) if device else model
    return model_from_checkpoint(source, device)


def clip_gradients(model: torch.nn.Module, clip: float) -> None:
    """Element-wise clipping to [-clip, clip] of EVERY parameter's gradient.

    (The authors' code clipped the recurrent part only and left the CNN unclipped.)
    """
    for p in model.parameters():
        if p.grad is not None:
            p.grad.clamp_(-clip, clip)


def run_summary(state: dict) -> str:
    """Human-readable JSON of a checkpoint: config, counters and curriculum events (no weights)."""
    trainer = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in state.get("trainer", {}).items()}  # strict JSON has no Infinity
    return json.dumps({"config": state["config"], "precision": state.get("precision"), **trainer,
                       "events": state.get("events", [])}, indent=1)


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path.tmp``, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(weights_only=True)`` with clear errors for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt file
        raise ValueError(f"{path} is not a readable ris_lite checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a ris_lite checkpoint (no 'model'/'config' entries)")
    return state


def model_from_checkpoint(path: str | os.PathLike, device: Optional[str] = None) -> RIS:
    """The RIS stored in a training checkpoint (or a slim one from ``export``), in eval mode."""
    state = load_checkpoint(path)
    cfg = state["config"]
    model_cfg = cfg["model"] if "model" in cfg else cfg
    model = RIS(RISConfig.from_dict(model_cfg))
    model.load_state_dict(state["model"])
    model.data_options = dict(cfg.get("data", {})) if isinstance(cfg, dict) else {}
    return model.to(pick_device(device) if device else "cpu").eval()


def export(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Slim copy of a training checkpoint: model weights and config only (for shipping)."""
    state = load_checkpoint(path)
    slim = {"format": CHECKPOINT_FORMAT, "config": state["config"], "model": state["model"],
            "trainer": state.get("trainer", {}), "events": state.get("events", [])}
    if "precision" in state:
        slim["precision"] = state["precision"]
    save_atomic(slim, out)
    return Path(out)
