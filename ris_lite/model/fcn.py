"""The fully convolutional feature extractor of the plant experiment (Sec. 4.3).

Explained in the book chapter ``book/02_fcn``.

Two variants, one switch:

* ``"downsample"`` — what the authors' released plant code runs: a *fixed* (untrained)
  bilinear anti-aliasing filter with stride ``s`` (9 x 9, stride 5, pad 2 turns A1's
  530 x 500 into 106 x 100), then four 3 x 3 convolutions with ReLU.
* ``"learned"`` — what the paper's text describes: a learned 9 x 9 first layer (stride
  ``s``) with ReLU, then four 3 x 3 convolutions with ReLU.

``dilations`` (ours; default all 1 as in the paper) spaces the 3 x 3 taps apart so each
feature sees far more of the plant for the same cost: (1, 2, 4, 8) at stride 2 widens the
receptive field from 19 to 63 input pixels.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def bilinear_kernel(stride: int) -> torch.Tensor:
    """``(2s-1, 2s-1)`` triangle (bilinear) filter that sums to 1: anti-aliasing for stride s."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    ramp = stride - torch.arange(-(stride - 1), stride, dtype=torch.float32).abs()
    kernel = torch.outer(ramp, ramp)
    return kernel / kernel.sum()


class FCN(nn.Module):
    """Image ``(B, C, H, W)`` -> features ``(B, channels, H', W')``.

    ``H' = floor((H + 2p - k) / s) + 1`` with ``k = 2s - 1`` (downsample) or 9 (learned)
    and ``p = s // 2`` (downsample) or 4 (learned); the 3 x 3 layers keep the size.
    """

    def __init__(self, in_channels: int = 3, channels: int = 30, stride: int = 5,
                 variant: str = "downsample", n_convs: int = 4, dilations: Optional[Sequence[int]] = None):
        super().__init__()
        if variant not in ("downsample", "learned"):
            raise ValueError(f"variant must be 'downsample' or 'learned', got {variant!r}")
        self.variant, self.stride, self.in_channels = variant, stride, in_channels
        layers = []
        if variant == "downsample":
            kernel = bilinear_kernel(stride).expand(in_channels, 1, -1, -1).clone()
            self.register_buffer("aa_kernel", kernel, persistent=False)
            first = in_channels
        else:
            layers += [nn.Conv2d(in_channels, channels, 9, stride=stride, padding=4), nn.ReLU(inplace=True)]
            first = channels
        dilations = tuple(dilations) if dilations is not None else (1,) * n_convs
        if len(dilations) != n_convs or min(dilations) < 1:
            raise ValueError(f"need {n_convs} dilations >= 1, got {dilations}")
        self.dilations = dilations
        for i, d in enumerate(dilations):
            layers += [nn.Conv2d(first if i == 0 else channels, channels, 3, padding=d, dilation=d),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.out_channels = channels
        for m in self.body:
            if isinstance(m, nn.Conv2d):  # He init keeps unit-scale features through the ReLUs,
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # which the LSTM needs
                nn.init.zeros_(m.bias)

    def downsample(self, images: torch.Tensor) -> torch.Tensor:
        """The fixed anti-aliased subsampling (identity for the learned variant)."""
        if self.variant != "downsample" or self.stride == 1:
            return images
        return F.conv2d(images, self.aa_kernel, stride=self.stride, padding=self.stride // 2,
                        groups=self.in_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"FCN expects images (B,{self.in_channels},H,W), got {tuple(images.shape)}")
        # Centre the [0, 1] pixels so the first layer sees signed, unit-scale input.
        return self.body((self.downsample(images) - 0.5) / 0.25)

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """Feature-map size for an input of ``height x width``."""
        if self.variant == "downsample":
            k, p = 2 * self.stride - 1, self.stride // 2
        else:
            k, p = 9, 4
        return ((height + 2 * p - k) // self.stride + 1, (width + 2 * p - k) // self.stride + 1)

    @staticmethod
    def frame_size(height: int, width: int) -> Tuple[int, int]:
        """The area the features cover, in input pixels: the whole image (no padding)."""
        return height, width

    def last_layer_parameters(self):
        """The last convolution's parameters (what a frozen-FCN phase still trains)."""
        return self.body[-2].parameters()

    def receptive_field(self) -> int:
        """Side, in input pixels, of the square that one output feature sees."""
        first = 2 * self.stride - 1 if self.variant == "downsample" else 9
        return first + 2 * sum(self.dilations) * self.stride


def largest_stride(height: int, width: int) -> int:
    """The coarsest stride of the downsampling FCN that leaves a feature grid (and so a mask
    grid) of at least one cell on a ``height x width`` input (:meth:`FCN.output_size`'s rule)."""
    def cells(side: int, s: int) -> int:
        return (side + 2 * (s // 2) - (2 * s - 1)) // s + 1

    s = 1
    while cells(height, s + 1) >= 1 and cells(width, s + 1) >= 1:
        s += 1
    return s
