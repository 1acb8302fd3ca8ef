"""The two Gaussian kernels of the dense CRF: exact over all pixel pairs, and separable.

Explained in the book chapter ``book/09_crf`` (the model that uses them: ``ris_lite.model.crf``).
Both return ``sum_j k(i, j) Q_j`` for every pixel ``i``, itself included.
"""

from __future__ import annotations

import torch

from ..precision import native_bf16


def fast_bfloat16(device: torch.device) -> bool:
    """Whether a bfloat16 kernel is faster here: where bf16 runs natively, by the rule of
    ``--precision auto`` (``ris_lite.precision.native_bf16``: a GPU of compute capability 8 or
    more, a CPU with native bf16); emulated bf16 is slower than fp32."""
    return native_bf16(device)


def pixel_features(image: torch.Tensor):
    """``image (C, H, W)`` -> ``(position (N, 2), colour (N, C))`` float32, pixels in raster
    order, position as (row, column) in pixels: what the kernels' features are made of."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=torch.float32),
                            torch.arange(width, device=image.device, dtype=torch.float32), indexing="ij")
    return torch.stack([ys, xs], -1).reshape(-1, 2), image.float().permute(1, 2, 0).reshape(-1, image.shape[0])


class DenseGaussian:
    """The exact Gaussian kernel ``exp(-|f_i - f_j|^2 / 2)`` over all pairs of N feature
    vectors ``features (N, D)`` (already divided by their widths), optionally normalised
    symmetrically. ``apply(Q (N, L)) -> (N, L)``."""

    block_rows = 256

    def __init__(self, features: torch.Tensor, normalize: bool, max_bytes: int = 2 ** 30,
                 dtype: torch.dtype = torch.float32):
        self.features = features.float()
        self.half_sq = -0.5 * (self.features ** 2).sum(1)
        n = features.shape[0]
        self.dtype = dtype
        itemsize = torch.tensor([], dtype=dtype).element_size()
        self.matrix = (torch.empty(n, n, dtype=dtype, device=features.device)
                       if n * n * itemsize <= max_bytes else None)
        row_sums = torch.empty(n, device=features.device)
        for s in range(0, n, self.block_rows):
            block = self._block(s, s + self.block_rows)
            row_sums[s:s + self.block_rows] = block.sum(1)
            if self.matrix is not None:
                self.matrix[s:s + self.block_rows] = block
        self.scale = row_sums.rsqrt() if normalize else None

    def _block(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the kernel matrix, float32."""
        f = self.features
        log_k = torch.addmm(self.half_sq[None], f[start:stop], f.T)  # f_i.f_j - |f_j|^2/2
        log_k.add_(self.half_sq[start:stop, None])
        # exp(-30) ~ 1e-13 is nothing next to a row sum >= 1; cutting there keeps denormal
        # floats (100x slower on CPUs) out of the kernel and out of the products with it
        negligible = log_k < -30.0
        return log_k.clamp_(-30.0, 0.0).exp_().masked_fill_(negligible, 0.0)

    def apply(self, q: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            q = q * self.scale[:, None]
        if self.matrix is not None:
            out = (self.matrix @ q.to(self.dtype)).float()
        else:
            out = torch.cat([self._block(s, s + self.block_rows) @ q
                             for s in range(0, q.shape[0], self.block_rows)])
        return out * self.scale[:, None] if self.scale is not None else out


class SeparableGaussian:
    """The exact position-only kernel ``exp(-|p_i - p_j|^2 / 2 theta^2)`` on an H x W grid,
    applied as a product of a row kernel ``(H, H)`` and a column kernel ``(W, W)``."""

    def __init__(self, height: int, width: int, theta: float, normalize: bool, device=None):
        def axis(n):
            x = torch.arange(n, dtype=torch.float32, device=device)
            return torch.exp(-((x[:, None] - x[None]) ** 2) / (2 * theta ** 2))

        self.rows, self.cols = axis(height), axis(width)
        self.shape = (height, width)
        self.scale = None
        if normalize:
            self.scale = torch.outer(self.rows.sum(1), self.cols.sum(1)).rsqrt().reshape(-1)

    def apply(self, q: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            q = q * self.scale[:, None]
        grid = q.reshape(*self.shape, -1)
        out = torch.einsum("ab,bwl,cw->acl", self.rows, grid, self.cols).reshape(q.shape)
        return out * self.scale[:, None] if self.scale is not None else out
