"""The RIS model: FCN -> stacked ConvLSTM -> spatial inhibition + confidence, Fig. 1.

Explained in the book chapters ``book/03_fcn`` to ``book/05_inhibition``; inference
(``predict``) in ``book/08_evaluation``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import nn

from .convlstm import ConvLSTM
from .fcn import FCN
from .inhibition import ConfidenceHead, SpatialInhibition, inhibition_bias_init


@dataclass
class RISConfig:
    """Everything needed to rebuild a model (stored in checkpoints)."""

    in_channels: int = 3
    channels: int = 30  # FCN output d; ConvLSTM hidden channels
    fcn_variant: str = "downsample"
    fcn_stride: int = 2
    lstm_layers: int = 2
    lstm_kernel: int = 3
    gate_bias: Tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)
    input_size: Tuple[int, int] = (106, 100)
    #: expected instance area as a fraction of the image; sets the initial b
    instance_fraction: float = 0.0235
    bias_init: Optional[float] = None  # explicit b; None = derived from instance_fraction
    confidence: str = "maxpool"
    upsample: bool = True  # masks at the input size (else at the feature size)
    extra: dict = field(default_factory=dict)  # free-form notes kept in checkpoints; unused by the model

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gate_bias"] = list(d["gate_bias"])
        d["input_size"] = list(d["input_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RISConfig:
        d = dict(d)
        d["gate_bias"] = tuple(d["gate_bias"])
        d["input_size"] = tuple(d["input_size"])
        return cls(**d)


class RIS(nn.Module):
    """Recurrent Instance Segmentation.

    ``forward(images (B,3,H,W), steps) -> (masks (B,T,h,w) in [0,1], scores (B,T) in [0,1])``
    with ``(h, w) = (H, W)`` when ``config.upsample`` else the feature size.
    """

    def __init__(self, config: Optional[RISConfig] = None, **overrides):
        super().__init__()
        config = config or RISConfig()
        if overrides:
            config = RISConfig(**{**asdict(config), **overrides})
        self.config = c = config
        self.fcn = FCN(c.in_channels, c.channels, stride=c.fcn_stride, variant=c.fcn_variant)
        self.lstm = ConvLSTM(c.channels, c.channels, c.lstm_layers, c.lstm_kernel, c.gate_bias)
        fh, fw = self.fcn.output_size(*c.input_size)
        b = c.bias_init if c.bias_init is not None else inhibition_bias_init(c.instance_fraction * fh * fw)
        self.inhibition = SpatialInhibition(c.channels, b)
        bias = 10.0 if c.confidence == "flatten" else 0.0
        self.confidence = ConfidenceHead(c.channels, c.confidence, (fh, fw), bias_init=bias)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check(self, images: torch.Tensor) -> None:
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != self.config.in_channels:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"RIS expects images (B,{self.config.in_channels},H,W), got {shape}")
        if not images.is_floating_point():
            raise TypeError(f"RIS expects float images in [0, 1], got dtype {images.dtype}")

    def forward(self, images: torch.Tensor, steps: int, return_stages: bool = False,
                score_logits: bool = False):
        """Unroll ``steps`` iterations. ``return_stages=True`` adds a dict of per-step
        intermediates for figures: ``features``, ``h`` (top layer, (B,T,d,h',w')),
        ``conv`` and ``log_softmax_b`` ((B,T,h',w')). ``score_logits`` returns scores before
        the sigmoid (for a numerically stable loss)."""
        self._check(images)
        features = self.fcn(images)
        out_size = images.shape[2:] if self.config.upsample else None
        hs = self.lstm(features, steps)
        masks, scores, stages = [], [], {"conv": [], "log_softmax_b": []}
        for h in hs:
            if return_stages:
                m, st = self.inhibition(h, out_size, return_stages=True)
                stages["conv"].append(st["conv"])
                stages["log_softmax_b"].append(st["log_softmax_b"])
            else:
                m = self.inhibition(h, out_size)
            masks.append(m)
            scores.append(self.confidence(h, logits=score_logits))
        masks, scores = torch.stack(masks, 1), torch.stack(scores, 1)
        if not return_stages:
            return masks, scores
        stages = {k: torch.stack(v, 1) for k, v in stages.items()}
        stages.update(features=features, h=torch.stack(hs, 1))
        return masks, scores, stages

    @torch.no_grad()
    def predict(self, images, max_steps: int = 30, mask_threshold: float = 0.5,
                score_threshold: float = 0.5) -> List[torch.Tensor]:
        """Label maps for a batch: stop at the first score below ``score_threshold``.

        Accepts ``(3,H,W)`` or ``(B,3,H,W)`` tensors or numpy arrays. A pixel claimed by two
        steps stays with the earlier one. Returns a list of ``(H, W)`` int64 label maps on the
        CPU with background 0 and ids 1..k consecutive in the order found.
        """
        images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images.unsqueeze(0)
        images = images.to(self.device, torch.float32)
        was_training = self.training
        self.eval()
        masks, scores = self(images, max_steps)
        self.train(was_training)
        if masks.shape[-2:] != images.shape[-2:]:
            masks = torch.nn.functional.interpolate(masks, size=images.shape[-2:], mode="bilinear",
                                                    align_corners=False)
        out = []
        for m, s in zip(masks.cpu(), scores.cpu()):
            below = (s < score_threshold).nonzero()
            n = int(below[0]) if len(below) else max_steps
            labels = torch.zeros(m.shape[1:], dtype=torch.int64)
            next_id = 1
            for t in range(n):
                new = (m[t] > mask_threshold) & (labels == 0)
                if new.any():
                    labels[new] = next_id
                    next_id += 1
            out.append(labels)
        return out
