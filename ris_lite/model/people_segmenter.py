"""The learned baseline of the people experiment: FCN-8s as a person / background segmenter.

Explained in the book chapter ``book/11_people``.

The paper's Table 1 baseline runs Faster R-CNN proposals on the semantic segmentation of FCN-8s
(Sec. 4.2). Its counterpart here keeps the first half and replaces the detector, which needs
ImageNet weights and box data we do not have, by a split of the foreground into instances
(``ris_lite.evaluation.people_baseline``). The network is RIS's own feature extractor in the
people configuration (same FCN-8s, width, BatchNorm and ``d`` features), followed by what FCN-8s
does where RIS puts its ConvLSTM::

    image (B, 3, H, W) -> FCN8s -> (B, d, H'/8, W'/8) -> 1 x 1 conv -> one person logit per cell
          -> x 8 bilinear upsampling, cropped to (H, W) -> logits (B, H, W)

FCN-8s fixes its last x 8 upsampling to bilinear interpolation (Long et al. 2015), as here.
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from .fcn8s import FCN8s
from .ris import RISConfig


class PersonSegmenter(nn.Module):
    """``forward(images (B, 3, H, W) in [0, 1]) -> logits (B, H, W)`` of "this pixel shows a
    person", with the FCN-8s of the RIS ``config`` (``people_model_config``): its width,
    BatchNorm, input channels and ``config.channels`` features."""

    def __init__(self, config: RISConfig):
        super().__init__()
        if config.fcn_variant != "fcn8s":
            raise ValueError(f"the person segmenter is FCN-8s: config.fcn_variant must be 'fcn8s', "
                             f"got {config.fcn_variant!r}")
        self.config = config
        self.fcn = FCN8s(config.in_channels, config.channels, width=config.fcn_width,
                         batch_norm=config.fcn_batch_norm)
        self.classifier = nn.Conv2d(config.channels, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        H, W = images.shape[-2:]
        cells = self.classifier(self.fcn(images))  # (B, 1, frame / 8)
        logits = F.interpolate(cells, size=self.fcn.frame_size(H, W), mode="bilinear", align_corners=False)
        return logits[:, 0, :H, :W]  # the frame is padded right and bottom: crop back to the image

    @torch.no_grad()
    def foreground_probability(self, images: torch.Tensor, batch_size: int = 16) -> List[torch.Tensor]:
        """Per image of ``images (B, 3, H, W)`` its ``(H, W)`` float32 probability of person, on
        the CPU, in eval mode (BatchNorm's running statistics), ``batch_size`` at a time."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        for s in range(0, len(images), batch_size):
            out += list(torch.sigmoid(self(images[s:s + batch_size].to(device))).float().cpu())
        self.train(was_training)
        return out
