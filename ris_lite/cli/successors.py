"""``ris-lite train --model-kind set|embedding`` (ours): the model of a new run of one of RIS's
successor families, from the command line.

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR"). The same data,
loop, checkpoints and ``evaluate --checkpoint`` as RIS (``ris_lite.training.successors``).
"""

from __future__ import annotations

from ..model.kinds import MODEL_KINDS, kind_of, model_config
from ..pretrained import load_model
from .options import CLIError, input_size_of, is_people

#: flags of ``train`` that configure RIS alone: (attribute, flag, its value when not given)
RIS_ONLY = (("feedback", "--feedback", False), ("coords", "--coords", False), ("canvas", "--canvas", False),
            ("canvas_memory", "--canvas-memory", False), ("skip", "--skip", "none"),
            ("union_input", "--union-input", False), ("score_sees_union", "--score-sees-union", False),
            ("overlap_weight", "--overlap-weight", 0.0), ("monotonic_weight", "--monotonic-weight", 0.0),
            ("score_from_stage", "--score-from-stage", 0), ("sampling_final", "--sampling-final", 0.0),
            ("freeze_fcn", "--freeze-fcn", False), ("imagenet", "--imagenet", False),
            ("fcn_batch_norm", "--fcn-batch-norm", None))


def successor_options(t) -> None:
    """The options of ``train`` for the successor families."""
    t.add_argument("--model-kind", default="ris", choices=list(MODEL_KINDS),
                   help="ris (the paper's model), or ours: set (K queries at once, DETR's mask heads) or "
                        "embedding (pixel embeddings, De Brabandere et al. 2017); book chapter 13")
    t.add_argument("--queries", type=int, default=None,
                   help="--model-kind set: K queries, at least the most leaves of an image (default 24)")
    t.add_argument("--embed-dim", type=int, default=None,
                   help="--model-kind set / embedding: width of the pixel embeddings (default 32 / 16)")


def successor_model_config(a):
    """``(config, init model or None)`` of a new set or embedding run: the --init checkpoint's
    (of the same kind), or one built from --channels, --fcn-stride, --fcn-dilations,
    --input-size, --queries and --embed-dim."""
    kind = a.model_kind
    if kind == "ris":
        raise CLIError("--queries and --embed-dim belong to --model-kind set / embedding")
    given = [flag for name, flag, off in RIS_ONLY if getattr(a, name) != off]
    if given:
        raise CLIError(f"{given[0]} configures RIS: it does not combine with --model-kind {kind}")
    if is_people(a.data):
        raise CLIError(f"--model-kind {kind} is built on the plant FCN: --data {a.data} trains RIS's people model")
    if a.queries is not None and kind != "set":
        raise CLIError("--queries belongs to --model-kind set")
    if a.init:
        if a.input_size or a.queries is not None or a.embed_dim is not None:
            raise CLIError("--input-size, --queries and --embed-dim do not combine with --init "
                           "(the model comes from the checkpoint)")
        try:
            init = load_model(a.init)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--init: {e}") from None
        if kind_of(init) != kind:
            raise CLIError(f"--init {a.init} holds a {kind_of(init)} model, not a {kind} model")
        return init.config, init
    try:
        dilations = [int(v) for v in a.fcn_dilations.split(",")]
    except ValueError:
        raise CLIError(f"--fcn-dilations must be integers >= 1 like '1,2,4,8', got {a.fcn_dilations!r}") from None
    fields = {"channels": a.channels, "fcn_stride": a.fcn_stride, "fcn_dilations": dilations}
    if a.input_size:
        fields["input_size"] = input_size_of(a)
    if a.queries is not None:
        fields["queries"] = a.queries
    if a.embed_dim is not None:
        fields["embed_dim"] = a.embed_dim
    try:
        config = model_config(kind, fields)
        MODEL_KINDS[kind][0](config)  # the FCN checks its stride and dilations
    except ValueError as e:
        raise CLIError(str(e)) from None
    return config, None
