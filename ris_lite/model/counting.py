"""Ours, not the paper's: what RIS has already emitted, given to its memory and to its stop score.

Explained in the book chapter ``book/12_beyond`` (section "A model that counts").

The paper's RIS must remember in its ConvLSTM state which leaves it has painted, and its stop
score sees only a max-pool of that state. Measured here, the shipped model does neither well:
a quarter of its steps repeat a leaf, and it stops at 17-18 whatever the plant. After Ren &
Zemel (CVPR 2017), two zero-initialised additions (a model built with them starts as the
paper's, so they can also be added to a trained model):

* ``union_input``: the running maximum ``U_t = max_{s<t} m_s`` of the masks already emitted
  (at the feature grid, **detached**: the model's own predictions, no gradient through them)
  enters the first ConvLSTM layer's gates through a 3x3 convolution;
* ``score_sees_union``: the stop score adds a linear term over four statistics of where the
  current mask lies against that union (``score_statistics``), so "this step only repeats
  what is done" and "nothing is left uncovered" become visible to the stop.

Both read ``U_t`` of the steps before ``t``: step 1 sees an empty union.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-6


class UnionInput(nn.Module):
    """``union (B, h', w')`` in [0, 1] -> extra gate pre-activations ``(B, 4*d, h', w')`` of the
    first ConvLSTM layer; zero-initialised, so a new model starts as the paper's."""

    def __init__(self, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4 * hidden_channels, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.zeros_(self.conv.weight)

    def forward(self, union: torch.Tensor) -> torch.Tensor:
        return self.conv(union.unsqueeze(1).to(self.conv.weight.dtype))


def score_statistics(h: torch.Tensor, mask: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """What the stop score sees beside the paper's max-pooled state, ``(B, d + 3)``:

    * ``max_{pixels} h * (1 - U)`` (d values): the state's strongest response where nothing
      has been emitted yet;
    * the share of the current mask's mass on new pixels, ``<m, 1 - U> / |m|_1``: near 0 for a
      step that repeats a leaf;
    * ``ln(1 + |m|_1)``: the mask's size, in grid cells;
    * the share of the grid already covered, ``mean(U)``.

    ``h (B, d, h', w')``; ``mask``, ``union (B, h', w')`` at the same grid, treated as data (no
    gradient flows back into the masks from the score).
    """
    mask, union = mask.detach().float(), union.detach().float()
    free = (h.float() * (1 - union).unsqueeze(1)).amax(dim=(2, 3))
    mass = mask.sum((1, 2))
    new_share = (mask * (1 - union)).sum((1, 2)) / (mass + EPS)
    return torch.cat([free, new_share[:, None], torch.log1p(mass)[:, None], union.mean((1, 2))[:, None]], 1)


class UnionScore(nn.Module):
    """``score_statistics -> (B,)`` logit added to the paper's score logit; zero-initialised."""

    def __init__(self, hidden_channels: int):
        super().__init__()
        self.linear = nn.Linear(hidden_channels + 3, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
        stats = score_statistics(h, mask, union).to(self.linear.weight.dtype)
        return self.linear(stats).squeeze(1)
