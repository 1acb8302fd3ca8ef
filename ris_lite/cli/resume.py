"""What ``ris-lite train --resume`` may change: how long and where this session trains, and
nothing that would make the run another one.

Explained in the book chapter ``book/06_training`` (section "Checkpoints").

A resumed run is rebuilt from its checkpoint's config. A flag given with ``--resume`` that says
something else than that config would be ignored without a word, so it is an error naming each
difference; a flag that repeats the stored value is fine. Only flags the user typed count
(``given``: the options named on the command line, whatever their value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Set

from ..model.ris import RISConfig
from ..training.config import TrainConfig
from .options import CLIError

#: flags that steer this session, not the run: free on resume
SESSION = {"out", "resume", "budget_minutes", "max_steps", "device", "quiet", "snapshot_minutes"}
#: what a checkpoint needs beyond the model to be resumed (``training.checkpointing``)
RESUMABLE = ("optimizer", "generator", "torch_rng", "trainer")


def _ints(text: str, sep: str = ",") -> List[int]:
    try:
        return [int(v) for v in text.split(sep)]
    except ValueError:
        return [text]  # unparsable: differs from any stored value, shown as typed


def _source(spec: str) -> str:
    """A data spec with its path resolved, so ``cvppp:x`` and ``cvppp:/abs/x`` compare equal."""
    kind, sep, root = spec.partition(":")
    return f"{kind}:{Path(root).resolve()}" if sep and root else spec


#: flag -> (its value as the stored config holds it, the stored value) for the other flags
DERIVED: Dict[str, Callable] = {
    "data": lambda a, c: (_source(a.data), _source(c["source"])),
    "curriculum": lambda a, c: ([_ints(s) for s in a.curriculum.split(";")], c["curriculum"]),
    "fcn_dilations": lambda a, c: (_ints(a.fcn_dilations), list(c["model"].get("fcn_dilations", []))),
    "input_size": lambda a, c: (_ints(a.input_size), list(c["model"].get("input_size", []))),
    "canvas": lambda a, c: (a.canvas, c["model"].get("canvas") and not c["model"].get("canvas_memory")),
    "style": lambda a, c: (a.style, c["data"].get("style", "a1")),
    "zoom": lambda a, c: (a.zoom, c["data"].get("zoom")),
    "cpu_bf16": lambda a, c: (a.cpu_bf16, c["precision"] == "bf16"),
    "image_pattern": lambda a, c: (a.image_pattern, c["folder"].get("image_pattern")),
    "label_pattern": lambda a, c: (a.label_pattern, c["folder"].get("label_pattern")),
}


def check_resume(a, given: Set[str], state: dict, path) -> None:
    """Refuse to resume from ``state`` (loaded from ``path``) a checkpoint that holds a model only,
    or with flags that differ from its config (every difference in one line)."""
    missing = [k for k in RESUMABLE if k not in state]
    if missing:
        raise CLIError(f"{path} holds a model but not a training run's state (no {', '.join(missing)}): an "
                       f"exported or shipped model cannot be resumed; start a new run from it with --init {path}")
    try:
        stored = TrainConfig(**state["config"]).to_dict()
    except (TypeError, ValueError) as e:
        raise CLIError(f"{path}: its config is not a training config ({type(e).__name__}: {e})") from None
    if stored.get("model_kind", "ris") == "ris":  # fields newer than the file: their defaults
        stored["model"] = {**RISConfig().to_dict(), **stored["model"]}
    differences = []
    for dest in sorted(given - SESSION):
        flag = "--" + dest.replace("_", "-")
        if dest in DERIVED:
            mine, theirs = DERIVED[dest](a, stored)
        elif dest in stored or dest in stored["model"]:  # a field of the same name
            mine, theirs = getattr(a, dest), stored[dest] if dest in stored else stored["model"][dest]
        else:  # not stored: what it does happens when a run starts
            differences.append(f"{flag} (acts when a run starts)")
            continue
        if mine != theirs:
            differences.append(f"{flag} {getattr(a, dest)} (the run's: {theirs})")
    if differences:
        raise CLIError(f"--resume continues {path} with its own settings; these flags would be ignored: "
                       f"{'; '.join(differences)}. Leave them out, or start a new run in another --out")
