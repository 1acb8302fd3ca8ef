"""Ours: the discriminative loss of De Brabandere, Neven & Van Gool (2017) for the embedding
model (``ris_lite.model.embedding``), plus a foreground cross-entropy.

Explained in the book chapter ``book/13_where_ris_stands`` (section "From RIS to DETR").

For one image with C instances S_c, pixel embeddings x_i and means mu_c (the paper's eq. 1-4):

* pull  ``L_var  = 1/C sum_c 1/|S_c| sum_{i in S_c} [ ||mu_c - x_i|| - delta_v ]_+^2``
* push  ``L_dist = 1/(C(C-1)) sum_{c != c'} [ 2 delta_d - ||mu_c - mu_c'|| ]_+^2``
* small ``L_reg  = 1/C sum_c ||mu_c||``

``L = var_weight L_var + dist_weight L_dist + reg_weight L_reg``, the paper's margins and
weights (delta_v 0.5, delta_d 1.5; 1, 1, 0.001) from the model's ``EmbeddingConfig``. The
background's embeddings are free: a foreground head (a per-pixel logit) learns with the mean
binary cross-entropy against the union of the instances, weight 1 (ours). Like ``ris_loss``,
the batch's loss is the sum over its images divided by B.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: inside the square roots: the gradient of ||x|| at x = 0 is otherwise NaN
NORM_EPS = 1e-8


def _norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    return (x.pow(2).sum(dim) + NORM_EPS).sqrt()


def discriminative_loss(embeddings: torch.Tensor, targets: torch.Tensor, counts, delta_v: float = 0.5,
                        delta_d: float = 1.5, weights=(1.0, 1.0, 0.001), return_parts: bool = False):
    """The module docstring's ``L``, summed over images and divided by B.

    Args:
        embeddings: ``(B, E, H, W)`` pixel embeddings.
        targets: ``(B, N, H, W)`` bool, instances of image i in ``targets[i, :counts[i]]``
            (disjoint; an image without instances adds 0).
        counts: ``(B,)`` int.
        weights: of the pull, push and regulariser terms.
        return_parts: also return ``{"var", "dist", "reg"}``, each term's batch mean (detached).
    """
    if embeddings.ndim != 4 or targets.ndim != 4 or targets.shape[0] != embeddings.shape[0] \
            or targets.shape[2:] != embeddings.shape[2:]:
        raise ValueError(f"embeddings must be (B,E,H,W) and targets (B,N,H,W) of the same B, H, W, got "
                         f"{tuple(embeddings.shape)} and {tuple(targets.shape)}")
    B, N = targets.shape[:2]
    counts = torch.as_tensor(counts).to(embeddings.device)
    if counts.shape != (B,) or counts.is_floating_point() or int(counts.max()) > N:
        raise ValueError(f"counts must be (B,)=({B},) ints <= N={N}, got {counts.tolist()}")
    x = embeddings.flatten(2)  # (B, E, P)
    valid = (torch.arange(N, device=x.device)[None] < counts[:, None]).to(x.dtype)  # (B, N)
    y = targets.flatten(2).to(x.dtype) * valid[..., None]  # (B, N, P)
    size = y.sum(-1)  # (B, N)
    mu = torch.bmm(y, x.transpose(1, 2)) / size.clamp(min=1)[..., None]  # (B, N, E)
    own = torch.bmm(mu.transpose(1, 2), y)  # (B, E, P): each instance pixel's own mean
    pull = F.relu(_norm(x - own, 1) - delta_v).pow(2)  # (B, P); only instance pixels are kept below
    present = valid * (size > 0).to(x.dtype)  # an instance with no pixel has no mean
    C = present.sum(1)  # (B,)
    per_instance = torch.bmm(y, pull[..., None]).squeeze(-1) / size.clamp(min=1)  # (B, N)
    var = (per_instance * present).sum(1) / C.clamp(min=1)
    gap = _norm(mu[:, :, None] - mu[:, None], -1)  # (B, N, N)
    pairs = present[:, :, None] * present[:, None] * (1 - torch.eye(N, device=x.device, dtype=x.dtype))
    dist = (F.relu(2 * delta_d - gap).pow(2) * pairs).sum((1, 2)) / (C * (C - 1)).clamp(min=1)
    reg = (_norm(mu, -1) * present).sum(1) / C.clamp(min=1)
    w_var, w_dist, w_reg = weights
    loss = (w_var * var + w_dist * dist + w_reg * reg).sum() / B
    if not return_parts:
        return loss
    return loss, {"var": float(var.detach().mean()), "dist": float(dist.detach().mean()),
                  "reg": float(reg.detach().mean())}


def nearest_mean_iou(embeddings: torch.Tensor, foreground: torch.Tensor, targets: torch.Tensor, counts) -> float:
    """What the log's ``iou`` column shows for an embedding model (cheap, detached): each
    foreground pixel (``foreground (B, H, W)`` bool) goes to the instance whose TRUE mean
    embedding is nearest, and this is the mean IoU of those segments with the instances.
    (Clustering finds the means itself; this scores the embeddings, not the clustering.)"""
    ious = []
    for e, f, t, n in zip(embeddings.detach().float(), foreground, targets, counts):
        n = int(n)
        t = t[:n].flatten(1)  # (n, P)
        if n == 0 or not bool(t.any(1).all()):
            continue
        x = e.flatten(1)  # (E, P)
        mu = (t.to(x.dtype) @ x.T) / t.sum(1, keepdim=True)  # (n, E)
        nearest = torch.cdist(x.T, mu).argmin(1)  # (P,)
        pred = (nearest[None] == torch.arange(n, device=x.device)[:, None]) & f.flatten()[None]
        inter, union = (pred & t).sum(1), (pred | t).sum(1)
        ious.append((inter / union.clamp(min=1)).mean())
    return float(torch.stack(ious).mean()) if ious else 0.0


def embedding_loss(embeddings: torch.Tensor, fg_logits: torch.Tensor, targets: torch.Tensor, counts, config,
                   return_parts: bool = False):
    """The embedding model's training loss: :func:`discriminative_loss` with ``config``'s
    (``EmbeddingConfig``) margins and weights, plus the mean BCE of ``fg_logits (B, H, W)``
    against the union of the instances; summed over images, divided by B. ``return_parts``
    adds the terms, the foreground loss and ``iou`` (:func:`nearest_mean_iou`)."""
    B, N = targets.shape[:2]
    counts_t = torch.as_tensor(counts)
    valid = torch.arange(N)[None] < counts_t.cpu()[:, None]
    fg_target = (targets & valid.to(targets.device)[..., None, None]).any(1)
    if fg_logits.shape != fg_target.shape:
        raise ValueError(f"fg_logits must be (B,H,W)={tuple(fg_target.shape)}, got {tuple(fg_logits.shape)}")
    weights = (config.var_weight, config.dist_weight, config.reg_weight)
    disc = discriminative_loss(embeddings, targets, counts_t, config.delta_v, config.delta_d, weights, return_parts)
    fg_loss = F.binary_cross_entropy_with_logits(fg_logits, fg_target.to(fg_logits.dtype), reduction="none")
    fg_loss = fg_loss.flatten(1).mean(1).sum() / B
    if not return_parts:
        return disc + fg_loss
    loss, parts = disc
    parts.update(fg_loss=float(fg_loss.detach()),
                 iou=nearest_mean_iou(embeddings, fg_logits.detach() > 0, targets, counts_t))
    return loss + fg_loss, parts
