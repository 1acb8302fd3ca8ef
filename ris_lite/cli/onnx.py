"""``ris-lite export --onnx DIR``: the default RIS and the embedding model as ONNX graphs (ours).

Explained in the book chapter ``book/07_inference``; the book's page ``try_it.md`` ("Try it in the
page") runs these graphs in the reader's browser. The graphs themselves are
``ris_lite.model.onnx_export``. ``make book`` calls :func:`export_default_onnx`
(through the book's Sphinx extension ``try_it.py``), so the graphs are always remade from the shipped checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..model.kinds import kind_of
from ..model.onnx_export import export_onnx
from ..pretrained import DEFAULT_MODEL, load_model
from .options import model_zoom


def export_default_onnx(out_dir: str | Path, model: Optional[str] = None,
                        embedding: Optional[str] = "rosettes_embedding") -> dict:
    """Export RIS ``model`` (default: ``DEFAULT_MODEL`` with its chosen assembly) and the
    ``embedding`` model (None: none) into ``out_dir``; returns the settings written there."""
    name = model or DEFAULT_MODEL["name"]
    ris = load_model(name)
    if kind_of(ris) != "ris":
        raise ValueError(f"{name} holds a {kind_of(ris)} model; --onnx exports a RIS (and --embedding beside it)")
    emb = None
    if embedding is not None:
        emb = load_model(embedding)
        if kind_of(emb) != "embedding":
            raise ValueError(f"--embedding {embedding} holds a {kind_of(emb)} model, not an embedding model")
    rule = DEFAULT_MODEL if name == DEFAULT_MODEL["name"] else {"assembly": "first", "min_size": 0}
    return export_onnx(out_dir, ris, emb, zoom=model_zoom(ris), names=(str(name), str(embedding)),
                       assembly=rule["assembly"], min_size=rule["min_size"])
