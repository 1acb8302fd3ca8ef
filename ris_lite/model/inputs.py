"""What ``RIS.predict`` and ``RIS.kept_masks`` accept as images, checked before the model runs.

Explained in the book chapter ``book/07_inference``.

The model reads float images in [0, 1]. An ``uint8`` image (0..255, as image files decode) is
divided by 255; an image of any other integer type (or bool) must hold only 0 and 1, since no
scale can be guessed for it. A NaN or an infinity anywhere is an error (the model would find
no instance and say nothing), and so is an empty image. An image of more than
``LARGE_FACTOR`` times the model's input pixels runs as it is, with a warning: memory grows with
the pixels, and the model learned leaves at the scale of its input.
"""

from __future__ import annotations

import numbers
import sys
import warnings
from pathlib import Path
from typing import Tuple

import torch

#: images above this many times the model's input pixels get a warning
LARGE_FACTOR = 4


def as_image_batch(images, in_channels: int, input_size: Tuple[int, int], device) -> torch.Tensor:
    """``(C,H,W)`` or ``(B,C,H,W)`` tensor or numpy array -> ``(B,C,H,W)`` float32 in [0, 1] on
    ``device`` (``uint8`` divided by 255); a clear error for anything else (module docstring)."""
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != in_channels:
        raise ValueError(f"RIS expects images ({in_channels},H,W) or (B,{in_channels},H,W), got shape "
                         f"{tuple(images.shape)}")
    if images.numel() == 0:
        raise ValueError(f"RIS got an empty batch or image, shape {tuple(images.shape)}")
    if images.is_complex():
        raise TypeError(f"RIS expects real images in [0, 1], got dtype {images.dtype}")
    if images.dtype == torch.uint8:
        images = images.to(device, torch.float32) / 255
    elif not images.is_floating_point():
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"RIS expects images in [0, 1]: a {images.dtype} image must hold only 0 and 1 "
                             f"(uint8 is divided by 255), got values {lo}..{hi}")
        images = images.to(device, torch.float32)
    else:
        images = images.to(device, torch.float32)
        bad = int((~torch.isfinite(images)).sum())
        if bad:
            raise ValueError(f"RIS got images with {bad} NaN or infinite value(s) of {images.numel()}")
    pixels, h, w = images.shape[2] * images.shape[3], *input_size
    if pixels > LARGE_FACTOR * h * w:
        warnings.warn(f"an image of {images.shape[2]}x{images.shape[3]} is {pixels / (h * w):.0f} times the "
                      f"model's input {h}x{w} in pixels: it runs at its own size (memory grows with it) but the "
                      "model learned leaves at its input's scale; resize it first (ris_lite.CVPPP(size=...) does)",
                      stacklevel=_caller_level())
    return images


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package's model code and torch's
    decorators: the warning names the user's line, once, however deep the call came."""
    inside = (str(Path(__file__).parent), str(Path(torch.__file__).parent))
    frame, level = sys._getframe(1), 1  # the frame of the function that warns
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def check_max_steps(max_steps: int) -> None:
    """``max_steps`` of ``predict`` / ``kept_masks``: an integer >= 1."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
