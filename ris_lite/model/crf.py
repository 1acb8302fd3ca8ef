"""RIS+CRF: a fully connected CRF (Krähenbühl & Koltun, NIPS 2011) that sharpens RIS's masks.

Explained in the book chapter ``book/09_crf`` ("Sharpening the boundaries: RIS+CRF").

The ConvLSTM sees the plant on a grid twice as coarse as the image, so RIS's masks have coarse
edges. The paper's remedy (Sec. 4, "RIS+CRF") is a dense CRF over the instances of one
prediction: the labels are {background, instance 1, ..., instance k}; the unary term comes from
RIS's soft masks (``unary_probabilities``); the pairwise term is a Potts penalty weighted by two
Gaussian kernels on every pair of pixels, an appearance kernel (position and colour: pixels that
look alike and lie close should agree) and a smoothness kernel (position only)::

    E(x) = sum_i psi_u(x_i) + sum_{i<j} [x_i != x_j] k(f_i, f_j)
    k(f_i, f_j) = w_a exp(-|p_i - p_j|^2 / 2 theta_a^2 - |I_i - I_j|^2 / 2 theta_b^2)
                + w_s exp(-|p_i - p_j|^2 / 2 theta_s^2)

Mean-field inference replaces the labelling by independent marginals ``Q_i(l)`` and updates all
pixels at once::

    Q_i(l)  proportional to  exp(-psi_u(l) + sum_j k(f_i, f_j) Q_j(l))

The sum over ``j`` includes ``i`` itself, as in Krähenbühl's own code. That makes the pairwise
part of the mean-field free energy concave (the kernel matrix is positive semi-definite), so
every parallel update lowers the free energy (``free_energy``; Krähenbühl & Koltun, ICML 2013).

At our image sizes (106 x 100 = 10,600 pixels) the appearance kernel is computed exactly: the
N x N matrix is built once per image in row blocks (112 M entries, 450 MB in float32, 225 MB in
bfloat16) and each iteration is one matrix product. The smoothness kernel factorises over rows
and columns, so it is applied exactly as two small matrix products. Larger images fall back to
recomputing the appearance blocks at each iteration (exact, slower, memory bounded by
``CRFConfig.max_kernel_bytes``). Krähenbühl's permutohedral lattice (``crf_lattice``) approximates
the same sums in linear time: ``CRFConfig.backend`` is ``"exact"`` (this module; it computed the
book's RIS+CRF table), ``"lattice"`` or ``"auto"`` (the library's and the CLI's default; ``choose_backend``).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import List, Optional, Union

import torch

from .crf_kernels import DenseGaussian, SeparableGaussian, fast_bfloat16, pixel_features
from .crf_lattice import LATTICE_INSTALL, LatticeCRF, lattice_available

Tensorish = Union[torch.Tensor, "numpy.ndarray"]  # noqa: F821
#: a CRF of one image, either backend: ``mean_field(unary (L, H, W)) -> Q (L, H, W)``
AnyCRF = Union["DenseCRF", LatticeCRF]

BACKENDS = ("exact", "lattice", "auto")
#: ``backend="auto"``: the exact CRF up to this many pixels (64 x 64), where it takes about 0.1 s,
#: the lattice above. Measured with the shipped parameters on one thread (AVX512-BF16 CPU, 10
#: iterations, a plant of 4-6 leaves), exact / lattice: 960 px 0.008 / 0.003 s, 3840 px 0.11 /
#: 0.013 s, 10,600 px (106 x 100) 1.1 / 0.05 s; the exact time grows with the square of the pixels
AUTO_EXACT_MAX_PIXELS = 4096


@dataclass
class CRFConfig:
    """Parameters of the dense CRF. Lengths are in pixels of the image the CRF runs on,
    colours in the image's own units (RIS images are RGB in [0, 1], so ``appearance_rgb=0.05``
    is 13 on the 0-255 scale). The shipped values were tuned on the validation split
    (``benchmarks/tune_crf.py``); these defaults are Krähenbühl's VOC settings scaled to a
    106 x 100 image."""

    iterations: int = 10
    appearance_weight: float = 5.0  # w_a
    appearance_xy: float = 16.0  # theta_a (pixels)
    appearance_rgb: float = 0.05  # theta_b (image units)
    smoothness_weight: float = 3.0  # w_s
    smoothness_xy: float = 1.0  # theta_s (pixels)
    #: "symmetric": each kernel becomes D^-1/2 K D^-1/2 with D its row sums (pydensecrf's
    #: default), so a weight means the same whatever the kernel width; "none": raw Gaussians
    normalization: str = "symmetric"
    #: how RIS's soft masks become label probabilities, see ``unary_probabilities``
    unary: str = "share"
    #: probabilities are floored here before the log, so no label is ever impossible
    min_probability: float = 1e-4
    #: RIS decides how many instances there are, the CRF only where they end: the labels are
    #: the instances RIS's own label map holds, and one that wins no pixel in the CRF keeps
    #: the pixels RIS gave it. (The paper's RIS and RIS+CRF rows share their DiC.) False lets
    #: the CRF drop instances.
    keep_count: bool = True
    #: the appearance matrix is stored when it fits in this many bytes, else recomputed per
    #: iteration in blocks
    max_kernel_bytes: int = 2 ** 30
    #: storage of the appearance matrix: "float32", "bfloat16" (half the memory traffic; fast
    #: where the CPU has native bf16 or on a GPU) or "auto" (bfloat16 where it is fast)
    kernel_dtype: str = "auto"
    #: how mean field is computed: "exact" (every pixel pair, quadratic), "lattice" (Krähenbühl's
    #: permutohedral lattice, linear, approximate; needs pydensecrf2) or "auto" (exact up to
    #: ``AUTO_EXACT_MAX_PIXELS``, the lattice above: the default, as the exact CRF of a 191 x 180
    #: A1 frame takes minutes, issue #50); the other fields mean the same in each
    backend: str = "auto"

    def __post_init__(self):
        for name, (need, ok) in _FIELD_RULES.items():  # a JSON file may hold anything: type first
            if not ok(getattr(self, name)):
                raise ValueError(f"CRFConfig.{name} must be {need}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CRFConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CRFConfig fields {unknown}")
        return cls(**d)

    @classmethod
    def load(cls, path: Union[str, Path]) -> CRFConfig:
        """Read a JSON file written by ``save`` (the tuned parameters of a checkpoint)."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a CRF config JSON ({e})") from None

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: CRFConfig field -> (what it must be, the test): checked when a config is made or loaded
_FIELD_RULES = {
    "iterations": ("an integer >= 0", lambda v: _integer(v) and v >= 0),
    **{n: ("a finite number > 0", lambda v: _number(v) and v > 0)
       for n in ("appearance_xy", "appearance_rgb", "smoothness_xy")},
    **{n: ("a finite number >= 0", lambda v: _number(v) and v >= 0) for n in ("appearance_weight", "smoothness_weight")},
    "normalization": ("'symmetric' or 'none'", lambda v: v in ("symmetric", "none")),
    "unary": ("'share' or 'sequential'", lambda v: v in ("share", "sequential")),
    "min_probability": ("a number in (0, 1)", lambda v: _number(v) and 0 < v < 1),
    "keep_count": ("true or false", lambda v: isinstance(v, bool)),
    "max_kernel_bytes": ("an integer > 0", lambda v: _integer(v) and v > 0),
    "kernel_dtype": ("auto, float32 or bfloat16", lambda v: v in ("auto", "float32", "bfloat16")),
    "backend": (f"one of {', '.join(BACKENDS)}", lambda v: v in BACKENDS),
}


