"""What a training checkpoint holds, and how a trainer is put back exactly as it was.

Explained in the book chapter ``book/06_training`` (section "Checkpoints"); the file format
and atomic writes are ``ris_lite.model.checkpoint``.

Beside the config and the weights, a resumable checkpoint keeps the optimiser's moments, both
random generators (the data order, the global torch RNG), the gradient scaler of fp16 runs,
the curriculum events, and the counters of ``TrainerCounters``: the step, the images seen, the
curriculum stage and the steps spent in it, the plateau rule's best loss and bad evaluations,
the training time and the snapshots kept. So a run stopped and resumed repeats the
uninterrupted one step for step (tested). A run of several ranks (``distributed``) stores rank
0's state and its number of ranks; the other ranks' draws are seeded by the step.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.checkpoint import CHECKPOINT_FORMAT
from ..model.kinds import kind_of

COUNTERS = ("step", "images_seen", "stage", "stage_step", "best_val", "bad_evals", "elapsed", "snapshots_kept")


class TrainerCounters:
    """Where a run stands, by the names the checkpoint stores; ``stage`` / ``stage_step`` live
    in the curriculum and ``best_val`` / ``bad_evals`` in the plateau rule."""

    @property
    def stage(self) -> int:
        return self.curriculum.stage

    @stage.setter
    def stage(self, value: int) -> None:
        self.curriculum.stage = value

    @property
    def stage_step(self) -> int:
        return self.curriculum.stage_step

    @stage_step.setter
    def stage_step(self, value: int) -> None:
        self.curriculum.stage_step = value

    @property
    def best_val(self) -> float:
        return self.plateau.best

    @best_val.setter
    def best_val(self, value: float) -> None:
        self.plateau.best = value

    @property
    def bad_evals(self) -> int:
        return self.plateau.bad

    @bad_evals.setter
    def bad_evals(self, value: int) -> None:
        self.plateau.bad = value


def trainer_state(t) -> dict:
    """Everything ``restore_trainer`` needs, as plain data (``torch.load(weights_only=True)``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": t.config.to_dict(),
        "precision": {"requested": t.config.precision, "used": t.precision, "device": t.device.type},
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "generator": t.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "trainer": {k: getattr(t, k) for k in COUNTERS},
        "events": t.events,
        "world_size": t.ranks.world,
        **({"scaler": t.scaler.state_dict()} if t.scaler is not None else {}),
    }


def check_same_config(stored, config, path) -> None:
    """A resume that names a config must name the stored one (else: which fields differ)."""
    if config is not None and config.to_dict() != stored.to_dict():
        diff = sorted(k for k, v in config.to_dict().items() if stored.to_dict()[k] != v)
        raise ValueError(f"checkpoint {path} was made with a different config (differs in: {', '.join(diff)})")


def restore_trainer(t, state: dict) -> None:
    """Load ``state`` (a ``trainer_state``) into a trainer built from the same config."""
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
    world_before = state.get("world_size", 1)
    if world_before != t.ranks.world:  # the batch of a step changes with the number of ranks
        t.events.append({"step": t.step, "event": f"ranks {world_before} -> {t.ranks.world}"})


#: model options that start as a no-op (zero-initialised, ours): a model may add them to an
#: ``init`` without them and starts exactly as that ``init``; value off, and their weights' prefix
ADDABLE = {"skip": ("none", "skip."), "union_input": (False, "union_input."),
           "score_sees_union": (False, "union_score.")}


def load_init_weights(model, init, source: str) -> None:
    """Copy the weights of ``init`` (a RIS) into ``model`` for fine-tuning; the architectures
    must agree, except that ``model`` may add the zero-initialised options of ``ADDABLE`` (the
    boundary skip, the union input and score of ``ris_lite.model.counting``; ours) to an
    ``init`` without them: it then starts as ``init``. A set or embedding model (ours) starts
    only from a model of its own kind and config."""
    if kind_of(model) != kind_of(init):
        raise ValueError(f"{source}: a {kind_of(init)} model cannot start a {kind_of(model)} model's training")
    mine, theirs = model.config.to_dict(), init.config.to_dict()
    if kind_of(model) != "ris":
        if mine != theirs:
            raise ValueError(f"{source}: its model config differs from this trainer's")
        model.load_state_dict(init.state_dict())
        return
    off = {k: v for k, (v, _) in ADDABLE.items()}
    added = [k for k, (v, _) in ADDABLE.items() if theirs.get(k, v) == v and mine[k] != v]
    changed = [k for k in ADDABLE if mine[k] != theirs.get(k, off[k]) and k not in added]
    if {**mine, **off} != {**theirs, **off} or changed:
        raise ValueError(f"{source}: its model config differs from this trainer's")
    missing, unexpected = model.load_state_dict(init.state_dict(), strict=not added)
    new = tuple(ADDABLE[k][1] for k in added)
    if unexpected or any(not k.startswith(new) for k in missing):
        raise ValueError(f"{source}: weights do not fit this trainer's model ({missing + unexpected})")


#: the FCN's settings that fix its weights' shapes and what they compute
FCN_FIELDS = ("in_channels", "channels", "fcn_variant", "fcn_stride", "fcn_dilations")


def copy_fcn(model, source_model, source: str) -> None:
    """Ours: copy the plant FCN of ``source_model`` (a RIS, or a set / embedding model whose
    ``features.fcn`` is the same FCN) into RIS ``model``'s FCN, exactly; nothing else is copied.
    An FCN of another shape, stride or dilations is refused in one line naming the differences."""
    src = getattr(source_model, "fcn", None)
    if src is None:
        src = getattr(getattr(source_model, "features", None), "fcn", None)
    if src is None or getattr(model, "fcn", None) is None:
        raise ValueError(f"{source}: holds no plant FCN to copy (a {kind_of(source_model)} model)")
    mine, theirs = model.config.to_dict(), source_model.config.to_dict()
    differ = [f"{k} {theirs.get(k)} (this model: {mine.get(k)})" for k in FCN_FIELDS
              if list(np.atleast_1d(theirs.get(k))) != list(np.atleast_1d(mine.get(k)))]
    shapes = {k: tuple(v.shape) for k, v in src.state_dict().items()}
    if not differ and shapes != {k: tuple(v.shape) for k, v in model.fcn.state_dict().items()}:
        differ = ["its weights' shapes"]
    if differ:
        raise ValueError(f"{source}: its FCN differs from this model's: {'; '.join(differ)}")
    model.fcn.load_state_dict(src.state_dict())
