"""Diagonal BiLSTM step path: the forward stream per sub-pixel, the reverse stream per finished row.

Step graph (one sub-pixel, every layer):
  cache_0 (B, 1, 4, W+6, C)     the 7x7 Mask-A input conv's rows
  cache_1 (B, n, 1, W, 2h)      each layer's input on the current row (read by the row graph)
  cache_2 (B, n, 2, W+2, 2s)    forward stream [h, c] of the previous and current row, 1 zero column each side
  rev     (B, n, W, s)          reverse stream h of the previous row (zeros before row 1), a per-row state
Layer l at (i, j): gates = 1x1 masked input-to-state (x) + K^ss [h(i-1, j); h(i, j-1)], c from (i, j-1);
output x + project(h + rev[:, l, j]).

Row graph (once per finished row i, every layer): the reverse stream over row i, right to left:
gates(j) = input-to-state(x_l(i, j)) + K^ss [rev_h(i-1, j); h(i, j+1)], c from (i, j+1). Its output
replaces ``rev``; the step graph reads it for row i+1, which is the full path's shift down by one row.
Per-step cost is O(layers * state); the row graph's O(W) cost is paid once per row.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from pixelrt.bundle.graphs import row_graph, row_state, step_graph, step_schedule
from pixelrt.models.contract import StepModule
from pixelrt.models.layers import ConvWindowStack, RowCache, ring_states
from pixelrt.models.categorical import CategoricalStepHead
from pixelrt.models.lstm_layers import lstm_update, read_window
from pixelrt.models.pixelcnn import normalize

if TYPE_CHECKING:
    from pixelrt.models.diagbilstm import DiagBiLSTM


def _ss_weight(conv: nn.Conv1d) -> torch.Tensor:
    """(4s, s, 2) 2x1 kernel [upper, same row] -> (2s, 4s) acting on [h_upper, h_same_row]."""
    w = conv.weight.detach()
    return torch.cat([w[:, :, 0].t(), w[:, :, 1].t()], dim=0).contiguous()


def _stream_weights(module, streams) -> None:
    module.register_buffer("w_is", torch.stack([s.input_to_state.centre() for s in streams]))  # (n, 2h, 4s)
    module.register_buffer("b_is", torch.stack([s.input_to_state.bias.detach() for s in streams]))  # (n, 4s)
    module.register_buffer("w_ss", torch.stack([_ss_weight(s.state_to_state) for s in streams]))  # (n, 2s, 4s)


def diag_states(model: DiagBiLSTM, width: int) -> tuple:
    """cache_0..cache_2 (ring rows, the step graph's) and ``rev`` (the row graph's)."""
    cfg = model.config
    caches = [(model.input_conv.cache, 1), (RowCache(cfg.hidden, 1, 0), cfg.layers),
              (RowCache(2 * cfg.state, 2, 1), cfg.layers)]
    return (*ring_states(caches, width), row_state("rev", (cfg.layers, width, cfg.state)))


class DiagBiLSTMStep(StepModule):
    """One sub-pixel of a Diagonal BiLSTM; see the module docstring for the states."""

    def __init__(self, model: DiagBiLSTM, width: int):
        super().__init__()
        cfg = model.config
        self.levels, self.state = cfg.levels, cfg.state
        self.input_window = ConvWindowStack([model.input_conv])
        self.input_centre = model.input_conv.stepper()
        _stream_weights(self, [layer.forward_stream for layer in model.layers])
        self.projects = nn.ModuleList(layer.project.stepper() for layer in model.layers)
        self.head = CategoricalStepHead(model.head_hidden, model.head_out, cfg.channels, cfg.levels)
        self.register_buffer("left", torch.zeros(1, dtype=torch.long))
        self.register_buffer("here", torch.ones(1, dtype=torch.long))
        self.states = diag_states(model, width)
        self.graph = step_graph(cfg.channels, self.states)
        self.schedule = step_schedule(cfg.channels, row_graph="row")

    def forward(self, pixel, row, col, channel, force, noise, input_cache, row_inputs, fwd_states, rev):
        s = self.state
        x = self.input_centre(normalize(pixel, self.levels)) + self.input_window(input_cache, row, col)[0]  # (B, 2h)
        # Padded column col is j-1, col+1 is j; ring slot (row+1)%2 holds row i, row%2 holds row i-1.
        left = read_window(fwd_states, torch.remainder(row + 1, 2), col, self.left)[:, :, 0]  # (B, n, 2s)
        up = read_window(fwd_states, torch.remainder(row, 2), col, self.here)[:, :, 0, :s]  # (B, n, s)
        ss = torch.bmm(torch.cat([up, left[..., :s]], dim=2).transpose(0, 1), self.w_ss)  # (n, B, 4s)
        rev_here = rev.index_select(2, col.reshape(1)).squeeze(2)  # (B, n, s): reverse stream at (i-1, j)
        new_inputs, new_states = [], []
        for l, project in enumerate(self.projects):
            h, c = lstm_update(x @ self.w_is[l] + self.b_is[l] + ss[l], left[:, l, s:])
            new_inputs.append(x)
            new_states.append(torch.cat([h, c], dim=1))
            x = x + project(h + rev_here[:, l])
        value, logp, full = self.head(x, pixel, channel, force, noise)
        return (value, logp, normalize(full, self.levels).unsqueeze(1), torch.stack(new_inputs, 1),
                torch.stack(new_states, 1))


class DiagBiLSTMRow(StepModule):
    """The reverse stream of every layer over one finished row: (row_inputs, rev) -> new rev.

    row_inputs (B, n, 1, W, 2h) is the step graph's cache_1 after the row's last pixel;
    rev (B, n, W, s) the previous row's reverse h. The column loop is unrolled at the traced W
    (the bundle is for one image width).
    """

    def __init__(self, model: DiagBiLSTM, width: int):
        super().__init__()
        self.state, self.levels = model.config.state, model.config.levels
        states = {s.name: s for s in diag_states(model, width)}
        self.graph = row_graph(model.config.channels, width, [states["cache_1"], states["rev"]], [states["rev"]],
                               with_row=False)
        _stream_weights(self, [layer.reverse_stream for layer in model.layers])
        self.sees_row = model.config.reverse_sees_row
        if self.sees_row:  # (n, C, 4s): the row's own pixels into the reverse gates
            self.register_buffer("w_pix", torch.stack([l.reverse_pixels.weight.detach()[:, :, 0, 0].t()
                                                       for l in model.layers]))

    def forward(self, row_pixels: torch.Tensor, row_inputs: torch.Tensor, rev: torch.Tensor) -> tuple[torch.Tensor]:
        s = self.state
        B, n, _, W, _ = row_inputs.shape
        x = row_inputs[:, :, 0].transpose(0, 1)  # (n, B, W, 2h)
        pre = torch.einsum("nbwc,ncg->nbwg", x, self.w_is) + self.b_is[:, None, None, :]
        if self.sees_row:
            pix = normalize(row_pixels, self.levels).transpose(1, 2)  # (B, W, C)
            pre = pre + torch.einsum("bwc,ncg->nbwg", pix, self.w_pix)
        pre = pre + torch.einsum("bnws,nsg->nbwg", rev, self.w_ss[:, :s])  # upper neighbours: row i-1
        w_right = self.w_ss[:, s:]  # (n, s, 4s): the right neighbour on this row
        h = c = row_inputs.new_zeros(n, B, s)
        cols = []
        for j in range(W - 1, -1, -1):
            h, c = lstm_update(pre[:, :, j] + torch.bmm(h, w_right), c, dim=-1)
            cols.append(h)
        return (torch.stack(cols[::-1], dim=2).transpose(0, 1),)  # new_rev (B, n, W, s)
