"""Training the people experiment's learned baseline: FCN-8s as a person / background segmenter
(``ris_lite.model.people_segmenter``) on the stand-in's training scenes.

Explained in the book chapter ``book/11_people``.

Its budget is one curriculum stage of the people RIS (``stage_max_steps`` steps of ``batch_size``
scenes; ``people_config.json``: 800 x 8) with RIS's optimiser settings (Adam, lr 2e-3, gradient
norm clipped at 5) and augmentation (a left-right flip). The loss is the per-pixel binary cross
entropy of "person" against the union of the true masks.
"""

from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F

from ..data.people import FlipLeftRight
from ..model.people_segmenter import PersonSegmenter
from ..model.ris import RISConfig


def train_person_segmenter(config: RISConfig, dataset, steps: int = 800, batch_size: int = 8, lr: float = 2e-3,
                           clip: float = 5.0, seed: int = 0) -> Tuple[PersonSegmenter, List[float]]:
    """A :class:`~ris_lite.model.people_segmenter.PersonSegmenter` with the FCN-8s of ``config``, trained ``steps`` steps on
    batches of ``batch_size`` items ``(image (3, H, W), masks (n, H, W))`` of ``dataset`` drawn
    at random with replacement. ``seed`` fixes the initial weights, the batches and the flips,
    and nothing outside (the global RNG is left as it was). Returns the model, in eval mode,
    and each step's loss."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PersonSegmenter(config)
    generator = torch.Generator().manual_seed(seed)
    flip = FlipLeftRight(generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(dataset), (batch_size,), generator=generator).tolist()
        pairs = [flip(*dataset[i]) for i in idx]
        images = torch.stack([image for image, _ in pairs])
        # the union of the instances, (B, H, W): a scene with nobody in it is all background
        targets = torch.stack([masks.any(0) if len(masks) else torch.zeros(image.shape[1:], dtype=torch.bool)
                               for image, masks in pairs]).float()
        loss = F.binary_cross_entropy_with_logits(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses
