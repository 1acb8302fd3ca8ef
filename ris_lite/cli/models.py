"""The model of a new ``ris-lite train`` run: the ``--init`` checkpoint's, the paper's people
configuration, or RIS built from the flags (ours: the set and embedding models, ``successors``).

Explained in the book chapters ``book/06_training`` (the flags), ``book/10_your_data`` (``--init``)
and ``book/11_people``. Every size is checked before a weight is allocated: a width of 100,000
channels asked for 360 GB, a stride coarser than the input left no mask grid.
"""

from __future__ import annotations

import math

from ..model.fcn import FCN, largest_stride
from ..model.kinds import kind_of
from ..model.people import people_model_config
from ..model.ris import RIS, RISConfig
from ..pretrained import load_model
from .options import CLIError, data_kind, input_size_of, is_people, learned_kind
from .successors import successor_model_config

#: the widest ``--channels``: the ConvLSTM's gates hold 4 x 2 x 9 x channels^2 weights (75 M, with
#: Adam's two moments about 1 GB, at 1024; the paper's plant model has 30, its people model 100)
MAX_CHANNELS = 1024


def count_options(a) -> dict:
    """The model options of ``ris_lite.model.counting`` (ours) asked for on the command line."""
    return {"union_input": a.union_input, "score_sees_union": a.score_sees_union}


def check_sizes(a) -> None:
    """``--channels``, ``--fcn-stride`` and ``--fcn-width`` in range, before anything is built."""
    if not 1 <= a.channels <= MAX_CHANNELS:
        raise CLIError(f"--channels must be a positive integer up to {MAX_CHANNELS}, got {a.channels}")
    if not (math.isfinite(a.fcn_width) and 0 < a.fcn_width <= 1):
        raise CLIError(f"--fcn-width must be in (0, 1] (1 = VGG16), got {a.fcn_width}")
    h, w = input_size_of(a) or RISConfig().input_size
    top = largest_stride(h, w)
    if not 1 <= a.fcn_stride <= top:
        raise CLIError(f"--fcn-stride must be >= 1 and at most {top} for a {h}x{w} input (a coarser one leaves no "
                       f"mask grid), got {a.fcn_stride}")


def _init_model(a):
    """The ``--init`` model, which must have learned the kind of data it will train on."""
    try:
        init = load_model(a.init)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(f"--init: {e}") from None
    have, want = learned_kind(init), data_kind(a.data)
    if have != want and not a.allow_other_kind:
        raise CLIError(f"--init {a.init} learned {have} but --data {a.data} holds {want}: pass --allow-other-kind "
                       "to fine-tune it there anyway")
    return init


def new_model_config(a):
    """``(model config, --init model or None)`` of a new run; a CLIError for flags that do not fit."""
    check_sizes(a)
    init = _init_model(a) if a.init else None
    if init is not None and "model_kind" not in getattr(a, "given", ()):
        a.model_kind = kind_of(init)  # the checkpoint says what it holds
    if a.model_kind != "ris" or a.queries is not None or a.embed_dim is not None:
        return successor_model_config(a)  # ours: RIS's successor families
    if init is not None:
        if kind_of(init) != "ris":
            raise CLIError(f"--init {a.init} holds a {kind_of(init)} model: pass --model-kind {kind_of(init)}")
        flags = [f for f, on in (("--feedback", a.feedback), ("--coords", a.coords), ("--canvas", a.canvas),
                                 ("--canvas-memory", a.canvas_memory), ("--input-size", a.input_size)) if on]
        if flags:
            raise CLIError(f"{flags[0]} does not combine with --init (the model comes from the checkpoint)")
        # zero-initialised options: the new model starts as the --init one
        added = {k: v for k, v in count_options(a).items() if v}
        if a.skip != "none":
            if init.config.skip not in ("none", a.skip):
                raise CLIError(f"--skip {a.skip}: the --init model already has skip={init.config.skip!r}")
            added["skip"] = a.skip
        if added:
            try:
                return RISConfig.from_dict({**init.config.to_dict(), **added}), init
            except ValueError as e:
                raise CLIError(f"--init with {', '.join(added)}: {e}") from None
        return init.config, init
    if is_people(a.data):  # the paper's people configuration (FCN-8s, 1x1 gates), scaled by --fcn-width
        if any(count_options(a).values()):
            raise CLIError("--union-input and --score-sees-union are options of the plant model, not of --data people")
        size = input_size_of(a) or ((128, 128) if a.data == "people" else (500, 500))
        # from scratch the FCN needs BatchNorm; ImageNet weights are plain VGG16 unless asked
        batch_norm = (not a.imagenet) if a.fcn_batch_norm is None else a.fcn_batch_norm
        return people_model_config(a.fcn_width, size, batch_norm=batch_norm), None
    if a.imagenet or a.freeze_fcn or a.fcn_batch_norm is not None:
        raise CLIError("--imagenet, --freeze-fcn and --fcn-batch-norm belong to the people configuration "
                       "(--data people)")
    size = {"input_size": input_size_of(a)} if a.input_size else {}
    try:
        dilations = tuple(int(v) for v in a.fcn_dilations.split(","))
        model = RISConfig(feedback=a.feedback, fcn_dilations=dilations, channels=a.channels, coords=a.coords,
                          canvas=a.canvas or a.canvas_memory, canvas_memory=a.canvas_memory,
                          fcn_stride=a.fcn_stride, **size)
        FCN(model.in_channels, model.channels, model.fcn_stride, model.fcn_variant, dilations=dilations)
    except ValueError:
        raise CLIError(f"--fcn-dilations must be four integers >= 1 like '1,2,4,8', got {a.fcn_dilations!r}") from None
    model = RISConfig.from_dict({**model.to_dict(), **count_options(a)})
    if (a.canvas or a.canvas_memory) and (a.feedback or a.coords):
        raise CLIError("--canvas does not combine with --feedback or --coords")
    if a.skip != "none":
        if a.canvas or a.canvas_memory:
            raise CLIError("--skip does not combine with --canvas")
        model = RISConfig.from_dict({**model.to_dict(), "skip": a.skip})
    try:
        RIS(model)  # the model's own checks of its options (the union options with a canvas, ...)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return model, None
