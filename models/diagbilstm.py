"""Diagonal BiLSTM (van den Oord et al. 2016, the seed's PixelRNN section) with a cached step path.

    x -> 7x7 Mask-A conv (2h) -> [Diagonal BiLSTM residual layer] x n -> ReLU -> 1x1 Mask-B (head)
      -> ReLU -> 1x1 Mask-B (C * levels logits) -> levels-way softmax per sub-pixel

One layer runs two Diagonal LSTM streams over its input x and adds their h:
  * forward stream: skew x (row i shifted right by i) so each diagonal is a column; gates =
    masked 1x1 input-to-state (Mask B, colour groups) + 2x1 state-to-state over the previous
    column, i.e. the states of the left (i, j-1) and upper (i-1, j) neighbours; c carries
    along the row (c of the left neighbour); unskew;
  * reverse stream: the same on the horizontally mirrored x (it sees the right and upper
    neighbours), mirrored back and shifted down one row, so row i only reads rows < i (the
    seed's causal correction).
  Output x + 1x1 Mask-B projection of (h_forward + h_reverse). The forward stream reaches
  every pixel above-left and to the left, the reverse stream every pixel above-right: the
  receptive field is the whole causal past (coverage 1.0).

Skew padding positions (outside the image in skewed coordinates) are zeroed after every
column, so that a real position's boundary neighbours are zero states, as in the step path.

Step path (models/diagbilstm_step.py): the forward stream's cell at (i, j) from the left and
upper [h, c] in a two-row ring cache; the reverse stream for a finished row is computed once
per row by a per-row graph, and the step graph reads it at ``col``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.models.layers import MaskedConv2d
from pixelrt.models.lstm_layers import LSTMModelConfig, LSTMResidual, MaskedGateConv, lstm_update, skew, unskew
from pixelrt.models.categorical import CategoricalHead
from pixelrt.models.diagbilstm_step import DiagBiLSTMRow, DiagBiLSTMStep


@dataclass
class DiagBiLSTMConfig(LSTMModelConfig):
    reverse_sees_row: bool = True  # reverse stream also reads the row's pixels (1x1): full receptive field


class DiagonalLSTM(nn.Module):
    """One stream: masked 1x1 input-to-state on the skewed map, 2x1 state-to-state over the previous column."""

    def __init__(self, width: int, state: int, groups: int):
        super().__init__()
        self.state = state
        self.input_to_state = MaskedGateConv(width, state, 1, groups)
        # Taps [upper (i-1), same row (i)] of the previous column; unmasked (both are in the past).
        self.state_to_state = nn.Conv1d(state, 4 * state, 2, bias=False)
        nn.init.normal_(self.state_to_state.weight, std=1.0 / (2 * state) ** 0.5)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2h, H, W) -> (B, s, H, W); ``extra`` (B, 4s, H, W) is added to the gate pre-activations."""
        B, _, H, W = x.shape
        pre = self.input_to_state(x) if extra is None else self.input_to_state(x) + extra
        pre = skew(pre)  # (B, 4s, H, D), D = W + H - 1
        D = pre.shape[-1]
        d = torch.arange(D, device=x.device)
        i = torch.arange(H, device=x.device)
        valid = ((d[None, :] >= i[:, None]) & (d[None, :] < i[:, None] + W)).to(x.dtype)  # (H, D) real pixels
        h = c = x.new_zeros(B, self.state, H)
        cols = []
        for k in range(D):  # diagonals sequential, rows parallel (unrolled at the traced size when exported)
            h, c = lstm_update(pre[:, :, :, k] + self.state_to_state(F.pad(h, (1, 0))), c)
            h, c = h * valid[:, k], c * valid[:, k]
            cols.append(h)
        return unskew(torch.stack(cols, dim=3), W)


