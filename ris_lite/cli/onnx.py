"""``ris-lite export --onnx DIR``: the default RIS and the embedding model as ONNX graphs (ours).

Explained in the book chapter ``book/07_inference``; the book's page ``try_it.md`` ("Try it in the
page") runs these graphs in the reader's browser. The graphs themselves are
``ris_lite.model.onnx_export``. ``make book`` calls :func:`export_default_onnx`
(through the book's Sphinx extension ``try_it.py``), so the graphs are always remade from the shipped checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ..model.kinds import kind_of
from ..model.onnx_export import export_onnx
from ..pretrained import DEFAULT_MODEL, load_model
from .options import CLIError, model_zoom

#: what ``--onnx DIR`` writes
FILES = ("ris_fcn.onnx", "ris_step.onnx", "embedding.onnx", "settings.json")


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


def export_onnx_cmd(a) -> int:
    """``export --onnx DIR``: the graphs written in a fresh folder inside DIR, then moved into
    place (a link at a target's name is replaced, never written through); files that exist are
    replaced only with ``--force``."""
    out = Path(a.onnx)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--onnx {out} is a file, not a folder")
    there = [n for n in FILES if (out / n).exists() or (out / n).is_symlink()]
    if there and not a.force:
        raise CLIError(f"--onnx {out} already holds {', '.join(there)}: pass --force to replace them")
    embedding = None if str(a.embedding).lower() == "none" else a.embedding
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".onnx-", dir=out))
    except OSError as e:
        raise CLIError(f"--onnx {out}: cannot make that folder ({e.strerror or e})") from None
    try:
        settings = export_default_onnx(staging, a.model, embedding)
        for name in os.listdir(staging):
            os.replace(staging / name, out / name)
    except (FileNotFoundError, ValueError, ImportError) as e:
        raise CLIError(str(e)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(json.dumps({"exported": str(out), "ris": settings["ris"]["name"],
                      "embedding": settings.get("embedding", {}).get("name")}))
    return 0
