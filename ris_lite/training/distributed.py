"""Training on several GPUs (or CPU processes) at once: ``torchrun`` and DistributedDataParallel.

Explained in the book chapter ``book/06_training`` (section "When one GPU is not enough").

``torchrun --nproc_per_node=N -m ris_lite train ...`` starts N processes, the *ranks*; each
joins the process group (``init_distributed``: NCCL on GPUs, gloo on CPUs), builds the same
model from the same seed and trains it on its own images. What changes against one process:

* **the batch**: ``batch_size`` is per rank; DistributedDataParallel averages the ranks'
  gradients, so a step is one step on ``N x batch_size`` images (every rank's loss is a mean
  over its own, equally many, images; tested against one process on the same images).
* **the data**: rank ``r`` of ``N`` trains on items ``r, r + N, r + 2N, ...`` of each data set
  (``Ranks.shard``): procedural plants by their seed index, real files in their sorted order,
  so no plant or file is drawn by two ranks. Its draws (which items, the augmentation, the
  canvas models' sampling) at step ``s`` come from a generator seeded by ``(seed, r, s)``
  (``Ranks.reseed``): a resumed run draws exactly as the uninterrupted one on every rank,
  although only rank 0's state is in the checkpoint.
* **validation**: each rank scores its share of the validation set and the sums are added up
  over ranks (``Ranks.mean``), so every rank sees the same loss and takes the same curriculum
  and lr decisions.
* **who writes**: rank 0 alone (checkpoints, ``log.csv``, ``split.json``, snapshots, the
  progress bar). The log's loss and IoU are means over ranks, and the training time that a
  budget counts is the mean of the ranks' clocks, so every rank stops at the same step.
* a parameter that a step leaves unused (the ConvLSTM's recurrent weights in a single-step
  canvas model) is allowed: DDP runs with ``find_unused_parameters``.

In one process ``Ranks()`` is rank 0 of 1 and every method is the identity: training without
torchrun is bit for bit what it was before.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..device import pick_device
from .hooks import Hook


def launched_by_torchrun() -> bool:
    """True in a process that ``torchrun`` started with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: Optional[str] = None) -> Optional[str]:
    """Under torchrun: join the process group (NCCL on GPUs, gloo on CPUs) and return this
    rank's device (``cuda:LOCAL_RANK``, or ``cpu``). Otherwise return ``device`` unchanged."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    dev = pick_device(device)
    if dev.type == "cuda":  # one GPU per rank, whatever index was asked for
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return str(dev)


def close_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of rank ``rank``'s draws at step ``step``: a hash of the three, so no two
    ranks or steps share a stream and none depends on what was drawn before."""
    digest = hashlib.sha256(f"{seed}/{rank}/{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Shard(torch.utils.data.Subset):
    """Items ``rank, rank + world, ...`` of a data set; ``names`` are theirs (real data)."""

    @property
    def names(self) -> List[str]:
        return [self.dataset.names[i] for i in self.indices]


class _Loss(torch.nn.Module):
    """What DDP wraps: the model, as a submodule (its parameters are the ones averaged), with
    the trainer's loss as ``forward``, so a loss that steps the model several times (canvas
    models) is one forward and one backward for DDP."""

    def __init__(self, model: torch.nn.Module, loss: Callable):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, *args, **kwargs):
        return self.loss(*args, **kwargs)


class SyncStats(Hook):
    """Every rank's first hook: the step's loss and IoU become their means over ranks (what the
    log shows), and the training time the mean of the ranks' clocks (so all stop together)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def after_step(self, stats: dict, val: Optional[float], event: Optional[str]) -> None:
        t = self.trainer
        x = torch.tensor([stats["loss"], stats["iou"], t.elapsed], dtype=torch.float64, device=t.device)
        dist.all_reduce(x)
        stats["loss"], stats["iou"], t.elapsed = (x / t.ranks.world).tolist()


class Ranks:
    """This process's place in a run: rank ``rank`` of ``world`` (0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        self.rank, self.world = rank, world
        self._ddp: Optional[DistributedDataParallel] = None

    @classmethod
    def current(cls) -> Ranks:
        """The process group this process joined (``init_distributed``), else one process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0

    def shard(self, dataset, side: str):
        """This rank's items of ``dataset`` (all of them in one process). A training shard must
        hold an image; a validation shard may be empty (its rank adds nothing to the sums)."""
        if self.world == 1:
            return dataset
        part = Shard(dataset, range(self.rank, len(dataset), self.world))
        if side == "train" and not len(part):
            raise ValueError(f"{len(dataset)} training image(s) cannot be shared by {self.world} ranks: "
                             "each needs at least one")
        return part

    def reseed(self, generator: torch.Generator, seed: int, step: int) -> None:
        """Several ranks: start this step's draws from ``step_seed`` (one process keeps its
        single stream, as before)."""
        if self.world > 1:
            generator.manual_seed(step_seed(seed, self.rank, step))

    def mean(self, total: float, count: int, device: torch.device) -> float:
        """``total / count`` with both summed over ranks first (one process: as it is)."""
        if self.world == 1:
            return total / count
        x = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(x)
        return float(x[0] / x[1])

    def training_loss(self, trainer) -> Callable:
        """The loss a training step calls: ``trainer._loss``, or with several ranks that loss
        through DDP, built at the first step (after any weights were loaded or restored;
        identical on every rank, and DDP starts every rank from rank 0's anyway)."""
        if self.world == 1:
            return trainer._loss
        if self._ddp is None:
            ids = [trainer.device.index] if trainer.device.type == "cuda" else None
            self._ddp = DistributedDataParallel(_Loss(trainer.model, trainer._loss), device_ids=ids,
                                                find_unused_parameters=True)
        return self._ddp

    def hooks(self, trainer, hooks: Sequence[Hook]) -> List[Hook]:
        """The hooks of this rank: all of them in one process; with several ranks
        ``SyncStats`` first, then the writing ones on rank 0 only."""
        if self.world == 1:
            return list(hooks)
        return [SyncStats(trainer), *(hooks if self.main else [])]
