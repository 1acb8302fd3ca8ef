"""The RIS model: FCN -> stacked ConvLSTM -> spatial inhibition + confidence, Fig. 1.

Explained in the book chapters ``book/02_fcn`` to ``book/04_inhibition``; the whole forward
pass and ``predict`` rebuilt by hand in ``book/07_inference``, scored in ``book/08_evaluation``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast, resolve_precision
from .assembly import assemble, drop_small, first_claim_labels  # noqa: F401  (first_claim_labels: its public home)
from .convlstm import ConvLSTM, ConvLSTMCell
from .counting import UnionInput, UnionScore
from .fcn import FCN
from .fcn8s import FCN8s
from .inhibition import ConfidenceHead, SpatialInhibition, inhibition_bias_init
from .inputs import as_image_batch, check_max_steps, check_predict_options
from .skip import SKIP_KINDS, BoundarySkip


@dataclass
class RISConfig:
    """Everything needed to rebuild a model (stored in checkpoints)."""

    in_channels: int = 3
    channels: int = 30  # FCN output d; ConvLSTM hidden channels
    #: "downsample" / "learned" (the plant FCN, ``ris_lite.model.fcn``) or "fcn8s" (FCN-8s on VGG16,
    #: the people experiment, ``ris_lite.model.fcn8s``)
    fcn_variant: str = "downsample"
    #: fcn8s only: multiplies VGG16's channel widths (1 = VGG16; 1/8 trains on a CPU)
    fcn_width: float = 1.0
    #: fcn8s only: VGG16-BN, for training the FCN from scratch (the paper's is pretrained)
    fcn_batch_norm: bool = False
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
    #: ours, not the paper's (after Ren & Zemel, CVPR 2017): a canvas -- the union of the masks
    #: already emitted -- is a fourth input channel. Alone, each step starts from a fresh
    #: ConvLSTM state (the canvas, not the memory, says which leaves are done) and trains one
    #: step at a time from a ground-truth canvas (``ris_lite.training.canvas``); chapter ``book/12_beyond``.
    canvas: bool = False
    #: canvas models: ConvLSTM iterations per emitted mask; more iterations let the state spread
    #: over a whole leaf before the mask is read out
    canvas_iterations: int = 1
    #: canvas models: keep the ConvLSTM state from step to step (RIS's memory plus the canvas)
    #: instead of starting each step afresh; trained by unrolling whole sequences, the canvas
    #: teacher-forced step by step (``ris_lite.training.canvas.sequence_canvas_loss``)
    canvas_memory: bool = False
    #: ours, not the paper's: a zero-initialised skip of the image's local detail around the
    #: FCN into the ConvLSTM's input ("input"), the mask head ("mask") or both ("both");
    #: ``ris_lite.model.skip``, chapter ``book/12_beyond``. "none" is the paper's model.
    skip: str = "none"
    #: ours, not the paper's (``ris_lite.model.counting``): the detached union of the masks
    #: already emitted enters the first ConvLSTM layer (zero-initialised)
    union_input: bool = False
    #: ours, not the paper's: the stop score also sees where the current mask lies against that
    #: union (``counting.score_statistics``; zero-initialised)
    score_sees_union: bool = False
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
        if c.canvas and (c.feedback or c.coords):
            raise ValueError("canvas=True does not combine with feedback or coords")
        fcn_inputs = c.in_channels + (2 if c.coords else 0) + (1 if c.canvas else 0)
        if c.canvas_memory and not c.canvas:
            raise ValueError("canvas_memory=True needs canvas=True")
        if c.canvas_iterations < 1 or (c.canvas_iterations > 1 and not c.canvas):
            raise ValueError(f"canvas_iterations must be >= 1 and needs canvas=True, got {c.canvas_iterations}")
        if c.skip not in SKIP_KINDS:
            raise ValueError(f"skip must be one of {', '.join(SKIP_KINDS)}, got {c.skip!r}")
        if c.skip != "none" and (c.canvas or c.fcn_variant == "fcn8s"):
            raise ValueError("skip needs the plant FCN and no canvas")
        if c.canvas and (c.union_input or c.score_sees_union):
            raise ValueError("union_input and score_sees_union are for RIS without a canvas")
        if c.fcn_variant == "fcn8s":
            self.fcn = FCN8s(fcn_inputs, c.channels, width=c.fcn_width, batch_norm=c.fcn_batch_norm)
        else:
            self.fcn = FCN(fcn_inputs, c.channels, stride=c.fcn_stride, variant=c.fcn_variant,
                           n_convs=len(c.fcn_dilations), dilations=c.fcn_dilations)
        self.lstm = ConvLSTM(c.channels, c.channels, c.lstm_layers, c.lstm_kernel, c.gate_bias)
        self.feedback = None
        if c.feedback:  # (previous mask, union so far) -> extra gate pre-activations of layer 0
            self.feedback = nn.Conv2d(2, 4 * c.channels, c.lstm_kernel, padding=c.lstm_kernel // 2, bias=False)
            nn.init.uniform_(self.feedback.weight, -0.08, 0.08)
        self.union_input = UnionInput(c.channels, c.lstm_kernel) if c.union_input else None
        self.union_score = UnionScore(c.channels) if c.score_sees_union else None
        self.skip = (BoundarySkip(c.in_channels, c.channels, c.fcn_stride, c.skip)
                     if c.skip != "none" else None)
        fh, fw = self.fcn.output_size(*c.input_size)
        b = c.bias_init if c.bias_init is not None else inhibition_bias_init(c.instance_fraction * fh * fw)
        self.inhibition = SpatialInhibition(c.channels, b)
        bias = 10.0 if c.confidence == "flatten" else 0.0
        self.confidence = ConfidenceHead(c.channels, c.confidence, (fh, fw), bias_init=bias)
        #: dense-CRF parameters used by ``predict(crf=True)``; shipped models carry the values
        #: tuned on their validation split (``ris_lite.model.crf``, book chapter ``09_crf``)
        self.crf_config = None
        #: ``{"assembly": ..., "min_size": ...}``: the label assembly ``predict`` uses by default,
        #: set by ``load_pretrained`` for a shipped model that stores one (None: the paper's rule)
        self.assembly_rule = None
        #: set by ``trainable_parameters(freeze_fcn=True)``: the FCN below its last layer is fixed
        self.frozen_fcn = False

    def trainable_parameters(self, freeze_fcn: bool = False) -> List[nn.Parameter]:
        """All parameters, or with ``freeze_fcn`` all but the FCN's below its last layer (the
        first training phase of the people experiment); the frozen ones stop needing grads."""
        self.frozen_fcn = freeze_fcn
        if not freeze_fcn:
            return list(self.parameters())
        self.train(self.training)  # puts the frozen FCN's BatchNorm layers in eval mode
        keep = {id(p) for p in self.fcn.last_layer_parameters()}
        for p in self.fcn.parameters():
            p.requires_grad_(id(p) in keep)
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> RIS:
        """``nn.Module.train``, except that a frozen FCN's BatchNorm layers stay in eval mode
        (frozen means their running statistics too)."""
        super().train(mode)
        if self.frozen_fcn:
            trained = {id(p) for p in self.fcn.last_layer_parameters()}
            for m in self.fcn.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m.weight) not in trained:
                    m.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check(self, images: torch.Tensor, steps: int) -> None:
        check_max_steps(steps, "steps")
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
        ``c_layers`` ((B,T,layers,d,h',w')); with ``union_input`` or ``score_sees_union`` also
        the ``union`` of earlier masks that each step read ((B,T,h',w')). ``score_logits`` returns scores before
        the sigmoid (for a numerically stable loss)."""
        self._check(images, steps)
        if self.config.canvas:
            return self._forward_canvas(images, steps, return_stages, score_logits)
        features = self.fcn(with_coordinates(images) if self.config.coords else images)
        detail = None
        if self.skip is not None:
            detail = self.skip.features(images, features.shape[-2:])
            extra = self.skip.input_term(detail)
            if extra is not None:
                features = features + extra
        H, W = images.shape[2:]
        # masks are upsampled to the frame the features cover (FCN-8s pads to a multiple of
        # 32), then cropped back to the image
        out_size = self.fcn.frame_size(H, W) if self.config.upsample else None
        cell0 = self.lstm.cells[0]  # fused cells: the fixed input's gate half is done once
        first_proj = cell0.project_input(features) if isinstance(cell0, ConvLSTMCell) else None
        if first_proj is None and (self.feedback is not None or self.union_input is not None):
            raise TypeError("mask feedback and union_input need fused ConvLSTMCell layers")
        states = self.lstm.init_states(features)
        fed_back = (features.new_zeros(features.shape[0], 2, *features.shape[2:])
                    if self.feedback is not None else None)
        # what earlier steps emitted, at the feature grid, detached (``counting``, ours)
        tracks_union = self.union_input is not None or self.union_score is not None
        union = features.new_zeros(features.shape[0], *features.shape[2:]).float() if tracks_union else None
        masks, scores, hs, history = [], [], [], []
        stages = {"conv": [], "log_softmax_b": []}
        seen = []  # the union each step read (``return_stages``)
        for _ in range(steps):
            proj = first_proj if fed_back is None else first_proj + self.feedback(fed_back)
            if self.union_input is not None:
                proj = proj + self.union_input(union)
            states = self.lstm.step(features, states, proj)
            h = states[-1][0]
            extra = None if detail is None else self.skip.mask_term(h, detail)
            m, st = self.inhibition(h, out_size, return_stages=True, extra_logits=extra)
            if out_size is not None:
                m = m[:, :H, :W]
            if fed_back is not None:  # fed back at the feature size, before any upsampling
                small = torch.sigmoid(st["log_softmax_b"])
                fed_back = torch.stack([small, torch.maximum(fed_back[:, 1], small)], 1)
            masks.append(m)
            if union is None:
                scores.append(self.confidence(h, logits=score_logits))
            else:
                small = torch.sigmoid(st["log_softmax_b"]).detach().float()
                z = self.confidence(h, logits=True)
                if self.union_score is not None:
                    z = z + self.union_score(h, small, union)
                scores.append(z if score_logits else torch.sigmoid(z))
                seen.append(union)
                union = torch.maximum(union, small)
            if return_stages:
                hs.append(h)
                history.append(states)
                stages["conv"].append(st["conv"])
                stages["log_softmax_b"].append(st["log_softmax_b"])
        masks, scores = torch.stack(masks, 1), torch.stack(scores, 1)
        if not return_stages:
            return masks, scores
        stages = {k: torch.stack(v, 1) for k, v in stages.items()}
        if seen:
            stages["union"] = torch.stack(seen, 1)
        stages.update(features=features, h=torch.stack(hs, 1),
                      h_layers=torch.stack([torch.stack([h for h, _ in st], 1) for st in history], 1),
                      c_layers=torch.stack([torch.stack([c for _, c in st], 1) for st in history], 1))
        return masks, scores, stages

    def canvas_step(self, images: torch.Tensor, canvas: torch.Tensor, score_logits: bool = False,
                    return_stages: bool = False, states=None):
        """One step of a canvas model: ``images (B,3,H,W)``, ``canvas (B,1,H,W)`` in [0, 1] (what
        is already segmented) -> ``(mask (B,h,w), score (B,))``. The ConvLSTM starts from
        ``states`` (every layer's ``(h, c)``, as in ``stages["states"]`` of the previous step)
        or, when None, from zero; ``return_stages`` adds a dict with the new ``states``."""
        if not self.config.canvas:
            raise ValueError("canvas_step needs a model built with canvas=True")
        if canvas.ndim != 4 or canvas.shape[1] != 1 or canvas.shape[2:] != images.shape[2:]:
            raise ValueError(f"canvas must be (B,1,H,W)=({images.shape[0]},1,{images.shape[2]},"
                             f"{images.shape[3]}), got {tuple(canvas.shape)}")
        features = self.fcn(torch.cat([images, canvas.to(images.dtype)], 1))
        states = self.lstm.step_from_zero(features) if states is None else self.lstm.step(features, states)
        if self.config.canvas_iterations > 1:
            first_proj = self.lstm.cells[0].project_input(features)
            for _ in range(self.config.canvas_iterations - 1):
                states = self.lstm.step(features, states, first_proj)
        h = states[-1][0]
        H, W = images.shape[2:]
        out_size = self.fcn.frame_size(H, W) if self.config.upsample else None
        mask, st = self.inhibition(h, out_size, return_stages=True)
        if out_size is not None:
            mask = mask[:, :H, :W]
        score = self.confidence(h, logits=score_logits)
        if return_stages:
            st.update(features=features, h=h, states=states)
            return mask, score, st
        return mask, score

    def _forward_canvas(self, images, steps, return_stages, score_logits):
        """Unroll a canvas model on its own masks: after each step the pixels its mask claims
        (> 0.5, the default rule of ``predict``, whatever threshold ``predict`` is given) join
        the canvas. No gradient flows through the canvas."""
        B, _, H, W = images.shape
        canvas = images.new_zeros(B, 1, H, W)
        masks, scores, per_step = [], [], []
        states = None
        for _ in range(steps):
            m, s, st = self.canvas_step(images, canvas, score_logits, return_stages=True, states=states)
            if self.config.canvas_memory:
                states = st["states"]
            full = m if m.shape[-2:] == (H, W) else F.interpolate(
                m.unsqueeze(1), size=(H, W), mode="bilinear", align_corners=False).squeeze(1)
            canvas = torch.maximum(canvas, (full.detach() > 0.5).to(canvas.dtype).unsqueeze(1))
            masks.append(m)
            scores.append(s)
            if return_stages:
                per_step.append(st)
        masks, scores = torch.stack(masks, 1), torch.stack(scores, 1)
        if not return_stages:
            return masks, scores
        def stack(key):
            return torch.stack([st[key] for st in per_step], 1)

        stages = {"conv": stack("conv"), "log_softmax_b": stack("log_softmax_b"),
                  "features": per_step[0]["features"], "h": stack("h"),  # features of step 1
                  "h_layers": torch.stack([torch.stack([h for h, _ in st["states"]], 1) for st in per_step], 1),
                  "c_layers": torch.stack([torch.stack([c for _, c in st["states"]], 1) for st in per_step], 1)}
        return masks, scores, stages

    def _as_batch(self, images) -> torch.Tensor:
        """Images as ``(B,C,H,W)`` float32 in [0, 1] on the model's device (``model.inputs``)."""
        return as_image_batch(images, self.config.in_channels, self.config.input_size, self.device)

    @torch.no_grad()
    def kept_masks(self, images, max_steps: int = 30, score_threshold: float = 0.5,
                   return_scores: bool = False, precision: str = "fp32") -> List[torch.Tensor]:
        """RIS's soft masks up to its stop: for each image a ``(k, H, W)`` tensor in [0, 1] on
        the CPU, at the input size, holding the steps before the first score below
        ``score_threshold`` (``k = max_steps`` when no score falls below it).
        ``return_scores`` gives ``(masks, scores (k,))`` pairs instead.

        Accepts ``(3,H,W)`` or ``(B,3,H,W)`` tensors or numpy arrays, float in [0, 1] or uint8
        0..255 (divided by 255); NaN, infinity or ``max_steps < 1`` is an error, an image far
        above the input size a warning (``ris_lite.model.inputs``). ``precision`` as in
        ``ris_lite.precision`` (default fp32: scores that any machine reproduces; ``"auto"``
        autocasts where the hardware makes it faster)."""
        check_max_steps(max_steps)
        images = self._as_batch(images)
        was_training = self.training
        self.eval()
        with autocast(resolve_precision(precision, images.device), images.device):
            masks, scores = self(images, max_steps)
        masks, scores = masks.float(), scores.float()
        self.train(was_training)
        if masks.shape[-2:] != images.shape[-2:]:
            masks = torch.nn.functional.interpolate(masks, size=images.shape[-2:], mode="bilinear",
                                                    align_corners=False)
        out = []
        for m, s in zip(masks.cpu(), scores.cpu()):
            below = (s < score_threshold).nonzero()
            k = int(below[0]) if len(below) else max_steps
            out.append((m[:k], s[:k]) if return_scores else m[:k])
        return out

    @torch.no_grad()
    def predict(self, images, max_steps: int = 30, mask_threshold: float = 0.5,
                score_threshold: float = 0.5, crf=False, precision: str = "fp32",
                assembly: Optional[str] = None, min_size: Optional[int] = None) -> List[torch.Tensor]:
        """Label maps for a batch: stop at the first score below ``score_threshold``.

        Accepts images as :meth:`kept_masks` does (uint8 0..255 is divided by 255). A pixel
        claimed by two steps stays with the earlier one (``assembly="first"``, the paper; ``"argmax"``, ours:
        with the step of highest score-weighted mask, ``ris_lite.model.assembly``), and segments
        under ``min_size`` pixels become background (0: none, the paper). Left as None, both are
        the model's ``assembly_rule`` (the choice stored with a shipped model, see
        ``ris_lite.pretrained.load_pretrained``), else the paper's ``"first"`` and 0. Returns a list of
        ``(H, W)`` int64 label maps on the CPU with background 0 and ids 1..k consecutive in
        the order found.

        ``crf=True`` refines the kept soft masks with the paper's dense CRF (RIS+CRF,
        ``ris_lite.model.crf.refine``) using ``self.crf_config`` (the parameters tuned for a shipped
        model, else ``CRFConfig()``); a ``CRFConfig`` passed as ``crf`` is used as it is.
        ``precision``: as in :meth:`kept_masks`. Every option is checked (``inputs.check_predict_options``).
        """
        # the stored rule was chosen for the masks as they are; the CRF assigns pixels itself
        rule = (self.assembly_rule if crf is False or crf is None else None) or {"assembly": "first", "min_size": 0}
        assembly = rule["assembly"] if assembly is None else assembly
        min_size = rule["min_size"] if min_size is None else min_size
        check_predict_options(mask_threshold, score_threshold, min_size, assembly, crf)
        images = self._as_batch(images)
        kept = self.kept_masks(images, max_steps, score_threshold, return_scores=True, precision=precision)
        if crf is False or crf is None:
            return [assemble(m, s, assembly, mask_threshold, min_size) for m, s in kept]
        from .crf import CRFConfig, refine

        if crf is not True and not isinstance(crf, CRFConfig):
            raise TypeError(f"crf must be a bool or a CRFConfig, got {type(crf).__name__}")
        config = crf if isinstance(crf, CRFConfig) else (self.crf_config or CRFConfig())
        return [drop_small(refine(image, m, config), min_size) for image, (m, _) in zip(images, kept)]


def with_coordinates(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C + 2, H, W)``: appends each pixel's row and column in [0, 1]."""
    B, _, H, W = images.shape
    ys = torch.linspace(0, 1, H, device=images.device, dtype=images.dtype)
    xs = torch.linspace(0, 1, W, device=images.device, dtype=images.dtype)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(B, -1, -1, -1)
    return torch.cat([images, grid], 1)
