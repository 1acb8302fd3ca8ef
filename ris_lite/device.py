"""Where computation runs: CUDA when present, else the CPU.

Explained in the book chapter ``book/06_training``.
"""

from __future__ import annotations

from typing import Optional

import torch


def pick_device(device: Optional[str] = None) -> torch.device:
    """``"cuda"`` when available (or as asked), else ``"cpu"``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    return dev
