"""The shipped checkpoint (made by ``ris-lite train``; command and log in ``data/pretrained``).

Used in the book chapters ``book/07_training`` and ``book/08_evaluation``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .model import RIS

PRETRAINED = {"rosettes": "rosettes.pt"}


def pretrained_path(name: str = "rosettes") -> Path:
    """Where the named checkpoint file lies (inside the installed package)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose from {sorted(PRETRAINED)}")
    path = Path(str(resources.files("ris_lite") / "pretrained" / PRETRAINED[name]))
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} is missing from this installation")
    return path


def load_pretrained(name: str = "rosettes") -> RIS:
    """The shipped RIS, in eval mode, on the CPU (``.to('cuda')`` it yourself).

    ``model.data_options`` holds the rosette options it was trained on, so
    ``RosetteDataset('test', **model.data_options)`` is its benchmark.
    """
    from .train import model_from_checkpoint

    return model_from_checkpoint(pretrained_path(name))
