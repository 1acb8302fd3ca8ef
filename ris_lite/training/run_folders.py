"""Where a notebook's long training run lives, so that a Colab disconnect does not lose it.

Explained in the book chapter ``book/06_training`` (section "A full run on a GPU"). A Colab
runtime forgets its disk when it disconnects; Google Drive, once mounted, does not. The
chapters' full-size GPU cells therefore write to :func:`run_folder` and start with
:func:`resume_or_start`: run the cell again after a disconnect and it continues from the last
checkpoint (``Trainer.resume``, exact step for step) instead of starting over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .config import TrainConfig
from .trainer import Trainer

#: where Colab mounts Google Drive (``from google.colab import drive; drive.mount(DRIVE)``)
DRIVE = Path("/content/drive")


def run_folder(name: str, root: Optional[str | os.PathLike] = None) -> Path:
    """``root / name``. Without ``root``: ``MyDrive/ris_lite_runs`` when Google Drive is mounted
    at ``/content/drive``, else ``./runs`` (a local folder, lost with a Colab runtime)."""
    if not name or Path(name).name != name:
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    if root is None:
        drive = DRIVE / "MyDrive"
        root = drive / "ris_lite_runs" if drive.is_dir() else Path("runs")
    return Path(root) / name


def resume_or_start(config: TrainConfig, out: str | os.PathLike, device: Optional[str] = None) -> Trainer:
    """The run in ``out``: resumed from ``out/last.pt`` when it exists (its config must equal
    ``config``, else a ValueError lists what differs), else a new one."""
    last = Path(out) / "last.pt"
    if last.is_file():
        return Trainer.resume(last, out, device, config=config)
    return Trainer(config, out, device)
