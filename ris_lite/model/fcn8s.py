"""FCN-8s on VGG16, the feature extractor of the people experiment (Sec. 4.2).

Explained in the book chapter ``book/11_people``.

The paper puts the ConvLSTM where FCN-8s would upsample its stride-8 scores by 8 back to the
image, and says a 500 x 500 input gives a 64 x 64 x 100 recurrent state. This module gets there
by padding the input to a multiple of 32 (500 -> 512) so that every pooling halves the grid
exactly: pool3 is 512 / 8 = 64 cells wide, and the fused stride-8 output is 64 x 64. (The
original Caffe FCN-8s pads conv1_1 by 100 pixels and crops afterwards, which gives a 70 x 70
grid at that point instead; the paper's 64 only comes out of the padding used here.)

::

    image -> pad to 32k -> VGG16 conv1..conv5 (pool3: /8, pool4: /16, pool5: /32)
          -> fc6 (7x7 conv) -> fc7 (1x1) -> score_fr (d)     at /32
          -> x2 (learned deconv) + score_pool4 (d)            at /16
          -> x2 (learned deconv) + score_pool3 (d)            at /8  = the ConvLSTM's input

The "score" layers give ``d`` features instead of FCN-8s's 21 class scores: they are the
network's *last layer*, the only FCN part trained in the paper's first phase
(:meth:`FCN8s.last_layer_parameters`). ``width`` scales every VGG channel count, so the same
architecture trains on a CPU at ``width=1/8``; ``width=1`` is VGG16 and takes torchvision's
ImageNet weights (:meth:`FCN8s.load_vgg16`). The dropout after fc6 / fc7 is left out.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import nn

#: VGG16's convolution widths, "M" = 2x2 max-pooling (torchvision's ``cfgs["D"]``)
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def bilinear_upsampling_weight(channels: int, factor: int) -> torch.Tensor:
    """``(channels, channels, 2f, 2f)`` transposed-conv weight that upsamples each channel
    bilinearly by ``factor`` (FCN's initialisation of its learned upsampling)."""
    k = 2 * factor
    centre = factor - 0.5
    ramp = 1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / factor
    kernel = torch.outer(ramp, ramp)
    weight = torch.zeros(channels, channels, k, k)
    weight[range(channels), range(channels)] = kernel
    return weight


class FCN8s(nn.Module):
    """Image ``(B, C, H, W)`` in [0, 1] -> features ``(B, out_channels, H'/8, W'/8)`` where
    ``(H', W')`` is ``(H, W)`` rounded up to a multiple of 32 (:meth:`frame_size`).

    Args:
        in_channels: image channels (3 for ImageNet weights).
        out_channels: ``d``, the features per cell handed to the ConvLSTM (100 in the paper).
        width: multiplies every VGG16 width (1 = VGG16, fc6/fc7 4096 wide).
        batch_norm: for training from scratch (the paper's FCN-8s is pretrained): VGG16-BN (a
            BatchNorm after every 3 x 3 convolution, torchvision's ``vgg16_bn`` layout), plus a
            BatchNorm after fc6 and fc7 and one on the output features. Unnormalised, the
            stack let its features grow without bound on the stand-in (feature std 7e7 to 1e10
            within 1,300 steps, masks gone); with BatchNorm in the VGG part only, the std
            still reached ~350 in 300 steps through fc6, fc7 and the score layers.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 100, width: float = 1.0,
                 batch_norm: bool = False):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.in_channels, self.out_channels, self.width = in_channels, out_channels, width
        self.batch_norm = batch_norm
        layers, c = [], in_channels
        widths, pools = [], []
        for v in VGG16_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                widths.append(c)
                pools.append(len(layers))  # features[:k] ends right after this pooling
            else:
                w = max(4, round(v * width))
                layers.append(nn.Conv2d(c, w, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(w))
                layers.append(nn.ReLU(inplace=True))
                c = w
        self.features = nn.Sequential(*layers)
        self.pool3_end, self.pool4_end = pools[2], pools[3]
        c3, c4, c5 = widths[2], widths[3], widths[4]
        fc = max(8, round(4096 * width))
        self.fc6 = nn.Conv2d(c5, fc, 7, padding=3)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        norm = nn.BatchNorm2d if batch_norm else (lambda _: nn.Identity())
        self.fc6_norm, self.fc7_norm, self.out_norm = norm(fc), norm(fc), norm(out_channels)
        self.score_fr = nn.Conv2d(fc, out_channels, 1)
        self.score_pool4 = nn.Conv2d(c4, out_channels, 1)
        self.score_pool3 = nn.Conv2d(c3, out_channels, 1)
        self.upscore2 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # FCN-8s zero-initialises the skip scores so training starts from the coarse path
        for m in (self.score_pool4, self.score_pool3):
            nn.init.zeros_(m.weight)
        with torch.no_grad():
            for m in (self.upscore2, self.upscore_pool4):
                m.weight.copy_(bilinear_upsampling_weight(out_channels, 2))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN[:in_channels] if in_channels == 3
                                                  else [0.5] * in_channels).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD[:in_channels] if in_channels == 3
                                                 else [0.25] * in_channels).view(1, -1, 1, 1), persistent=False)

    @staticmethod
    def frame_size(height: int, width: int) -> Tuple[int, int]:
        """The padded size the features cover: each side rounded up to a multiple of 32."""
        return 32 * math.ceil(height / 32), 32 * math.ceil(width / 32)

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """Feature-map size for an input of ``height x width`` (500 x 500 -> 64 x 64)."""
        fh, fw = self.frame_size(height, width)
        return fh // 8, fw // 8

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"FCN8s expects images (B,{self.in_channels},H,W), got {tuple(images.shape)}")
        H, W = images.shape[2:]
        fh, fw = self.frame_size(H, W)
        # normalise first, so the zero padding (right and bottom) is the mean colour
        x = F.pad((images - self.mean) / self.std, (0, fw - W, 0, fh - H))
        pool3 = self.features[:self.pool3_end](x)
        pool4 = self.features[self.pool3_end:self.pool4_end](pool3)
        pool5 = self.features[self.pool4_end:](pool4)
        fc7 = F.relu(self.fc7_norm(self.fc7(F.relu(self.fc6_norm(self.fc6(pool5))))))
        fused4 = self.upscore2(self.score_fr(fc7)) + self.score_pool4(pool4)
        return self.out_norm(self.upscore_pool4(fused4) + self.score_pool3(pool3))

    def last_layer_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the paper's first phase trains: the score layers and the learned x2
        upsamplings (everything VGG16 does not have)."""
        for m in (self.score_fr, self.score_pool4, self.score_pool3, self.upscore2, self.upscore_pool4,
                  self.out_norm):
            yield from m.parameters()

    def load_vgg16(self, state_dict: Dict[str, torch.Tensor]) -> None:
        """Copy a torchvision ``vgg16`` (or, with ``batch_norm``, ``vgg16_bn``) state dict into
        the VGG part (``width=1`` only).

        ``features.*`` maps one to one; the fully connected fc6 ``(4096, 25088)`` and fc7
        ``(4096, 4096)`` become the 7 x 7 and 1 x 1 convolutions they are when slid over the
        image (FCN's "convolutionalisation"). The classifier's last layer (1000 classes) is
        not used."""
        if self.in_channels != 3 or self.width != 1:
            raise ValueError("ImageNet VGG16 weights need in_channels=3 and width=1")
        own = {k: v for k, v in state_dict.items() if k.startswith("features.")}
        missing = set(self.features.state_dict()) - {k[len("features."):] for k in own}
        if missing or "classifier.0.weight" not in state_dict or "classifier.3.weight" not in state_dict:
            raise ValueError(f"not a torchvision {'vgg16_bn' if self.batch_norm else 'vgg16'} state dict "
                             "(its features.* and classifier.0/3 are needed)")
        self.features.load_state_dict({k[len("features."):]: v for k, v in own.items()})
        with torch.no_grad():
            self.fc6.weight.copy_(state_dict["classifier.0.weight"].view_as(self.fc6.weight))
            self.fc6.bias.copy_(state_dict["classifier.0.bias"])
            self.fc7.weight.copy_(state_dict["classifier.3.weight"].view_as(self.fc7.weight))
            self.fc7.bias.copy_(state_dict["classifier.3.bias"])

    def load_imagenet(self) -> None:
        """ImageNet VGG16 weights through torchvision (downloaded once; e.g. on Colab).
        torchvision is not a dependency of ris_lite: install it beside your torch."""
        try:
            from torchvision import models
        except ImportError:
            raise ImportError("FCN8s.load_imagenet needs torchvision (pip install torchvision, "
                              "matching your torch)") from None
        if self.batch_norm:
            net = models.vgg16_bn(weights=models.VGG16_BN_Weights.IMAGENET1K_V1)
        else:
            net = models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)
        self.load_vgg16(net.state_dict())
