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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from .augment import RotateFlip, collate_instances
from .canvas import canvas_loss, sampling_probability, sequence_canvas_loss
from .loss import ris_loss
from .model import RIS, RISConfig
from .rosette import SPLITS, RosetteDataset

CHECKPOINT_FORMAT = 1

#: Grow the leaf count with the sequence length; ends at A1 difficulty (11-20 leaves).
A1_CURRICULUM: Tuple[Tuple[int, int, int], ...] = (
    (2, 2, 4), (4, 2, 6), (6, 4, 8), (8, 6, 10), (10, 8, 12),
    (13, 10, 14), (16, 11, 17), (19, 11, 20), (22, 11, 20),
)


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
    amp: bool = True  # bf16 autocast on CUDA
    #: bf16 autocast on the CPU too: ~1.5-2x faster where the CPU has AVX512-BF16/AMX,
    #: slower where it has not, hence opt-in
    cpu_bf16: bool = False
    log_every: int = 10
    #: "plateau" (the paper: lr x lr_factor on a validation plateau) or "cosine" (ours: from lr
    #: to min_lr over max_steps, so set max_steps to the run's length)
    schedule: str = "plateau"
    warmup_steps: int = 0
    #: canvas models only: final chance of training on the model's own canvas, and the
    #: fraction of max_steps where the ramp from 0 starts (scheduled sampling)
    sampling_final: float = 0.0
    sampling_start: float = 0.3

    def __post_init__(self):
        if self.schedule not in ("plateau", "cosine"):
            raise ValueError(f"schedule must be 'plateau' or 'cosine', got {self.schedule!r}")
        if self.schedule == "cosine" and self.max_steps >= 1_000_000:
            raise ValueError("schedule='cosine' needs max_steps set to the run's length")
        sampling_probability(0, 1, self.sampling_final, self.sampling_start)  # validates both

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

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike, device: Optional[str] = None):
        self.config = c = config
        self.out = Path(out_dir)
        self.device = pick_device(device)
        torch.manual_seed(c.seed)
        self.model = RIS(RISConfig.from_dict(c.model)).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr)
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

    # ----- data ---------------------------------------------------------------------------
    def _dataset(self, split: str, stage: int) -> RosetteDataset:
        _, lo, hi = self.config.curriculum[stage]
        key = (split, lo, hi)
        if key not in self._datasets:
            n = self.config.train_images if split == "train" else self.config.val_images
            n = min(n, SPLITS[split][1] - SPLITS[split][0])
            tf = RotateFlip(generator=self.gen) if split == "train" and self.config.augment else None
            self._datasets[key] = RosetteDataset(split, length=n, transform=tf, n_leaves=(lo, hi),
                                                 count_sampling="uniform", **self.config.data)
        return self._datasets[key]

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
        amp = (c.amp and self.device.type == "cuda") or (c.cpu_bf16 and self.device.type == "cpu")
        if self.canvas:
            gen = self.gen if generator is None else generator
            own = None
            if self.model.training and c.sampling_final > 0:
                own = torch.rand(images.shape[0], generator=gen) < self.sampling_probability()
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                if self.model.config.canvas_memory:
                    return sequence_canvas_loss(self.model, images, targets, counts, self.lengths(counts),
                                                own, c.lam, return_parts)
                return canvas_loss(self.model, images, targets, counts, own, c.lam, gen, return_parts)
        lengths = self.lengths(counts)
        T = int(lengths.max())
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            masks, logits = self.model(images, T, score_logits=True)
        return ris_loss(masks.float(), logits.float(), targets, counts, self.config.lam, lengths=lengths,
                        scores_are_logits=True, return_parts=return_parts)

    def train_step(self) -> dict:
        self.model.train()
        images, targets, counts = self._batch()
        loss, parts = self._loss(images, targets, counts, return_parts=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.model, self.config.clip)
        if self.config.schedule == "cosine":
            for g in self.optimizer.param_groups:
                g["lr"] = self.config.lr_at(self.step)
        self.optimizer.step()
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

    # ----- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "trainer": {"step": self.step, "images_seen": self.images_seen, "stage": self.stage,
                        "stage_step": self.stage_step, "best_val": self.best_val,
                        "bad_evals": self.bad_evals, "elapsed": self.elapsed,
                        "snapshots_kept": self.snapshots_kept},
            "events": self.events,
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
        return t


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
    return json.dumps({"config": state["config"], **trainer, "events": state.get("events", [])}, indent=1)


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
    save_atomic(slim, out)
    return Path(out)
