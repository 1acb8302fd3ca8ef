"""A real data set from a ``--data`` spec (``cvppp:PATH`` or ``folder:PATH``).

Explained in the book chapter ``book/10_your_data``.
"""

from __future__ import annotations

from typing import Optional, Tuple

from .cvppp import CVPPP
from .folder import LabelledFolder


def open_folder(spec: str, size: Optional[Tuple[int, int]] = None, zoom: float = 1.0,
                image_pattern: str = "images/{id}.*", label_pattern: str = "labels/{id}.*",
                **options) -> LabelledFolder:
    """A real data set from a ``--data`` spec: ``cvppp:PATH`` (the A1 names) or ``folder:PATH``
    (``image_pattern`` / ``label_pattern``); ``options`` go to the reader."""
    kind, _, root = spec.partition(":")
    if kind == "cvppp" and root:
        return CVPPP(root, size=size, zoom=zoom, **options)
    if kind == "folder" and root:
        return LabelledFolder(root, image_pattern, label_pattern, size=size, zoom=zoom, **options)
    raise ValueError(f"a real data spec is 'cvppp:PATH' or 'folder:PATH', got {spec!r}")
