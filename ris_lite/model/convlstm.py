"""Convolutional LSTM, eq. (1) of the paper.

Explained in the book chapter ``book/03_convlstm``.

:class:`ConvLSTMCell` computes the four gates with ONE convolution over ``[x, h]`` (fast);
:class:`ConvLSTMCellEq1` writes eq. (1) literally with eight convolutions (readable, slow).
:meth:`ConvLSTMCellEq1.load_from_fused` copies weights across so tests can prove them equal.
Gate order everywhere: input i, forget f, output o, candidate g.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

State = Tuple[torch.Tensor, torch.Tensor]
GATES = ("i", "f", "o", "g")


def _init_lstm(weights: Sequence[torch.Tensor], init_range: float) -> None:
    for w in weights:
        nn.init.uniform_(w, -init_range, init_range)


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer. ``forward(x (B,Cin,H,W), (h, c) each (B,Ch,H,W)) -> (h, c)``.

    Args:
        in_channels, hidden_channels: channels of x and of h / c.
        kernel_size: odd gate kernel (3 for plants, 1 for people in the paper).
        gate_bias: initial biases of (i, f, o, g); the paper sets only f to 1, the authors'
            plant code sets i, f and o to 1.
        init_range: weights start U(-r, r), r = 0.08 in the paper.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 gate_bias: Sequence[float] = (0.0, 1.0, 0.0, 0.0), init_range: float = 0.08):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        self.in_channels, self.hidden_channels, self.kernel_size = in_channels, hidden_channels, kernel_size
        self.conv = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                              padding=kernel_size // 2)
        _init_lstm([self.conv.weight], init_range)
        with torch.no_grad():
            self.conv.bias.copy_(torch.tensor(gate_bias, dtype=torch.float32).repeat_interleave(hidden_channels))

    def init_state(self, x: torch.Tensor) -> State:
        """Zero ``(h, c)`` matching x's batch, size, device and dtype."""
        z = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        return z, z.clone()

    def project_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input half of the gate pre-activations, ``(B, 4*Ch, H, W)``, bias included.

        When x is the same at every step (the first layer reads the fixed FCN features)
        this is computed once per sequence instead of once per step.
        """
        w = self.conv.weight[:, : self.in_channels]
        return F.conv2d(x, w, self.conv.bias, padding=self.kernel_size // 2)

    def step(self, x_proj: torch.Tensor, state: State) -> State:
        """One update from a precomputed :meth:`project_input`."""
        h, c = state
        w = self.conv.weight[:, self.in_channels:]
        return self._update(x_proj + F.conv2d(h, w, padding=self.kernel_size // 2), c)

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvLSTMCell expects x (B,{self.in_channels},H,W), got {tuple(x.shape)}")
        h, c = self.init_state(x) if state is None else state
        return self._update(self.conv(torch.cat([x, h], dim=1)), c)

    def _update(self, gates: torch.Tensor, c: torch.Tensor) -> State:
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def gates(self, x: torch.Tensor, state: State) -> dict:
        """The activated gates ``{'i','f','o','g'}`` for figures, each ``(B, Ch, H, W)``."""
        pre = self.conv(torch.cat([x, state[0]], dim=1)).chunk(4, dim=1)
        act = (torch.sigmoid, torch.sigmoid, torch.sigmoid, torch.tanh)
        return {k: a(p) for k, a, p in zip(GATES, act, pre)}


class ConvLSTMCellEq1(nn.Module):
    """Eq. (1) line by line: eight convolutions ``w_x*`` / ``w_h*`` and four biases ``b_*``."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3,
                 gate_bias: Sequence[float] = (0.0, 1.0, 0.0, 0.0), init_range: float = 0.08):
        super().__init__()
        self.hidden_channels, self.pad = hidden_channels, kernel_size // 2
        conv = lambda cin: nn.Conv2d(cin, hidden_channels, kernel_size, padding=self.pad, bias=False)
        self.wx = nn.ModuleDict({k: conv(in_channels) for k in GATES})
        self.wh = nn.ModuleDict({k: conv(hidden_channels) for k in GATES})
        self.b = nn.ParameterDict({k: nn.Parameter(torch.full((hidden_channels, 1, 1), float(v)))
                                   for k, v in zip(GATES, gate_bias)})
        _init_lstm([m.weight for m in [*self.wx.values(), *self.wh.values()]], init_range)

    def forward(self, x: torch.Tensor, state: Optional[State] = None) -> State:
        if state is None:
            z = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
            state = (z, z.clone())
        h_prev, c_prev = state
        i = torch.sigmoid(self.wx["i"](x) + self.wh["i"](h_prev) + self.b["i"])
        f = torch.sigmoid(self.wx["f"](x) + self.wh["f"](h_prev) + self.b["f"])
        o = torch.sigmoid(self.wx["o"](x) + self.wh["o"](h_prev) + self.b["o"])
        g = torch.tanh(self.wx["g"](x) + self.wh["g"](h_prev) + self.b["g"])
        c = f * c_prev + i * g
        h = o * torch.tanh(c)
        return h, c

    @torch.no_grad()
    def load_from_fused(self, fused: ConvLSTMCell) -> ConvLSTMCellEq1:
        """Copy a :class:`ConvLSTMCell`'s weights into the eight-convolution form."""
        cin = fused.in_channels
        w = fused.conv.weight.chunk(4, dim=0)
        b = fused.conv.bias.chunk(4, dim=0)
        for k, wk, bk in zip(GATES, w, b):
            self.wx[k].weight.copy_(wk[:, :cin])
            self.wh[k].weight.copy_(wk[:, cin:])
            self.b[k].copy_(bk.view(-1, 1, 1))
        return self


