"""Teacher-forced canvas training and scheduled sampling (ours, after Ren & Zemel 2017).

Explained in the book chapter ``book/12_beyond``.

A canvas model (``RISConfig(canvas=True)``) sees the image plus a canvas of what is already
segmented and answers one question per step: "segment one more leaf; is there one left?".
Training therefore needs ONE step per sample instead of a 22-step unroll:

1. draw ``k`` uniformly from ``0..n`` and a random set of ``k`` ground-truth leaves: the
   *done* leaves; their union is the canvas (teacher forcing);
2. with probability ``p(step)`` (scheduled sampling) the canvas is instead the model's own,
   from a gradient-free rollout of ``k`` steps, and a leaf counts as done when the canvas
   covers at least half of it;
3. the loss is eq. (5) with T = 1 over the leaves not done: the mask is scored against the
   remaining leaf it overlaps best, the score is told "1" if any leaf remains, else "0".

A canvas model with memory (``canvas_memory=True``) keeps RIS's recurrence and unrolls whole
sequences instead (:func:`sequence_canvas_loss`): step t's mask is matched greedily to the free
ground-truth leaf it overlaps best, and that leaf -- or, under scheduled sampling, the model's
own thresholded mask -- joins the canvas of step t + 1.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .loss import EPS, ris_loss


def sampling_probability(step: int, total_steps: int, final: float, start: float = 0.3) -> float:
    """Chance of training on the model's own canvas at ``step``: 0 until ``start * total_steps``,
    then a linear ramp to ``final`` at ``total_steps`` (and ``final`` after it)."""
    if not 0.0 <= final <= 1.0 or not 0.0 <= start < 1.0:
        raise ValueError(f"need 0 <= final <= 1 and 0 <= start < 1, got final={final}, start={start}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    ramp = (step / total_steps - start) / (1.0 - start)
    return final * min(max(ramp, 0.0), 1.0)


def split_done(targets: torch.Tensor, counts: torch.Tensor, generator: Optional[torch.Generator] = None,
               done: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher forcing: mark a random subset of each image's leaves as already segmented.

    Args:
        targets: ``(B, N, H, W)`` bool, leaves of image i in ``targets[i, :counts[i]]``.
        counts: ``(B,)`` int.
        done: optional ``(B, N)`` bool choosing the done leaves (else drawn: k uniform in 0..n,
            then a uniformly random k-subset).
    Returns:
        canvas ``(B, 1, H, W)`` float (union of the done leaves), the remaining leaves
        ``(B, N, H, W)`` bool packed to the front, and their counts ``(B,)``.
    """
    B, N = targets.shape[:2]
    valid = torch.arange(N).unsqueeze(0) < counts.cpu().unsqueeze(1)
    if done is None:
        k = (torch.rand(B, generator=generator) * (counts.cpu() + 1).float()).long()  # 0..n
        rank = torch.rand(B, N, generator=generator).masked_fill(~valid, 2.0).argsort(1).argsort(1)
        done = rank < k.unsqueeze(1)
    done = done.cpu() & valid
    # built on the CPU (the generator lives there); moved next to the targets for the masking
    return _canvas_and_rest(targets, valid.to(targets.device), done.to(targets.device))


