"""Ours: how the trainer trains RIS's two successor families (``TrainConfig.model_kind`` "set" or
"embedding", ``ris_lite.model.kinds``) through the same loop, data, checkpoints and CLI as RIS.

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR").

Two things differ from RIS, both here:

* the loss: :func:`successor_loss`, ``Trainer._loss`` of these kinds (the set loss of
  ``set_loss``, the discriminative loss of ``discriminative``);
* the curriculum: a set or embedding model unrolls nothing, so a stage's sequence length means
  nothing to it; a stage only decides which plants are drawn. These models start at the LAST
  stage (:func:`first_stage`), i.e. on the full range of counts from the first step (A1's
  11-20 leaves), and the plateau rule then only cuts the learning rate, as in RIS's last stage.
"""

from __future__ import annotations

from typing import Sequence

from ..precision import autocast
from .discriminative import embedding_loss
from .set_loss import set_loss


def first_stage(kind: str, curriculum: Sequence) -> int:
    """The curriculum stage a new run of ``kind`` starts at: 0 for RIS, the last for the others."""
    return 0 if kind == "ris" else len(curriculum) - 1


def successor_loss(t, images, targets, counts, return_parts: bool = False):
    """``Trainer._loss`` of a set or embedding model ``t.model`` (images and targets already on
    ``t.device``): its forward pass in the trainer's precision, then its loss in float32."""
    kind = t.config.model_kind
    with autocast(t.precision, t.device):
        out = t.model(images, score_logits=True) if kind == "set" else t.model(images)
    if kind == "set":
        masks, logits = out
        return set_loss(masks.float(), logits.float(), targets, counts, t.config.lam, scores_are_logits=True,
                        return_parts=return_parts)
    if kind == "embedding":
        embeddings, fg_logits = out
        return embedding_loss(embeddings.float(), fg_logits.float(), targets, counts, t.model.config, return_parts)
    raise ValueError(f"successor_loss trains 'set' and 'embedding' models, not {kind!r}")
