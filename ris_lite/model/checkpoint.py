"""Checkpoint files: atomic writes, clear errors for foreign files, a model back from a file.

Explained in the book chapter ``book/06_training`` (section "Checkpoints").

A training checkpoint is a dict of plain data (``torch.load(weights_only=True)`` reads it):
``config`` (the ``TrainConfig`` as a dict, its ``model`` entry the ``RISConfig``), ``model``
(the state dict), ``precision``, and for resuming ``optimizer``, ``generator``, ``torch_rng``,
``trainer`` (counters) and ``events``. No module path is stored, so files survive a
reorganisation of the package. ``export`` keeps only what inference needs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Optional

import torch

from ..device import pick_device
from .kinds import build_model
from .ris import RIS

CHECKPOINT_FORMAT = 1


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


def replace_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` to ``path.tmp``, then rename it onto ``path``: a crash never leaves half a
    file, and a link at ``path`` is replaced, never written through (into what it points at)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


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
    """The RIS stored in a training checkpoint (or a slim one from ``export``), in eval mode; ours:
    the model of the checkpoint's ``model_kind`` (``ris_lite.model.kinds``; none stored: RIS)."""
    state = load_checkpoint(path)
    cfg = state["config"]
    kind = cfg.get("model_kind", "ris") if isinstance(cfg, dict) else "ris"
    try:
        model = build_model(kind, cfg["model"] if "model" in cfg else cfg)
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # a config from elsewhere, or edited by hand
        raise ValueError(f"{path}: its model config is not a {kind} config ({type(e).__name__}: {e})") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as e:
        detail = " ".join(str(e).split())  # torch's message spans lines; a user error is one
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise ValueError(f"{path}: its weights do not fit its model config ({detail})") from None
    model.data_options = dict(cfg.get("data", {}))
    #: the training data's ``source`` ("synthetic", "cvppp:PATH", "people", ...), when stored
    model.source = cfg.get("source")
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