def remaining_after(canvas: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor,
                    cover: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a canvas the model made itself: a leaf is done when ``canvas`` covers at least
    ``cover`` of its pixels. Returns ``(canvas, remaining (B,N,H,W), counts (B,))`` like
    :func:`split_done` (the canvas is passed through)."""
    B, N = targets.shape[:2]
    valid = (torch.arange(N).unsqueeze(0) < counts.cpu().unsqueeze(1)).to(targets.device)
    t = targets.flatten(2).float()
    covered = (t * (canvas.flatten(1).unsqueeze(1) > 0.5)).sum(-1) / t.sum(-1).clamp(min=1)
    _, rest, n_rest = _canvas_and_rest(targets, valid, (covered >= cover) & valid)
    return canvas, rest, n_rest


def _canvas_and_rest(targets, valid, done):
    canvas = (targets & done[..., None, None]).any(1, keepdim=True).float()
    keep = valid & ~done
    order = (~keep).float().argsort(dim=1, stable=True)  # remaining leaves first, in their order
    rest = torch.gather(targets, 1, order[..., None, None].expand_as(targets))
    n_rest = keep.sum(1)
    rest = rest & (torch.arange(targets.shape[1], device=targets.device)[None] < n_rest[:, None])[..., None, None]
    return canvas, rest, n_rest.cpu()


@torch.no_grad()
def rollout_canvas(model, images: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The canvas a single-step canvas model builds itself after ``steps[i]`` steps on image i,
    ``(B, 1, H, W)``; no gradients (the canvas is an input, as in Ren & Zemel). Every step
    starts from a fresh state, as those models run."""
    B, _, H, W = images.shape
    canvas = images.new_zeros(B, 1, H, W)
    for t in range(int(steps.max()) if len(steps) else 0):
        m, _ = model.canvas_step(images, canvas)
        if m.shape[-2:] != (H, W):
            m = torch.nn.functional.interpolate(m.unsqueeze(1), size=(H, W), mode="bilinear",
                                                align_corners=False).squeeze(1)
        active = (t < steps.to(images.device)).view(B, 1, 1, 1)
        canvas = torch.where(active, torch.maximum(canvas, (m > 0.5).float().unsqueeze(1)), canvas)
    return canvas


def canvas_loss(model, images: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor,
                own_canvas: Optional[torch.Tensor] = None, lam: float = 1.0,
                generator: Optional[torch.Generator] = None, return_parts: bool = False):
    """Eq. (5) for one canvas step per image (see the module docstring).

    ``own_canvas`` ``(B,)`` bool picks the images whose canvas comes from the model's own
    rollout (scheduled sampling); the others get a ground-truth canvas.
    """
    canvas, rest, n_rest = split_done(targets, counts, generator)
    if own_canvas is not None and bool(own_canvas.any()):
        sel = own_canvas.nonzero().squeeze(1)
        k = counts.cpu()[sel] - n_rest[sel]  # same number of done steps as the teacher draw
        own = rollout_canvas(model, images[sel], k)
        _, own_rest, own_n = remaining_after(own, targets[sel], counts[sel])
        canvas, rest, n_rest = canvas.clone(), rest.clone(), n_rest.clone()
        canvas[sel], rest[sel], n_rest[sel] = own, own_rest, own_n
    masks, logits = model.canvas_step(images, canvas, score_logits=True)
    if masks.shape[-2:] != rest.shape[-2:]:
        raise ValueError(f"canvas training needs masks at the target size, got {tuple(masks.shape)}")
    return ris_loss(masks.unsqueeze(1).float(), logits.unsqueeze(1).float(), rest, n_rest, lam,
                    lengths=torch.ones_like(n_rest), scores_are_logits=True, return_parts=return_parts)


def sequence_canvas_loss(model, images: torch.Tensor, targets: torch.Tensor, counts: torch.Tensor,
                         lengths: torch.Tensor, own_canvas: Optional[torch.Tensor] = None,
                         lam: float = 1.0, return_parts: bool = False):
    """Eq. (5) for a canvas model with memory, unrolled ``max(lengths)`` steps.

    The matching is greedy and made while unrolling (the canvas of step t + 1 must know which
    leaf step t took): step t takes the free leaf of highest soft IoU. Image i's canvas grows by
    that ground-truth leaf (teacher forcing) or, where ``own_canvas[i]``, by the model's own
    mask > 0.5 (scheduled sampling). No gradient flows through the canvas or the choice.
    Shapes as in :func:`ris_lite.training.loss.ris_loss`; ``lengths (B,)`` as the curriculum's min(L, n + 2).
    """
    B, N, H, W = targets.shape
    dev = images.device
    counts_d, lengths_d = counts.to(dev), lengths.to(dev)
    own = torch.zeros(B, dtype=torch.bool, device=dev) if own_canvas is None else own_canvas.to(dev)
    used = torch.arange(N, device=dev)[None] >= counts_d[:, None]  # padding counts as used
    flat = targets.flatten(2).float()
    canvas = images.new_zeros(B, 1, H, W)
    rows = torch.arange(B, device=dev)
    states, logits, matched = None, [], []
    for t in range(int(lengths.max())):
        mask, z, st = model.canvas_step(images, canvas, score_logits=True, return_stages=True, states=states)
        states = st["states"]
        logits.append(z.float())
        p = mask.float().flatten(1)
        inter = torch.einsum("bp,bnp->bn", p, flat)
        iou = inter / (p.sum(1, keepdim=True) + flat.sum(2) - inter + EPS)  # (B, N)
        pick = iou.detach().masked_fill(used, -1.0).argmax(1)
        active = (t < counts_d) & (t < lengths_d)
        matched.append(iou[rows, pick] * active)
        used[rows, pick] |= active
        leaf = targets[rows, pick] & active[:, None, None]
        new = torch.where(own[:, None, None], mask.detach() > 0.5, leaf)
        canvas = torch.maximum(canvas, new.unsqueeze(1).to(canvas.dtype))
    matched = torch.stack(matched, 1)  # (B, T)
    logits = torch.stack(logits, 1)
    T = logits.shape[1]
    steps = torch.arange(T, device=dev)[None]
    score_target = (steps < counts_d[:, None]).float()
    valid = (steps < lengths_d[:, None]).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, score_target, reduction="none")
    mask_loss, score_loss = -matched.sum(), (bce * valid).sum()
    loss = (mask_loss + lam * score_loss) / B
    if not return_parts:
        return loss
    n = int(torch.minimum(counts_d, lengths_d).sum())
    return loss, {"iou": float(matched.detach().sum()) / max(n, 1), "mask_loss": float(mask_loss.detach()) / B,
                  "score_loss": float(score_loss.detach()) / B}
