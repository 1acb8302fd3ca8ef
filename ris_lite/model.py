"""The RIS model: FCN -> stacked ConvLSTM -> spatial inhibition + confidence, Fig. 1.

Explained in the book chapters ``book/03_fcn`` to ``book/05_inhibition``; inference
(``predict``) in ``book/08_evaluation``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import nn

from .convlstm import ConvLSTM, ConvLSTMCell
from .fcn import FCN
from .inhibition import ConfidenceHead, SpatialInhibition, inhibition_bias_init


@dataclass
class RISConfig:
    """Everything needed to rebuild a model (stored in checkpoints)."""

    in_channels: int = 3
    channels: int = 30  # FCN output d; ConvLSTM hidden channels
    fcn_variant: str = "downsample"
    fcn_stride: int = 2
    #: dilation of the FCN's four 3x3 convolutions; (1, 1, 1, 1) is the paper's FCN
    fcn_dilations: Tuple[int, ...] = (1, 1, 1, 1)
    lstm_layers: int = 2
    lstm_kernel: int = 3
    gate_bias: Tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)
    input_size: Tuple[int, int] = (106, 100)
    #: expected instance area as a fraction of the image; sets the initial b
    instance_fraction: float = 0.0235
    bias_init: Optional[float] = None  # explicit b; None = derived from instance_fraction
    confidence: str = "maxpool"
    upsample: bool = True  # masks at the input size (else at the feature size)
    #: ours, not the paper's: feed the previous mask and the union of all earlier masks back
    #: into the first ConvLSTM layer, so "which leaves are done" need not be memorised in h
    feedback: bool = False
    #: ours, not the paper's: two extra input channels holding each pixel's (y, x) position in
    #: [0, 1] (CoordConv), a cue for telling look-alike leaves apart and for a spatial order
    coords: bool = False
    extra: dict = field(default_factory=dict)  # free-form notes kept in checkpoints; unused by the model

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gate_bias"] = list(d["gate_bias"])
        d["input_size"] = list(d["input_size"])
        d["fcn_dilations"] = list(d["fcn_dilations"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RISConfig:
        d = dict(d)
        d["gate_bias"] = tuple(d["gate_bias"])
        d["input_size"] = tuple(d["input_size"])
        d["fcn_dilations"] = tuple(d.get("fcn_dilations", (1, 1, 1, 1)))
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
        fcn_inputs = c.in_channels + (2 if c.coords else 0)
        self.fcn = FCN(fcn_inputs, c.channels, stride=c.fcn_stride, variant=c.fcn_variant,
                       dilations=c.fcn_dilations)
        self.lstm = ConvLSTM(c.channels, c.channels, c.lstm_layers, c.lstm_kernel, c.gate_bias)
        self.feedback = None
        if c.feedback:  # (previous mask, union so far) -> extra gate pre-activations of layer 0
            self.feedback = nn.Conv2d(2, 4 * c.channels, c.lstm_kernel, padding=c.lstm_kernel // 2, bias=False)
            nn.init.uniform_(self.feedback.weight, -0.08, 0.08)
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
        ``conv`` and ``log_softmax_b`` ((B,T,h',w')), and every layer's state ``h_layers`` /
        ``c_layers`` ((B,T,layers,d,h',w')). ``score_logits`` returns scores before
        the sigmoid (for a numerically stable loss)."""
        self._check(images)
        features = self.fcn(with_coordinates(images) if self.config.coords else images)
        out_size = images.shape[2:] if self.config.upsample else None
        cell0 = self.lstm.cells[0]  # fused cells: the fixed input's gate half is done once
        first_proj = cell0.project_input(features) if isinstance(cell0, ConvLSTMCell) else None
        if first_proj is None and self.feedback is not None:
            raise TypeError("mask feedback needs fused ConvLSTMCell layers")
        states = self.lstm.init_states(features)
        fed_back = (features.new_zeros(features.shape[0], 2, *features.shape[2:])
                    if self.feedback is not None else None)
        masks, scores, hs, history = [], [], [], []
        stages = {"conv": [], "log_softmax_b": []}
        for _ in range(steps):
            proj = first_proj if fed_back is None else first_proj + self.feedback(fed_back)
            states = self.lstm.step(features, states, proj)
            h = states[-1][0]
            m, st = self.inhibition(h, out_size, return_stages=True)
            if fed_back is not None:  # fed back at the feature size, before any upsampling
                small = torch.sigmoid(st["log_softmax_b"])
                fed_back = torch.stack([small, torch.maximum(fed_back[:, 1], small)], 1)
            masks.append(m)
            scores.append(self.confidence(h, logits=score_logits))
            if return_stages:
                hs.append(h)
                history.append(states)
                stages["conv"].append(st["conv"])
                stages["log_softmax_b"].append(st["log_softmax_b"])
        masks, scores = torch.stack(masks, 1), torch.stack(scores, 1)
        if not return_stages:
            return masks, scores
        stages = {k: torch.stack(v, 1) for k, v in stages.items()}
        stages.update(features=features, h=torch.stack(hs, 1),
                      h_layers=torch.stack([torch.stack([h for h, _ in st], 1) for st in history], 1),
                      c_layers=torch.stack([torch.stack([c for _, c in st], 1) for st in history], 1))
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


def with_coordinates(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C + 2, H, W)``: appends each pixel's row and column in [0, 1]."""
    B, _, H, W = images.shape
    ys = torch.linspace(0, 1, H, device=images.device, dtype=images.dtype)
    xs = torch.linspace(0, 1, W, device=images.device, dtype=images.dtype)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(B, -1, -1, -1)
    return torch.cat([images, grid], 1)
