"""Attention by spatial inhibition and the confidence (stop) score, Sec. 3.2 and Fig. 2.

Explained in the book chapter ``book/04_inhibition``.

::

    mask:  h_t -> 1x1 conv -> log-softmax over ALL pixels -> + b -> sigmoid (-> upsample)
    score: h_t -> global max-pool -> linear -> sigmoid   (the paper)
           h_t -> flatten -> linear (bias 10) -> sigmoid (the authors' plant code, optional)

The softmax makes the pixels compete for one unit of probability mass, so only one
compact region can be large at a time; b is the threshold that decides how large.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def inhibition_bias_init(instance_pixels: float) -> float:
    """Initial b for an instance expected to cover ``instance_pixels`` cells of the grid.

    If the softmax spreads its mass evenly over the A cells of one instance, each gets
    log-probability ``-ln A``; ``b = ln A`` puts exactly those cells at sigmoid(0) = 0.5,
    the decision threshold. With b ~ 1 instead, every cell starts near
    sigmoid(1 - ln(H*W)) ~ 0 and the soft IoU has almost no gradient.
    """
    if instance_pixels <= 0:
        raise ValueError(f"instance_pixels must be positive, got {instance_pixels}")
    return math.log(instance_pixels)


class SpatialInhibition(nn.Module):
    """``h (B, d, h', w') -> mask (B, h', w')`` in [0, 1] (or ``(B, H, W)`` if ``out_size``)."""

    def __init__(self, hidden_channels: int, bias_init: float = 1.0, weight_std: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(hidden_channels, 1, 1)
        # h is tanh-bounded and starts with a small spatial spread (~0.03); unit-scale weights
        # let Conv(h) separate pixels within tens of steps instead of thousands.
        nn.init.normal_(self.conv.weight, 0.0, weight_std)
        nn.init.zeros_(self.conv.bias)
        self.b = nn.Parameter(torch.tensor(float(bias_init)))

    def forward(self, h: torch.Tensor, out_size: Optional[Tuple[int, int]] = None,
                return_stages: bool = False, extra_logits: Optional[torch.Tensor] = None):
        """``extra_logits (B, h', w')``: added to Conv(h) before the softmax (the boundary skip
        of ``ris_lite.model.skip``, ours); None is the paper's head."""
        B, _, H, W = h.shape
        logits = self.conv(h)
        if extra_logits is not None:
            logits = logits + extra_logits.unsqueeze(1)
        logits = logits.view(B, H * W)
        log_p = F.log_softmax(logits, dim=1).view(B, H, W)
        thresholded = log_p + self.b
        mask = torch.sigmoid(thresholded)
        if out_size is not None and tuple(out_size) != (H, W):
            mask = F.interpolate(mask.unsqueeze(1), size=tuple(out_size), mode="bilinear",
                                 align_corners=False).squeeze(1)
        if return_stages:
            return mask, {"conv": logits.view(B, H, W), "log_softmax_b": thresholded}
        return mask


class ConfidenceHead(nn.Module):
    """``h (B, d, h', w') -> score (B,)`` in [0, 1]; ``logits=True`` returns the pre-sigmoid value.

    ``kind="maxpool"`` (paper): max over pixels then linear. ``kind="flatten"`` (authors'
    plant code): linear over the whole hidden state, which needs ``feature_size`` and a fixed
    input size; its bias starts at 10, so every step begins by saying "go on".
    """

    def __init__(self, hidden_channels: int, kind: str = "maxpool",
                 feature_size: Optional[Tuple[int, int]] = None, bias_init: float = 0.0):
        super().__init__()
        if kind == "maxpool":
            self.linear = nn.Linear(hidden_channels, 1)
        elif kind == "flatten":
            if feature_size is None:
                raise ValueError("ConfidenceHead(kind='flatten') needs feature_size=(h', w')")
            self.linear = nn.Linear(hidden_channels * feature_size[0] * feature_size[1], 1)
        else:
            raise ValueError(f"kind must be 'maxpool' or 'flatten', got {kind!r}")
        self.kind = kind
        nn.init.constant_(self.linear.bias, bias_init)

    def forward(self, h: torch.Tensor, logits: bool = False) -> torch.Tensor:
        pooled = h.amax(dim=(2, 3)) if self.kind == "maxpool" else h.flatten(1)
        z = self.linear(pooled).squeeze(1)
        return z if logits else torch.sigmoid(z)