class ConvLSTM(nn.Module):
    """A stack of ConvLSTM cells fed the SAME input at every step (the FCN features).

    ``forward(x (B,Cin,H,W), steps) -> list of top-layer h_t (B,Ch,H,W)``; with
    ``return_all=True`` also every layer's ``(h_t, c_t)`` per step.
    """

    def __init__(self, in_channels: int, hidden_channels: int, n_layers: int = 2,
                 kernel_size: int = 3, gate_bias: Sequence[float] = (0.0, 1.0, 0.0, 0.0),
                 init_range: float = 0.08, cell: type = ConvLSTMCell):
        super().__init__()
        self.cells = nn.ModuleList(
            cell(in_channels if k == 0 else hidden_channels, hidden_channels, kernel_size, gate_bias, init_range)
            for k in range(n_layers))

    def init_states(self, x: torch.Tensor) -> List[State]:
        """Zero ``(h, c)`` for every layer, matching x's batch, size, device and dtype."""
        z = x.new_zeros(x.shape[0], self.cells[0].hidden_channels, *x.shape[2:])
        return [(z, z) for _ in self.cells]

    def step(self, x: torch.Tensor, states: List[State],
             first_proj: Optional[torch.Tensor] = None) -> List[State]:
        """One time step of the whole stack; returns the new ``(h, c)`` of every layer.

        ``first_proj`` replaces layer 0's input projection (``cells[0].project_input(x)``,
        possibly plus extra pre-activations such as RIS's mask feedback); fused cells only.
        """
        new, inp = [], x
        for k, cell in enumerate(self.cells):
            if k == 0 and first_proj is not None:
                if not isinstance(cell, ConvLSTMCell):
                    raise TypeError("first_proj needs fused ConvLSTMCell layers")
                state = cell.step(first_proj, states[0])
            else:
                state = cell(inp, states[k])
            new.append(state)
            inp = state[0]
        return new

    def step_from_zero(self, x: torch.Tensor) -> List[State]:
        """:meth:`step` from the zero state, as a canvas model runs every step.

        With ``h = 0`` the recurrent half of each gate convolution is zero, so fused cells skip
        it: the same result as ``step(x, init_states(x))`` for half the arithmetic.
        """
        new, inp = [], x
        for cell in self.cells:
            if isinstance(cell, ConvLSTMCell):
                zero = inp.new_zeros(inp.shape[0], cell.hidden_channels, *inp.shape[2:])
                state = cell._update(cell.project_input(inp), zero)
            else:
                state = cell(inp, None)
            new.append(state)
            inp = state[0]
        return new

    def forward(self, x: torch.Tensor, steps: int, return_all: bool = False):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        fused = isinstance(self.cells[0], ConvLSTMCell)
        # The input never changes, so layer 0's half of the gate convolution is done once.
        first_proj = self.cells[0].project_input(x) if fused else None
        states = self.init_states(x)
        tops, history = [], []
        for _ in range(steps):
            states = self.step(x, states, first_proj)
            tops.append(states[-1][0])
            if return_all:
                history.append(list(states))
        return (tops, history) if return_all else tops
