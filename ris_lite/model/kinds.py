"""Which model a checkpoint holds: RIS (the paper) or, ours, one of its two successor families.

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR").

* ``"ris"``: ``ris_lite.model.ris.RIS`` (``RISConfig``), the default everywhere;
* ``"set"``: ``ris_lite.model.set_prediction.SetPredictor`` (``SetConfig``), K queries at once;
* ``"embedding"``: ``ris_lite.model.embedding.EmbeddingModel`` (``EmbeddingConfig``), pixel
  embeddings clustered at inference.

A training checkpoint stores the kind as ``config["model_kind"]`` beside the model's config
(``config["model"]``); files without it hold a RIS.
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

from torch import nn

from .embedding import EmbeddingConfig, EmbeddingModel
from .ris import RIS, RISConfig
from .set_prediction import SetConfig, SetPredictor

MODEL_KINDS: Dict[str, Tuple[Type[nn.Module], type]] = {
    "ris": (RIS, RISConfig), "set": (SetPredictor, SetConfig), "embedding": (EmbeddingModel, EmbeddingConfig)}


def check_kind(kind: str) -> str:
    """``kind`` if it names a model kind, else a one-line error listing them."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    return kind


def model_config(kind: str, config: dict):
    """The config object of a ``kind`` model from its stored dict."""
    return MODEL_KINDS[check_kind(kind)][1].from_dict(config)


def build_model(kind: str, config: dict) -> nn.Module:
    """A new ``kind`` model from its config dict (as ``TrainConfig.model`` stores it)."""
    model_class, _ = MODEL_KINDS[check_kind(kind)]
    return model_class(model_config(kind, config))


def kind_of(model: nn.Module) -> str:
    """The kind of a model built by :func:`build_model` (or any ``RIS``)."""
    for kind, (model_class, _) in MODEL_KINDS.items():
        if isinstance(model, model_class):
            return kind
    raise TypeError(f"{type(model).__name__} is not a ris_lite model ({', '.join(MODEL_KINDS)})")
