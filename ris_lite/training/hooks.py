"""What happens around the training loop's steps: the log, checkpoints and snapshots.

Explained in the book chapter ``book/06_training`` (sections "A short real run" and
"Checkpoints").

``Trainer.run`` calls ``before_train()``, then ``after_step(stats, val, event)`` after every
optimiser step (``val``: the validation loss when one was measured, else None; ``event``: what
the curriculum or lr rule did), then ``after_train()`` -- also when training is interrupted.
A new kind of bookkeeping is a new hook; the loop does not change.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Optional

from ..model.checkpoint import save_atomic
from .checkpointing import trainer_state

LOG_COLUMNS = ["step", "images", "stage", "length", "loss", "iou", "val_loss", "lr", "images_per_s", "minutes"]


class Hook:
    """What ``Trainer.run`` calls before, during and after training; each method does nothing
    here, and a hook overrides the ones it needs."""

    def before_train(self) -> None:
        pass

    def after_step(self, stats: dict, val: Optional[float], event: Optional[str]) -> None:
        pass

    def after_train(self) -> None:
        pass


class ProgressLog(Hook):
    """``OUT/log.csv`` every ``log_every`` steps and at each validation, and a tqdm bar."""

    def __init__(self, trainer, total_steps: int, progress: bool = True):
        self.trainer, self.total, self.progress = trainer, total_steps, progress

    def before_train(self) -> None:
        from tqdm.auto import tqdm

        t = self.trainer
        path = t.out / "log.csv"
        new = not path.exists() or t.step == 0
        if not new:
            drop_rows_after(path, t.step)
        elif path.is_symlink():  # a new log replaces a link, never writes through it
            path.unlink()
        self.file = open(path, "w" if new else "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(LOG_COLUMNS)
        self.bar = tqdm(total=self.total, initial=t.step, disable=not self.progress, desc="train", dynamic_ncols=True)
        self.t0, self.images0 = t.clock(), t.images_seen

    def after_step(self, stats: dict, val: Optional[float], event: Optional[str]) -> None:
        t = self.trainer
        if event:
            self.bar.write(f"step {t.step}: {event} (val loss {val:.3f})")
        if t.step % t.config.log_every == 0 or val is not None:
            ips = (t.images_seen - self.images0) / max(t.clock() - self.t0, 1e-9)
            L = t.curriculum.spec[0]
            lr = t.optimizer.param_groups[0]["lr"]
            self.writer.writerow([t.step, t.images_seen, t.stage, L, f"{stats['loss']:.4f}", f"{stats['iou']:.4f}",
                                  "" if val is None else f"{val:.4f}", f"{lr:.3e}", f"{ips:.2f}",
                                  f"{t.elapsed / 60:.2f}"])
            self.file.flush()
            self.bar.set_postfix(loss=f"{stats['loss']:.3f}", iou=f"{stats['iou']:.3f}", L=L, img_s=f"{ips:.1f}")
        self.bar.update(1)

    def after_train(self) -> None:
        self.bar.close()
        self.file.close()


def drop_rows_after(path: Path, step: int) -> int:
    """Keep the header and the rows of a ``log.csv`` up to ``step``, and drop the rest (a run
    killed after its last checkpoint had logged steps that its resumption repeats; a row cut
    short by the kill goes too). Returns how many rows were dropped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if len(r) == len(LOG_COLUMNS) and r[0].isdigit() and int(r[0]) <= step]
    if len(keep) < len(rows):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)
        os.replace(tmp, path)
    return len(rows) - len(keep)


class PeriodicCheckpoint(Hook):
    """``OUT/last.pt`` every ``every_steps`` steps or 5 wall-clock minutes, whichever first,
    and once more at the end (an interrupted run loses at most that much). A run that stops
    before its first step writes nothing: a failed start leaves no ``last.pt`` to resume. Nor
    does a run that diverged (``trainer.diverged``, ``divergence``): its weights are ruined."""

    def __init__(self, trainer, every_steps: int = 200, every_seconds: float = 300.0):
        self.trainer, self.every_steps, self.every_seconds = trainer, every_steps, every_seconds

    def before_train(self) -> None:
        self.last, self.first_step = time.time(), self.trainer.step

    def after_step(self, stats: dict, val: Optional[float], event: Optional[str]) -> None:
        if self.trainer.step % self.every_steps == 0 or time.time() - self.last > self.every_seconds:
            self.trainer.save()
            self.last = time.time()

    def after_train(self) -> None:
        if self.trainer.step > self.first_step and not self.trainer.diverged:
            self.trainer.save()


class Snapshots(Hook):
    """A weights-only copy in ``OUT/snapshots/min_MMMM.mm.pt`` each time ``every_minutes`` of
    training time have passed: the learning curve is scored from them afterwards, off the
    training clock (``benchmarks/bench_time_to_target.py``)."""

    def __init__(self, trainer, every_minutes: float):
        if every_minutes <= 0:
            raise ValueError(f"snapshot_minutes must be > 0, got {every_minutes}")
        self.trainer, self.every_minutes = trainer, every_minutes

    def next_due(self) -> float:
        """Training seconds at which the next snapshot is due (the first multiple not yet kept)."""
        return (self.trainer.snapshots_kept + 1) * self.every_minutes * 60

    def save(self) -> Path:
        """Weights, config and counters (no optimiser) as ``snapshots/min_MMMM.mm.pt``; a
        multiple missed (a step longer than the interval) is skipped, not written late."""
        t = self.trainer
        t.snapshots_kept = int(t.elapsed // (self.every_minutes * 60))
        path = t.out / "snapshots" / f"min_{t.snapshots_kept * self.every_minutes:07.2f}.pt"
        state = trainer_state(t)
        save_atomic({k: state[k] for k in ("format", "config", "model", "trainer")}, path)
        return path

    def after_step(self, stats: dict, val: Optional[float], event: Optional[str]) -> None:
        if self.trainer.elapsed >= self.next_due():
            self.save()