class DiagBiLSTMLayer(LSTMResidual):
    """``image_channels`` > 0 adds an unmasked 1x1 from the normalised image to the reverse stream's gates.

    Why: a layer input never contains its own pixel (the Mask-A input conv), so without it no
    feature of row i-1 ever holds the row's last pixel, and (i, j) misses (i-1, W-1) whenever
    W-1-j exceeds the input conv's reach. The reverse stream is shifted down a row, so reading
    row i-1's pixels themselves is causal, and the field becomes the whole past.
    """

    def __init__(self, width: int, state: int, groups: int, image_channels: int = 0):
        super().__init__(width, state, groups)
        self.forward_stream = DiagonalLSTM(width, state, groups)
        self.reverse_stream = DiagonalLSTM(width, state, groups)
        self.reverse_pixels = nn.Conv2d(image_channels, 4 * state, 1, bias=False) if image_channels else None

    def reverse_features(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """The reverse stream on the mirrored input, mirrored back: (B, s, H, W), row i reads rows <= i."""
        extra = None if self.reverse_pixels is None else self.reverse_pixels(image).flip(3)
        return self.reverse_stream(x.flip(3), extra).flip(3)

    def forward_unfused(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """The layer as two separate stream loops (the reference ``forward`` is checked against)."""
        rev = F.pad(self.reverse_features(x, image), (0, 0, 1, 0))[:, :, :-1]  # shifted down one row: rows < i
        return x + self.project(self.forward_stream(x) + rev)

    def forward(self, x: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:  # (B, 2h, H, W)
        """Both streams in one diagonal loop (a grouped 2x1 state-to-state): half the sequential steps.

        Same arithmetic as ``forward_unfused``: the reverse stream runs on the mirrored map,
        mirrored back and shifted down one row.
        """
        B, _, H, W = x.shape
        fwd, rev = self.forward_stream, self.reverse_stream
        s = self.state
        pre_rev = rev.input_to_state(x)
        if self.reverse_pixels is not None:
            pre_rev = pre_rev + self.reverse_pixels(image)
        pre = skew(torch.cat([fwd.input_to_state(x), pre_rev.flip(3)], dim=1))  # (B, 8s, H, D)
        w_ss = torch.cat([fwd.state_to_state.weight, rev.state_to_state.weight], dim=0)  # (8s, s, 2)
        D = pre.shape[-1]
        d = torch.arange(D, device=x.device)
        i = torch.arange(H, device=x.device)
        valid = ((d[None, :] >= i[:, None]) & (d[None, :] < i[:, None] + W)).to(x.dtype)
        h = x.new_zeros(B, 2 * s, H)
        c = x.new_zeros(B, 2, s, H)
        cols = []
        for k in range(D):
            gates = pre[:, :, :, k] + F.conv1d(F.pad(h, (1, 0)), w_ss, groups=2)  # (B, 8s, H)
            h2, c = lstm_update(gates.reshape(B, 2, 4 * s, H), c, dim=2)
            h2, c = h2 * valid[:, k], c * valid[:, k]
            h = h2.reshape(B, 2 * s, H)
            cols.append(h)
        both = unskew(torch.stack(cols, dim=3), W)  # (B, 2s, H, W)
        rev_shifted = F.pad(both[:, s:].flip(3), (0, 0, 1, 0))[:, :, :-1]  # mirrored back, shifted down a row
        return x + self.project(both[:, :s] + rev_shifted)


class DiagBiLSTM(CategoricalHead, nn.Module):
    family = "diagbilstm"

    def __init__(self, config: DiagBiLSTMConfig):
        super().__init__()
        config.validate()
        self.config = config
        C, w = config.channels, config.hidden
        self.input_conv = MaskedConv2d(C, w, config.input_kernel, "A", C)
        pix = C if config.reverse_sees_row else 0
        self.layers = nn.ModuleList(DiagBiLSTMLayer(w, config.state, C, pix) for _ in range(config.layers))
        self._build_head(w, config.head_hidden)

    def features(self, xf: torch.Tensor) -> torch.Tensor:
        h = self.input_conv(xf)
        for layer in self.layers:
            h = layer(h, xf)
        return h

    def step_module(self, image):
        return DiagBiLSTMStep(self, image.width)

    def row_module(self, image):
        return DiagBiLSTMRow(self, image.width)
