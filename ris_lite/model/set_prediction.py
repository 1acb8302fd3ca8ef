"""Ours, not the paper's: RIS's parallel twin, K learned queries answering at once (after DETR,
Carion et al. 2020, and its mask heads).

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR").

::

    image -> FCN (RIS's plant FCN) -> head_layers x (3x3 conv, ReLU) = features f(x)
    K learned queries -> decoder_layers x (self-attention among the queries, cross-attention to
                         1x1 conv(f) + sine positions, feed-forward) -> q_k
    e(x) = LayerNorm(1x1 conv(f)(x))       m_k = LayerNorm(MLP(q_k))     (E numbers each)
    mask_k(x) = sigmoid(s <m_k, e(x)> / sqrt(E))  (-> bilinear upsampling to the input, as RIS's masks)
    score_k   = sigmoid(w . q_k + c)

The mask head is MaskFormer's (Cheng et al. 2021): an MLP turns a query into its mask embedding,
and the queries attend to their own projection of the features, not to the embeddings the masks
read. The layer norms bound every logit by ``s sqrt(E)`` (``s`` learned, from 1): measured on a
few plants at the shipped RIS's learning rate 2e-3, plain dot products grew until every mask was
0 or 1 everywhere, and no gradient came back.

Everything RIS does one step at a time happens here in one pass: the K masks come out together,
there is no stop score (a query's score says whether it holds a leaf, and any subset may), no
order and no memory of what was emitted; the self-attention among the queries is what keeps two
of them from painting the same leaf. The ``head_layers`` 3x3 convolutions stand where RIS has its
two ConvLSTM layers: the same depth on the same features, without the recurrence. Trained with
the package's Hungarian soft-IoU matching over all K queries and the same score cross-entropy
(``ris_lite.training.set_loss``); ``predict`` keeps the queries scoring above the threshold, most
confident first, and assembles them as RIS's steps (``ris_lite.model.assembly``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast, resolve_precision
from .assembly import assemble
from .fcn import FCN
from .inputs import as_image_batch, check_max_steps, check_predict_options


@dataclass
class PlantConfig:
    """The plant features every successor model shares with RIS (``RISConfig``'s fields of the
    same names), and the 3x3 layers that stand for RIS's ConvLSTM (stored in checkpoints)."""

    in_channels: int = 3
    channels: int = 30
    fcn_variant: str = "downsample"  # "downsample" or "learned" (``ris_lite.model.fcn``)
    fcn_stride: int = 2
    fcn_dilations: Tuple[int, ...] = (1, 1, 1, 1)
    input_size: Tuple[int, int] = (106, 100)
    #: 3x3 convolutions (width ``channels``, ReLU) on the FCN features: RIS's two ConvLSTM layers' depth
    head_layers: int = 2
    #: width E of the per-pixel embeddings
    embed_dim: int = 32
    extra: dict = field(default_factory=dict)  # free-form notes kept in checkpoints; unused by the model

    def __post_init__(self):
        if self.fcn_variant not in ("downsample", "learned"):
            raise ValueError(f"fcn_variant must be 'downsample' or 'learned' (the plant FCN), got {self.fcn_variant!r}")
        if self.channels < 1 or self.embed_dim < 1 or self.head_layers < 0:
            raise ValueError(f"channels and embed_dim must be >= 1 and head_layers >= 0, got {self.channels}, "
                             f"{self.embed_dim}, {self.head_layers}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(d["input_size"])
        d["fcn_dilations"] = list(d["fcn_dilations"])
        return d

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        d = dict(d)
        d["input_size"] = tuple(d.get("input_size", (106, 100)))
        d["fcn_dilations"] = tuple(d.get("fcn_dilations", (1, 1, 1, 1)))
        return cls(**d)


@dataclass
class SetConfig(PlantConfig):
    """Everything needed to rebuild a :class:`SetPredictor` (stored in checkpoints)."""

    #: K, the most leaves one image can have (the synthetic plants have at most 20)
    queries: int = 24
    decoder_layers: int = 2
    heads: int = 4

    def __post_init__(self):
        super().__post_init__()
        if self.queries < 1 or self.decoder_layers < 1:
            raise ValueError(f"queries and decoder_layers must be >= 1, got {self.queries}, {self.decoder_layers}")
        if self.embed_dim % 4 or self.embed_dim % self.heads:
            raise ValueError(f"embed_dim must be a multiple of 4 (the sine positions) and of heads={self.heads}, "
                             f"got {self.embed_dim}")


class PlantFeatures(nn.Module):
    """``images (B, C, H, W)`` -> ``(B, channels, h', w')``: RIS's plant FCN, then ``head_layers``
    3x3 convolutions with ReLU."""

    def __init__(self, c: PlantConfig):
        super().__init__()
        self.fcn = FCN(c.in_channels, c.channels, stride=c.fcn_stride, variant=c.fcn_variant,
                       n_convs=len(c.fcn_dilations), dilations=c.fcn_dilations)
        layers = []
        for _ in range(c.head_layers):
            conv = nn.Conv2d(c.channels, c.channels, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
        self.head = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.fcn(images))


def check_images(images, in_channels: int, name: str) -> None:
    """``forward``'s input: a float ``(B, in_channels, H, W)`` tensor (else a one-line error)."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != in_channels:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{name} expects images (B,{in_channels},H,W), got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"{name} expects float images in [0, 1], got dtype {images.dtype}")


def sine_positions(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """``(height * width, dim)`` fixed positions (DETR's sine encoding): ``dim / 4`` frequencies
    of the row and of the column in [0, 1], each as a sine and a cosine."""
    f = dim // 4
    freqs = math.pi * 2.0 ** torch.arange(f, dtype=torch.float32, device=device)
    ys = torch.linspace(0, 1, height, device=device)[:, None] * freqs  # (h, f)
    xs = torch.linspace(0, 1, width, device=device)[:, None] * freqs  # (w, f)
    row = torch.cat([ys.sin(), ys.cos()], 1)[:, None, :].expand(height, width, 2 * f)
    col = torch.cat([xs.sin(), xs.cos()], 1)[None, :, :].expand(height, width, 2 * f)
    return torch.cat([row, col], -1).reshape(height * width, 4 * f)


class SetPredictor(nn.Module):
    """K masks and K scores in one pass (module docstring).

    ``forward(images (B,3,H,W)) -> (masks (B,K,H,W) in [0,1], scores (B,K) in [0,1])``.
    """

    def __init__(self, config: SetConfig | None = None, **overrides):
        super().__init__()
        config = config or SetConfig()
        if overrides:
            config = SetConfig.from_dict({**config.to_dict(), **overrides})
        self.config = c = config
        E = c.embed_dim
        self.features = PlantFeatures(c)
        self.pixel_embedding = nn.Conv2d(c.channels, E, 1)  # what the masks read
        self.memory = nn.Conv2d(c.channels, E, 1)  # what the queries attend to
        self.queries = nn.Parameter(torch.randn(c.queries, E))
        layer = nn.TransformerDecoderLayer(E, c.heads, dim_feedforward=2 * E, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, c.decoder_layers)
        self.score = nn.Linear(E, 1)
        self.mask_embedding = nn.Sequential(nn.Linear(E, E), nn.ReLU(inplace=True), nn.Linear(E, E))
        #: s of the mask logits ``s <m_k, e(x)> / sqrt(E)`` (learned, starts at 1)
        self.mask_scale = nn.Parameter(torch.tensor(1.0))
        #: no RIS+CRF parameters: ``predict`` has no ``crf`` (RIS's alone)
        self.crf_config = None

    def trainable_parameters(self, freeze_fcn: bool = False) -> List[nn.Parameter]:
        """All parameters (the trainer's optimiser); ``freeze_fcn`` belongs to RIS's people phase."""
        if freeze_fcn:
            raise ValueError("freeze_fcn is RIS's first people phase: a set model trains all its parameters")
        return list(self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, images: torch.Tensor, score_logits: bool = False, return_stages: bool = False):
        """``images (B,3,H,W)`` -> ``(masks (B,K,H,W), scores (B,K))``; ``score_logits`` returns the
        scores before the sigmoid (for a stable loss); ``return_stages`` adds a dict with the
        (normalised) ``pixel_embeddings (B,E,h',w')`` and ``query_embeddings (B,K,E)`` whose
        scaled dot products are the ``mask_logits (B,K,h',w')`` (before the sigmoid and the
        upsampling), and the decoder's ``queries_out (B,K,E)`` that the scores read."""
        check_images(images, self.config.in_channels, "SetPredictor")
        B, _, H, W = images.shape
        features = self.features(images)
        E, h, w = self.config.embed_dim, *features.shape[2:]
        positions = sine_positions(h, w, E, features.device).to(features.dtype)
        memory = self.memory(features).flatten(2).transpose(1, 2) + positions  # (B, h'w', E)
        q = self.decoder(self.queries.to(memory.dtype).expand(B, -1, -1), memory)  # (B, K, E)
        # both sides layer-normalised (norm sqrt(E)): |logit| <= s sqrt(E), so no mask saturates
        # beyond recovery (unbounded, the masks of a short run went to 0 or 1 everywhere)
        pixels = F.layer_norm(self.pixel_embedding(features).transpose(1, 3), (E,)).transpose(1, 3)
        m = F.layer_norm(self.mask_embedding(q), (E,))
        logits = self.mask_scale * torch.einsum("bke,behw->bkhw", m, pixels) / math.sqrt(E)
        masks = torch.sigmoid(logits)
        if (h, w) != (H, W):  # as RIS: the probabilities upsampled, not the logits
            masks = F.interpolate(masks, size=(H, W), mode="bilinear", align_corners=False)
        z = self.score(q).squeeze(-1)
        scores = z if score_logits else torch.sigmoid(z)
        if return_stages:
            return masks, scores, {"pixel_embeddings": pixels, "query_embeddings": m, "mask_logits": logits,
                                   "queries_out": q}
        return masks, scores

    @torch.no_grad()
    def kept_masks(self, images, max_steps: int = 30, score_threshold: float = 0.5, return_scores: bool = False,
                   precision: str = "fp32") -> List:
        """As ``RIS.kept_masks``, with the queries in the place of the steps: per image a
        ``(k, H, W)`` tensor on the CPU of the queries scoring at least ``score_threshold``, most
        confident first, at most ``max_steps`` of them (so ``ris_lite.evaluation.diagnose`` reads
        a set model as it reads RIS); ``return_scores`` gives ``(masks, scores (k,))`` pairs.
        Images as ``RIS.predict`` takes them (``ris_lite.model.inputs``)."""
        check_max_steps(max_steps)
        images = as_image_batch(images, self.config.in_channels, self.config.input_size, self.device)
        was_training = self.training
        self.eval()
        with autocast(resolve_precision(precision, images.device), images.device):
            masks, scores = self(images)
        self.train(was_training)
        out = []
        for m, s in zip(masks.float().cpu(), scores.float().cpu()):
            order = torch.argsort(s, descending=True, stable=True)
            order = order[s[order] >= score_threshold][:max_steps]
            out.append((m[order], s[order]) if return_scores else m[order])
        return out

    @torch.no_grad()
    def predict(self, images, max_steps: int = 30, mask_threshold: float = 0.5, score_threshold: float = 0.5,
                crf=False, precision: str = "fp32", assembly: str = "first", min_size: int = 0) -> List[torch.Tensor]:
        """``(H, W)`` int64 label maps on the CPU (0 background, ids 1..k consecutive), as
        ``RIS.predict``: the kept queries (:meth:`kept_masks`) in the place of RIS's steps, a
        pixel going to the most confident query that claims it (``assembly="first"``) or to the
        highest score-weighted mask (``"argmax"``); segments under ``min_size`` pixels dropped.
        ``crf`` must be False (RIS+CRF is RIS's)."""
        if crf is not False and crf is not None:
            raise ValueError("crf: RIS+CRF refines RIS's masks; a set model predicts without it")
        check_predict_options(mask_threshold, score_threshold, min_size, assembly, crf)
        kept = self.kept_masks(images, max_steps, score_threshold, return_scores=True, precision=precision)
        return [assemble(m, s, assembly, mask_threshold, min_size) for m, s in kept]
