"""Row LSTM (van den Oord et al. 2016, the seed's PixelRNN section) with a cached step path.

    x -> 7x7 Mask-A conv (2h) -> [Row LSTM residual layer] x n -> ReLU -> 1x1 Mask-B (head)
      -> ReLU -> 1x1 Mask-B (C * levels logits) -> levels-way softmax per sub-pixel

Row LSTM layer: gates = K^is (*) x  +  K^ss (*) h_{row-1}, with
  K^is: 1 x k conv along the row, Mask B with R->G->B groups (precomputed for all rows),
  K^ss: unmasked 1 x k conv over the previous row's h;
  c = f * c_{row-1} + i * g, h = o * tanh(c); output x + 1x1 Mask-B projection of h.
Rows run sequentially, columns in parallel. The receptive field is the seed's triangle:
the previous row's state reaches k//2 columns further each row, so pixels far to the
left on the current row and the far corners above are never seen (coverage < 1).

Step path: the cell at (i, j) needs the current row's layer inputs left of j (a one-row
ring cache, k//2 zero columns of padding) and the previous row's h at j-k//2..j+k//2 and
c at j (a two-row ring cache of [h, c]). Both are ordinary ring-row states, so the bundle
format and the step loop are those of PixelCNN; per-step cost is O(k * width of a layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from pixelrt.bundle.graphs import step_graph, step_schedule
from pixelrt.models.contract import StepModule
from pixelrt.models.layers import ConvWindowStack, MaskedConv2d, RowCache, ring_states
from pixelrt.models.categorical import CategoricalStepHead
from pixelrt.models.lstm_layers import (LSTMModelConfig, LSTMResidual, MaskedGateConv,
                                        lstm_update, read_window, stacked_matmul, state_window_weight)
from pixelrt.models.categorical import CategoricalHead, normalize


@dataclass
class RowLSTMConfig(LSTMModelConfig):
    row_kernel: int = 3            # k of the 1 x k input-to-state and state-to-state convs (odd)

    odd_kernels: ClassVar[tuple[str, ...]] = ("input_kernel", "row_kernel")


class RowLSTMLayer(LSTMResidual):
    def __init__(self, width: int, state: int, kernel: int, groups: int):
        super().__init__(width, state, groups)
        self.kernel = kernel
        self.input_to_state = MaskedGateConv(width, state, kernel, groups)
        self.state_to_state = nn.Conv1d(state, 4 * state, kernel, padding=kernel // 2, bias=False)
        nn.init.normal_(self.state_to_state.weight, std=1.0 / (kernel * state) ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2h, H, W)
        B, _, H, W = x.shape
        pre = self.input_to_state(x)  # (B, 4s, H, W): every row's input-to-state at once
        h = c = x.new_zeros(B, self.state, W)
        rows = []
        for i in range(H):  # rows sequential, columns parallel (unrolled at the traced H when exported)
            h, c = lstm_update(pre[:, :, i] + self.state_to_state(h), c)
            rows.append(h)
        return x + self.project(torch.stack(rows, dim=2))


class RowLSTM(CategoricalHead, nn.Module):
    family = "rowlstm"

    def __init__(self, config: RowLSTMConfig):
        super().__init__()
        config.validate()
        self.config = config
        C, w = config.channels, config.hidden
        self.input_conv = MaskedConv2d(C, w, config.input_kernel, "A", C)
        self.layers = nn.ModuleList(RowLSTMLayer(w, config.state, config.row_kernel, C) for _ in range(config.layers))
        self._build_head(w, config.head_hidden)

    def features(self, xf: torch.Tensor) -> torch.Tensor:
        h = self.input_conv(xf)
        for layer in self.layers:
            h = layer(h)
        return h

    def step_module(self, image) -> "RowLSTMStep":
        return RowLSTMStep(self, image.width)


class RowLSTMStep(StepModule):
    """One sub-pixel of a Row LSTM from cached rows.

    Inputs: pixel, row, col, channel, force, noise (as PixelCNNStep), and
      cache_0 (B, 1, 4, W+6, C)      the input conv's rows (7x7 Mask A)
      cache_1 (B, n, 1, W+2p, 2h)    each layer's input on the current row (1 x k input-to-state)
      cache_2 (B, n, 2, W+2p, 2s)    each layer's [h, c] on the previous and current row
    Outputs: value, logp, new_0 (B, 1, C), new_1 (B, n, 2h), new_2 (B, n, 2s).
    ``bias``: an optional context record (B, n * 4s, H, W) added to every gate, gathered at (row, col)
    in the graph (the multi-scale model's stage 2); it comes after ``noise`` in the inputs.
    """

    def __init__(self, model: RowLSTM, width: int, bias=None):
        super().__init__()
        cfg = model.config
        self.levels, self.state, self.n = cfg.levels, cfg.state, cfg.layers
        k, p = cfg.row_kernel, cfg.row_kernel // 2
        self.pad = p
        self.input_window = ConvWindowStack([model.input_conv])
        self.input_centre = model.input_conv.stepper()
        layers = list(model.layers)
        self.register_buffer("w_is_window", torch.stack([m.input_to_state.window() for m in layers]))  # (n, k*2h, 4s)
        self.register_buffer("w_is_centre", torch.stack([m.input_to_state.centre() for m in layers]))  # (n, 2h, 4s)
        self.register_buffer("b_is", torch.stack([m.input_to_state.bias.detach() for m in layers]))  # (n, 4s)
        self.register_buffer("w_ss", torch.stack([state_window_weight(m.state_to_state.weight) for m in layers]))
        self.projects = nn.ModuleList(m.project.stepper() for m in layers)
        self.head = CategoricalStepHead(model.head_hidden, model.head_out, cfg.channels, cfg.levels)
        self.register_buffer("offsets", torch.arange(k))
        caches = [(self.input_window.spec, 1), (RowCache(cfg.hidden, 1, p), cfg.layers),
                  (RowCache(2 * cfg.state, 2, p), cfg.layers)]
        context = () if bias is None else (bias,)
        self.biased = bias is not None
        self.states = tuple(ring_states(caches, width))
        self.graph = step_graph(cfg.channels, self.states, context)
        self.schedule = step_schedule(cfg.channels, context=context)

    def forward(self, pixel, row, col, channel, force, noise, *args):
        s = self.state
        bias, (input_cache, row_inputs, row_states) = (args[0], args[1:]) if self.biased else (None, args)
        x = self.input_centre(normalize(pixel, self.levels)) + self.input_window(input_cache, row, col)[0]  # (B, 2h)
        # Everything read from the caches is in the past, so it is computed for all layers up front.
        left = read_window(row_inputs, torch.zeros_like(row), col, self.offsets)  # (B, n, k, 2h)
        is_left = stacked_matmul(left, self.w_is_window)  # (n, B, 4s)
        above = read_window(row_states, torch.remainder(row - 1 + self.pad, 2), col, self.offsets)  # (B, n, k, 2s)
        ss = stacked_matmul(above[..., :s].contiguous(), self.w_ss)  # (n, B, 4s)
        c_above = above[:, :, self.pad, s:]  # (B, n, s)
        new_inputs, new_states = [], []
        for l, project in enumerate(self.projects):
            gates = x @ self.w_is_centre[l] + self.b_is[l] + is_left[l] + ss[l]
            if bias is not None:
                gates = gates + _gather_bias(bias, row, col, self.n, 4 * s)[:, l]
            h, c = lstm_update(gates, c_above[:, l])
            new_inputs.append(x)
            new_states.append(torch.cat([h, c], dim=1))
            x = x + project(h)
        value, logp, full = self.head(x, pixel, channel, force, noise)
        return (value, logp, normalize(full, self.levels).unsqueeze(1), torch.stack(new_inputs, 1),
                torch.stack(new_states, 1))


def _gather_bias(bias: torch.Tensor, row: torch.Tensor, col: torch.Tensor, layers: int, gates: int) -> torch.Tensor:
    """bias[:, :, row, col] as (B, layers, gates): one strided gather of B x F values, not a row copy first."""
    B, _, H, W = bias.shape
    return bias.reshape(B, -1, H * W).index_select(2, (row * W + col).reshape(1)).reshape(B, layers, gates)
