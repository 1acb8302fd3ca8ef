"""RIS+CRF in linear time: the same mean field with Krähenbühl's permutohedral lattice.

Explained in the book chapter ``book/09_crf`` (the CRF itself: ``ris_lite.model.crf``, which
builds this backend from a ``CRFConfig`` when ``CRFConfig.backend`` asks for it).

The exact backend (``crf_kernels.DenseGaussian``) sums a Gaussian over every pair of pixels:
N^2 terms per message, 112 M at 106 x 100, 70 G at an A1 frame's 530 x 500. The permutohedral
lattice (Adams, Baek & Davis 2010, used by Krähenbühl & Koltun 2011 and by the paper) splats each
pixel's feature vector onto the corners of the simplex that holds it in a lattice of feature
space, blurs along the lattice's d + 1 axes and slices back: O(N d^2) per message, an
approximate Gaussian. The C++ code is the ``pydensecrf2`` package (``pip install
"ris_lite[crf]"``; a source package, built with a C++ compiler).

How the two normalise, so that one ``CRFConfig`` means the same in both:

* features: the lattice gets exactly the exact backend's features, ``position / theta`` and
  ``colour / theta_b`` as float32 (``addPairwiseEnergy``, not ``addPairwiseBilateral``, which
  would round colours to 8 bits and assume 3 channels in 0-255). It approximates
  ``c exp(-|f_i - f_j|^2 / 2)`` with the pixel itself included, as ours, where the constant ``c``
  comes from its blur weights;
* the update: Krähenbühl's ``inference`` computes ``Q = softmax(-U - sum_k mu(K_k Q))`` with the
  Potts compatibility ``mu(Q) = -w Q``, i.e. ``softmax(-U + sum_k w_k K_k Q)``: ours, with
  ``compat = w``;
* ``normalization="symmetric"``: ``NORMALIZE_SYMMETRIC`` scales by the inverse square root of
  the lattice's row sums on both sides, ``D^-1/2 K D^-1/2`` as ours; ``c`` cancels, so
  ``compat = w``;
* ``normalization="none"``: Krähenbühl's ``NO_NORMALIZATION`` is not the raw kernel but the
  kernel over its mean row sum, ``K N / sum_ij K_ij`` (``c`` cancels again); ours is the raw
  Gaussian, so ``compat = w * mean_i sum_j k_ij``, that mean taken on the exact kernel
  (``mean_row_sum``: exact up to ``sample`` pixels, else on a fixed random sample of them).

What is left is the lattice's approximation of the Gaussian (coarsest for narrow kernels), so
the two agree on most pixels, not all (``tests/test_crf_backends.py`` states how many).
"""

from __future__ import annotations

from types import ModuleType
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

#: what to run to get this backend, named in every error
LATTICE_INSTALL = "pip install 'ris_lite[crf]'"


def require_pydensecrf() -> ModuleType:
    """The ``pydensecrf.densecrf`` module, or an ImportError that says how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise ImportError("the lattice CRF backend needs pydensecrf2 (Krähenbühl's C++ dense CRF, built "
                          f"from source with a C++ compiler): {LATTICE_INSTALL}, or use the exact backend") from None
    return dcrf


def lattice_available() -> bool:
    """Whether ``pydensecrf2`` imports here."""
    try:
        require_pydensecrf()
    except ImportError:
        return False
    return True


def mean_row_sum(features: torch.Tensor, sample: int = 1024, block: int = 128) -> float:
    """``mean_i sum_j exp(-|f_i - f_j|^2 / 2)`` over ``features (N, D)``: exact when
    ``N <= sample``, else over ``sample`` rows drawn once with a fixed seed (O(sample N D),
    not O(N^2)); a row sum varies smoothly over the image, so the mean of 1024 is within a few
    parts per thousand of the whole one."""
    features = features.float()
    n = features.shape[0]
    rows = features
    if n > sample:
        rows = features[torch.randperm(n, generator=torch.Generator().manual_seed(0))[:sample].to(features.device)]
    total = sum(float(torch.exp(-0.5 * torch.cdist(part, features) ** 2).sum()) for part in rows.split(block))
    return total / rows.shape[0]


class LatticeCRF:
    """Mean field over ``height x width`` pixels with Potts kernels given as
    ``(features (N, D), weight)`` pairs, run by ``pydensecrf2``; the interface of
    ``crf.DenseCRF.mean_field``. ``normalize``: symmetric normalisation, else the raw Gaussians
    (see the module docstring for both)."""

    def __init__(self, height: int, width: int, kernels: Sequence[Tuple[torch.Tensor, float]],
                 normalize: bool, iterations: int):
        self.dcrf = require_pydensecrf()
        self.height, self.width, self.iterations = height, width, iterations
        self.normalization = self.dcrf.NORMALIZE_SYMMETRIC if normalize else self.dcrf.NO_NORMALIZATION
        self.kernels: List[Tuple[np.ndarray, float]] = []
        for features, weight in kernels:
            if features.shape[0] != height * width:
                raise ValueError(f"kernel features must be ({height * width}, D), got {tuple(features.shape)}")
            # Krähenbühl's NO_NORMALIZATION divides by the mean row sum: multiply it back
            compat = weight if normalize else weight * mean_row_sum(features)
            self.kernels.append((np.ascontiguousarray(features.detach().cpu().numpy().T, dtype=np.float32),
                                 float(compat)))

    def mean_field(self, unary: torch.Tensor, iterations: Optional[int] = None,
                   energies: Optional[list] = None) -> torch.Tensor:
        """Unary energies ``(L, H, W)`` (``-log P``) -> marginals ``Q (L, H, W)`` (float32, on
        ``unary``'s device) after ``iterations`` parallel updates from ``softmax(-unary)``."""
        if energies is not None:
            raise ValueError("free energies are computed by the exact CRF backend only (backend='exact')")
        if unary.ndim != 3 or tuple(unary.shape[1:]) != (self.height, self.width):
            raise ValueError(f"unary energies must be (L,{self.height},{self.width}), got {tuple(unary.shape)}")
        if not torch.isfinite(unary).all():
            raise ValueError("unary energies contain NaN or inf")
        labels = unary.shape[0]
        crf = self.dcrf.DenseCRF(self.height * self.width, labels)
        crf.setUnaryEnergy(np.ascontiguousarray(unary.detach().reshape(labels, -1).cpu().numpy(), dtype=np.float32))
        for features, compat in self.kernels:
            crf.addPairwiseEnergy(features, compat=compat, kernel=self.dcrf.DIAG_KERNEL,
                                  normalization=self.normalization)
        q = np.array(crf.inference(self.iterations if iterations is None else iterations), dtype=np.float32)
        return torch.from_numpy(q).reshape(labels, self.height, self.width).to(unary.device)
