"""What ``RIS.predict`` and ``RIS.kept_masks`` accept as images, checked before the model runs.

Explained in the book chapter ``book/07_inference``.

The model reads float images in [0, 1]. An ``uint8`` image (0..255, as image files decode) is
divided by 255; an image of any other integer type (or bool) must hold only 0 and 1, since no
scale can be guessed for it. A float image beyond [0, 1] by more than ``RANGE_TOLERANCE`` is an
error that says how to bring it there (a 0..255 float image found 6 leaves where there were 16,
and said nothing). A NaN or an infinity anywhere is an error (the model would find no instance
and say nothing), and so is an empty image. A list of images is one batch of one size. The other
options of ``predict`` are checked too (:func:`check_predict_options`). An image of more than
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

from .assembly import ASSEMBLIES

#: images above this many times the model's input pixels get a warning
LARGE_FACTOR = 4
#: how far beyond [0, 1] a float image may reach (a bicubic resize's overshoot) before it is an error
RANGE_TOLERANCE = 0.05


def as_image_batch(images, in_channels: int, input_size: Tuple[int, int], device) -> torch.Tensor:
    """``(C,H,W)`` or ``(B,C,H,W)`` tensor or numpy array -> ``(B,C,H,W)`` float32 in [0, 1] on
    ``device`` (``uint8`` divided by 255); a list of images of one size is a batch; a clear
    error for anything else (module docstring)."""
    if isinstance(images, (list, tuple)) and images and not isinstance(images[0], numbers.Number):
        items = [torch.as_tensor(x) for x in images]
        shapes = sorted({tuple(x.shape) for x in items})
        if len(shapes) > 1:
            raise ValueError(f"a list of images is one batch, so its images must be of one size, got {shapes[0]} "
                             f"and {shapes[1]}: predict each image on its own")
        images = torch.stack(items)
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
        lo, hi = float(images.min()), float(images.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ValueError(f"RIS expects float images in [0, 1], got values {lo:g}..{hi:g}: if they are 0..255, "
                             "divide by 255 (or pass uint8); clamp a resize's overshoot with .clamp(0, 1)")
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


def check_max_steps(max_steps: int, name: str = "max_steps") -> None:
    """``max_steps`` of ``predict`` / ``kept_masks`` (or ``steps`` of a forward pass): an integer >= 1."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {max_steps!r}")


def check_threshold(name: str, value) -> None:
    """A threshold on probabilities: a number in [0, 1) (NaN keeps nothing, nor does 1 or more)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_size(name: str, value) -> None:
    """A size in pixels: an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (pixels), got {value!r}")


def check_predict_options(mask_threshold, score_threshold, min_size, assembly: str, crf) -> None:
    """The options of ``predict`` besides the images: the thresholds in [0, 1), ``min_size`` an
    integer >= 0, ``assembly`` one of ``ASSEMBLIES``. The CRF gives every pixel its instance
    itself, so with ``crf`` a non-default ``assembly`` or ``mask_threshold`` is refused, not ignored."""
    check_threshold("mask_threshold", mask_threshold)
    check_threshold("score_threshold", score_threshold)
    check_size("min_size", min_size)
    if assembly not in ASSEMBLIES:
        raise ValueError(f"assembly must be one of {', '.join(ASSEMBLIES)}, got {assembly!r}")
    if crf is not False and crf is not None and (assembly != "first" or mask_threshold != 0.5):
        raise ValueError(f"assembly={assembly!r} and mask_threshold={mask_threshold} do not combine with crf: the "
                         "CRF gives every pixel its instance itself (leave them at 'first' and 0.5)")
