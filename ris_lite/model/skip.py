"""Ours, not the paper's: a boundary skip from the image into the recurrent core.

Explained in the book chapter ``book/12_beyond`` (section "Boundaries the encoder lost").

A diagnosis of the shipped model (``ris_lite.evaluation.diagnose``) measured that its FCN
features tell "same leaf?" for two nearby cells worse than the raw pixels do (probe AUC 0.78
against 0.93): the boundary between touching leaves is lost before the ConvLSTM sees it.
``BoundarySkip`` gives the image's local detail a path around the FCN, after RSIS (skip
connections from the encoder into every ConvLSTM level) and Ren & Zemel (a decoder with skips):

- ``detail``: two 3 x 3 convolutions of the centred image, the first at the FCN's stride, so
  the result lies on the feature grid ``(B, k, h', w')``;
- ``to_input``: a 1 x 1 convolution added to the FCN features the ConvLSTM reads;
- ``to_mask``: a 3 x 3 convolution of the top ConvLSTM state and the detail, added to the
  mask logits before the spatial softmax (eq. (4.2) / (5.1) get one more term).

Both output layers start at zero, so a model with a skip starts as exactly the model without
it (tested), and a shipped model can be fine-tuned with a skip added.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

#: where a skip may enter: the ConvLSTM's input, the mask head, or both
SKIP_KINDS = ("none", "input", "mask", "both")


class BoundarySkip(nn.Module):
    """``images (B, C, H, W)`` -> ``detail (B, width, h', w')`` on the feature grid, and the
    two zero-initialised read-outs ``input_term(detail) -> (B, channels, h', w')`` and
    ``mask_term(h, detail) -> (B, h', w')``."""

    def __init__(self, in_channels: int, channels: int, stride: int, kind: str = "both", width: int = 16):
        super().__init__()
        if kind not in SKIP_KINDS or kind == "none":
            raise ValueError(f"skip must be one of {', '.join(SKIP_KINDS[1:])}, got {kind!r}")
        self.kind, self.stride = kind, stride
        self.detail = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=stride, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))
        for m in self.detail:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.to_input = nn.Conv2d(width, channels, 1) if kind in ("input", "both") else None
        self.to_mask = nn.Conv2d(channels + width, 1, 3, padding=1) if kind in ("mask", "both") else None
        for head in (self.to_input, self.to_mask):
            if head is not None:  # zero: the skip starts switched off
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def features(self, images: torch.Tensor, grid) -> torch.Tensor:
        """Detail of ``images (B, C, H, W)`` cut to the feature grid ``grid = (h', w')``."""
        d = self.detail((images - 0.5) / 0.25)
        if tuple(d.shape[-2:]) != tuple(grid):
            if d.shape[-2] < grid[0] or d.shape[-1] < grid[1]:
                raise ValueError(f"skip detail {tuple(d.shape[-2:])} is smaller than the feature grid {tuple(grid)}")
            d = d[..., : grid[0], : grid[1]]
        return d

    def input_term(self, detail: torch.Tensor) -> Optional[torch.Tensor]:
        """What the skip adds to the ConvLSTM's input features, or None."""
        return None if self.to_input is None else self.to_input(detail)

    def mask_term(self, h: torch.Tensor, detail: torch.Tensor) -> Optional[torch.Tensor]:
        """What the skip adds to the mask logits ``(B, h', w')``, or None."""
        return None if self.to_mask is None else self.to_mask(torch.cat([h, detail.to(h.dtype)], 1)).squeeze(1)