# --------------------------------------------------------------------------------------------
# Unaries


def unary_probabilities(masks: torch.Tensor, rule: str = "share") -> torch.Tensor:
    """Soft masks ``(k, H, W)`` in [0, 1] -> label probabilities ``(k + 1, H, W)``, background
    first; they sum to 1 at every pixel.

    A pixel is background when no step claims it: ``P(bg) = prod_t (1 - m_t)``. The rest of the
    mass goes to the instances:

    * ``"share"`` (default): in proportion to the masks, ``P(t) = (1 - P(bg)) m_t / sum_s m_s``,
      so the result does not depend on the order of the steps and the CRF settles overlaps by
      appearance;
    * ``"sequential"``: stick-breaking in RIS's order, ``P(t) = m_t prod_{s<t} (1 - m_s)``: an
      earlier step wins an overlap, as in ``RIS.predict``.
    """
    if rule not in ("share", "sequential"):
        raise ValueError(f"unary rule must be 'share' or 'sequential', got {rule!r}")
    masks = masks.float()
    background = torch.prod(1 - masks, 0, keepdim=True)
    if rule == "share":
        total = masks.sum(0, keepdim=True)
        instances = (1 - background) * masks / total.clamp_min(1e-12)
    else:
        before = torch.cumprod(torch.cat([torch.ones_like(masks[:1]), 1 - masks[:-1]]), 0)
        instances = masks * before
    return torch.cat([background, instances])


# --------------------------------------------------------------------------------------------
# The CRF of one image


def _check_image(image: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(image) or image.ndim != 3:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"CRF expects an image (C,H,W), got {shape}")
    if not image.is_floating_point():
        raise TypeError(f"CRF expects a float image, got dtype {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError("CRF image contains NaN or inf")
    return image.float()


def choose_backend(backend: str, pixels: int) -> str:
    """``"exact"`` or ``"lattice"``: the backend ``backend`` (``CRFConfig.backend``) means for
    an image of ``pixels`` pixels. ``"auto"`` above ``AUTO_EXACT_MAX_PIXELS`` without pydensecrf2
    installed warns and stays exact (correct, only slow)."""
    if backend not in BACKENDS:
        raise ValueError(f"CRF backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    if pixels <= AUTO_EXACT_MAX_PIXELS:
        return "exact"
    if lattice_available():
        return "lattice"
    warnings.warn(f"CRF backend 'auto': pydensecrf2 is not installed, so images over {AUTO_EXACT_MAX_PIXELS} "
                  f"pixels run the exact CRF (quadratic in pixels: slow); {LATTICE_INSTALL}", stacklevel=2)
    return "exact"


def build_crf(image: torch.Tensor, config: Optional[CRFConfig] = None) -> AnyCRF:
    """The CRF of ``image (C, H, W)`` with ``config``'s backend (``choose_backend``): a
    ``DenseCRF`` or a ``crf_lattice.LatticeCRF``, both with ``mean_field(unary (L, H, W))``."""
    config = config or CRFConfig()
    image = _check_image(torch.as_tensor(image))
    _, height, width = image.shape
    if choose_backend(config.backend, height * width) == "exact":
        return DenseCRF(image, config)
    position, colour = pixel_features(image)
    kernels = []
    if config.appearance_weight > 0:
        kernels.append((torch.cat([position / config.appearance_xy, colour / config.appearance_rgb], 1),
                        config.appearance_weight))
    if config.smoothness_weight > 0:
        kernels.append((position / config.smoothness_xy, config.smoothness_weight))
    return LatticeCRF(height, width, kernels, config.normalization == "symmetric", config.iterations)


class DenseCRF:
    """A fully connected CRF over the pixels of one ``image (C, H, W)``; the labels come with
    the unaries passed to ``mean_field``."""

    def __init__(self, image: torch.Tensor, config: Optional[CRFConfig] = None):
        self.config = c = config or CRFConfig()
        image = _check_image(torch.as_tensor(image))
        _, self.height, self.width = image.shape
        device = image.device
        position, colour = pixel_features(image)
        normalize = c.normalization == "symmetric"
        dtype = torch.float32
        if c.kernel_dtype == "bfloat16" or (c.kernel_dtype == "auto" and fast_bfloat16(device)):
            dtype = torch.bfloat16
        self.appearance = None
        if c.appearance_weight > 0:
            features = torch.cat([position / c.appearance_xy, colour / c.appearance_rgb], 1)
            self.appearance = DenseGaussian(features, normalize, c.max_kernel_bytes, dtype)
        self.smoothness = None
        if c.smoothness_weight > 0:
            self.smoothness = SeparableGaussian(self.height, self.width, c.smoothness_xy, normalize, device)

    def message(self, q: torch.Tensor) -> torch.Tensor:
        """``q (N, L)`` -> ``sum_j k(f_i, f_j) q_j`` for every pixel i, ``(N, L)``."""
        out = torch.zeros_like(q)
        if self.appearance is not None:
            out += self.config.appearance_weight * self.appearance.apply(q)
        if self.smoothness is not None:
            out += self.config.smoothness_weight * self.smoothness.apply(q)
        return out

    def _flat(self, unary: torch.Tensor) -> torch.Tensor:
        if unary.ndim != 3 or tuple(unary.shape[1:]) != (self.height, self.width):
            raise ValueError(f"unary energies must be (L,{self.height},{self.width}), got {tuple(unary.shape)}")
        if not torch.isfinite(unary).all():
            raise ValueError("unary energies contain NaN or inf")
        return unary.float().reshape(unary.shape[0], -1).T  # (N, L)

    def step(self, q: torch.Tensor, unary: torch.Tensor) -> torch.Tensor:
        """One parallel mean-field update on flat ``(N, L)`` marginals and energies."""
        return torch.softmax(-unary + self.message(q), 1)

    def mean_field(self, unary: torch.Tensor, iterations: Optional[int] = None,
                   energies: Optional[List[float]] = None) -> torch.Tensor:
        """Unary energies ``(L, H, W)`` (``-log P``) -> marginals ``Q (L, H, W)``.

        Starts from ``softmax(-unary)``; appends the free energy before and after every
        iteration to ``energies`` when a list is given."""
        u = self._flat(unary)
        q = torch.softmax(-u, 1)
        iterations = self.config.iterations if iterations is None else iterations
        if energies is not None:
            energies.append(self._free_energy(q, u))
        for _ in range(iterations):
            q = self.step(q, u)
            if energies is not None:
                energies.append(self._free_energy(q, u))
        return q.T.reshape(-1, self.height, self.width)

    def free_energy(self, q: torch.Tensor, unary: torch.Tensor) -> float:
        """Mean-field free energy of marginals ``q (L, H, W)``:
        ``sum_i <Q_i, psi_i> + sum_i <Q_i, log Q_i> + 1/2 sum_{i,j} k_ij (1 - <Q_i, Q_j>)``.
        On a one-hot ``q`` it is the Gibbs energy E(x) of that labelling."""
        return self._free_energy(self._flat(q), self._flat(unary))

    def _free_energy(self, q: torch.Tensor, u: torch.Tensor) -> float:
        ones = torch.ones_like(q[:, :1])
        pairwise = 0.5 * (self.message(ones).sum() - (q * self.message(q)).sum())
        entropy = torch.special.xlogy(q, q).sum()
        return float((q * u).sum() + entropy + pairwise)


# --------------------------------------------------------------------------------------------
# From RIS's masks to a refined label map


def _check_masks(masks: torch.Tensor, size) -> torch.Tensor:
    if not torch.is_tensor(masks) or masks.ndim != 3:
        shape = tuple(masks.shape) if torch.is_tensor(masks) else type(masks).__name__
        raise ValueError(f"CRF expects soft masks (k,H,W), got {shape}")
    if tuple(masks.shape[1:]) != tuple(size):
        raise ValueError(f"masks are {tuple(masks.shape[1:])} but the image is {tuple(size)}: "
                         "upsample the masks to the image first")
    if not masks.is_floating_point():
        masks = masks.float()  # hard masks (bool / 0-1 integers) are valid probabilities
    if not torch.isfinite(masks).all():
        raise ValueError("CRF masks contain NaN or inf")
    if masks.numel() and (masks.min() < 0 or masks.max() > 1):
        raise ValueError(f"CRF masks must lie in [0, 1], got [{float(masks.min()):.3g}, {float(masks.max()):.3g}]")
    return masks


def refine_marginals(image: Tensorish, masks: Tensorish, config: Optional[CRFConfig] = None,
                     energies: Optional[List[float]] = None, crf: Optional[AnyCRF] = None) -> torch.Tensor:
    """Marginals ``Q (k + 1, H, W)`` (background first) of the CRF built on ``image (C, H, W)``
    and RIS's soft masks ``(k, H, W)`` of the steps it kept, computed by ``config.backend``
    (``build_crf``). ``crf``: a CRF already built on this image with the same kernel widths
    (reused, e.g. while tuning weights). ``energies`` (a list to fill): exact backend only (auto runs it)."""
    config = config or CRFConfig()
    if energies is not None and config.backend == "auto" and crf is None:  # the lattice has no free energy
        config = replace(config, backend="exact")
    image = _check_image(torch.as_tensor(image))
    masks = _check_masks(torch.as_tensor(masks, device=image.device), image.shape[1:])
    probabilities = unary_probabilities(masks, config.unary)
    unary = -torch.log(probabilities.clamp_min(config.min_probability))
    return (crf or build_crf(image, config)).mean_field(unary, energies=energies)


def labels_from_marginals(q: torch.Tensor) -> torch.Tensor:
    """``(k + 1, H, W)`` marginals -> ``(H, W)`` int64 labels: the most likely label, instances
    renumbered 1..k' in their original order (an instance that wins no pixel disappears)."""
    best = q.argmax(0).cpu()
    present = torch.unique(best)
    present = present[present > 0]
    lookup = torch.zeros(q.shape[0], dtype=torch.int64)
    lookup[present] = torch.arange(1, len(present) + 1)
    return lookup[best]


def first_claims(masks: torch.Tensor, mask_threshold: float = 0.5) -> torch.Tensor:
    """``(k, H, W)`` soft masks -> ``(H, W)`` int64: the index (1-based) of the first mask above
    the threshold at each pixel, 0 where none is. ``RIS.predict``'s label map before renumbering."""
    if masks.shape[0] == 0:
        return torch.zeros(masks.shape[1:], dtype=torch.int64)
    above = masks > mask_threshold
    return torch.where(above.any(0), above.float().argmax(0) + 1, 0).cpu()


def refine(image: Tensorish, masks: Tensorish, config: Optional[CRFConfig] = None,
           crf: Optional[AnyCRF] = None) -> torch.Tensor:
    """RIS+CRF for one image: ``image (C, H, W)`` float and RIS's soft masks ``(k, H, W)`` in
    [0, 1] (the steps before the stop, at the image's size) -> label map ``(H, W)`` int64 on the
    CPU, background 0, instances 1..k' consecutive in RIS's order.

    With ``config.keep_count`` (the default) the instances are those of RIS's own label map
    (``RIS.predict``), so RIS+CRF finds as many instances as RIS. With no masks, or none that
    claims a pixel, there is nothing to refine: the result is all background. ``crf`` as in
    ``refine_marginals``.
    """
    config = config or CRFConfig()
    image = _check_image(torch.as_tensor(image))
    masks = _check_masks(torch.as_tensor(masks, device=image.device), image.shape[1:])
    if config.keep_count:
        claims = first_claims(masks)
        kept = torch.unique(claims)
        kept = kept[kept > 0] - 1
        masks, claims = masks[kept.to(masks.device)], first_claims(masks[kept.to(masks.device)])
    if masks.shape[0] == 0:
        return torch.zeros(image.shape[1:], dtype=torch.int64)
    q = refine_marginals(image, masks, config, crf=crf)
    if config.keep_count:
        best = q.argmax(0).cpu()
        for t in range(1, masks.shape[0] + 1):
            if not (best == t).any():  # lost every pixel: it keeps RIS's
                best[claims == t] = t
        q = torch.nn.functional.one_hot(best, masks.shape[0] + 1).permute(2, 0, 1)
    return labels_from_marginals(q)


def lattice_marginals(image: torch.Tensor, unary: torch.Tensor, config: Optional[CRFConfig] = None) -> torch.Tensor:
    """The same CRF solved by Krähenbühl's C++ code with the permutohedral lattice (``config``
    with ``backend="lattice"``; package ``pydensecrf2``, ``pip install "ris_lite[crf]"``):
    ``image (C, H, W)``, unary energies ``(L, H, W)`` -> marginals ``(L, H, W)`` after
    ``config.iterations`` mean-field updates."""
    return build_crf(image, replace(config or CRFConfig(), backend="lattice")).mean_field(unary)


__all__ = ["CRFConfig", "DenseCRF", "LatticeCRF", "BACKENDS", "AUTO_EXACT_MAX_PIXELS", "build_crf", "choose_backend",
           "pixel_features", "DenseGaussian", "SeparableGaussian", "unary_probabilities", "refine",
           "refine_marginals", "labels_from_marginals", "first_claims", "lattice_marginals"]
