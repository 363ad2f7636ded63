"""Shared pieces of the PixelRNN family (van den Oord et al. 2016): gate masks, the LSTM cell,
the 1 x k masked input-to-state convolution, skew/unskew, and the residual-block skeleton.

Gates are laid out [o, f, i, g], each ``state`` channels wide. With C image channels the
state channels are split into C contiguous colour groups (R -> G -> B), and every gate
channel carries the group of the state channel it drives. The input-to-state kernel's
centre tap lets gate group g read input group g' only when g' <= g (Mask B); the LSTM
update is elementwise per channel, so h and c keep the groups of their gates. State-to-state
kernels read positions that are entirely in the past, so they are unmasked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.models.layers import MaskedConv2d, RowCache
from pixelrt.models.masks import centre_block, channel_groups

GATES = ("o", "f", "i", "g")


def gate_groups(state: int, groups: int) -> torch.Tensor:
    """Colour group of each of the 4*state gate channels ([o, f, i, g] blocks)."""
    return channel_groups(state, groups).repeat(len(GATES))


def lstm_update(gates: torch.Tensor, c_prev: torch.Tensor, dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """c = f * c_prev + i * g, h = o * tanh(c) (the seed's eq. 19.9-19.11); gates [o, f, i, g] along ``dim``."""
    o, f, i, g = gates.chunk(4, dim=dim)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


@dataclass
class LSTMModelConfig:
    """Fields and checks shared by the PixelRNN configs (Row LSTM, Diagonal BiLSTM)."""

    channels: int = 1              # image channels C: 1 grey, 3 RGB
    levels: int = 256              # values per sub-pixel
    hidden: int | None = None      # backbone width 2h, divisible by 2*channels (default: 64 rounded to fit)
    state: int | None = None       # LSTM state channels per stream, divisible by channels (default: hidden // 2)
    layers: int = 2                # LSTM residual layers
    input_kernel: int = 7          # Mask-A input conv size (odd)
    head_hidden: int | None = None  # first 1x1 Mask-B output conv (default: 64 rounded to fit)

    odd_kernels: ClassVar[tuple[str, ...]] = ("input_kernel",)

    def __post_init__(self) -> None:
        if self.hidden is None:
            self.hidden = 64 // (2 * self.channels) * (2 * self.channels)
        if self.state is None:
            self.state = self.hidden // 2 // self.channels * self.channels
        if self.head_hidden is None:
            self.head_hidden = 64 // self.channels * self.channels

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {self.levels}")
        if self.hidden % (2 * self.channels):
            raise ValueError(f"hidden={self.hidden} must be divisible by 2*channels={2 * self.channels}")
        for name in ("state", "head_hidden"):
            if getattr(self, name) < self.channels or getattr(self, name) % self.channels:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive multiple of channels={self.channels}")
        for name in self.odd_kernels:
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name}={k} must be a positive odd number")
        if self.layers < 1:
            raise ValueError(f"layers={self.layers} must be at least 1")


class MaskedGateConv(MaskedConv2d):
    """1 x k convolution along the row from the backbone (2h) to the gates (4*state), Mask B.

    Taps left of the centre read every channel, the centre tap follows the colour groups
    (gate group g reads input group g' <= g), taps right of the centre are zero. k = 1 is
    the Diagonal BiLSTM's masked 1x1 input-to-state. A subclass of MaskedConv2d so that
    ``freeze_masks`` stores it pre-masked for export.
    """

    def __init__(self, in_channels: int, state: int, kernel: int, groups: int):
        nn.Module.__init__(self)
        if kernel % 2 != 1:
            raise ValueError(f"the input-to-state kernel must be odd, got {kernel}")
        out_channels = len(GATES) * state
        self.in_channels, self.out_channels, self.kernel = in_channels, out_channels, kernel
        self.mask_type, self.groups = "B", groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        p = kernel // 2
        mask = torch.zeros(out_channels, in_channels, 1, kernel)
        mask[:, :, 0, :p] = 1.0
        mask[:, :, 0, p] = centre_block("B", groups)[gate_groups(state, groups)][:, channel_groups(in_channels, groups)]
        self.register_buffer("mask", mask, persistent=False)
        fan_in = float(mask[0].sum().clamp(min=1.0))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(fan_in))
        with torch.no_grad():  # forget gate starts open (a common LSTM init)
            self.bias[state:2 * state].fill_(1.0)

    @property
    def cache(self) -> RowCache | None:
        """The current row's inputs, k//2 columns of zero padding; one ring row (slot 0)."""
        return None if self.kernel == 1 else RowCache(self.in_channels, 1, self.kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2h, H, W) -> (B, 4*state, H, W)
        return F.conv2d(x, self.masked_weight(), self.bias, padding=(0, self.kernel // 2))

    def centre(self) -> torch.Tensor:
        """(Cin, Cout) centre tap, masked."""
        return self.masked_weight().detach()[:, :, 0, self.kernel // 2].t().contiguous()

    def window(self) -> torch.Tensor:
        """(k*Cin, Cout): the taps as a channels-last window over columns j-p..j+p, centre and right zeroed."""
        w = self.masked_weight().detach()[:, :, 0, :].clone()  # (Cout, Cin, k)
        w[:, :, self.kernel // 2:] = 0.0
        return w.permute(2, 1, 0).reshape(-1, self.out_channels)


def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W + H - 1): row i shifted right by i, so diagonals become columns."""
    B, C, H, W = x.shape
    flat = F.pad(x, (0, H)).reshape(B, C, H * (W + H))[:, :, : H * (W + H - 1)]
    return flat.reshape(B, C, H, W + H - 1)


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of :func:`skew`: (B, C, H, W + H - 1) -> (B, C, H, W)."""
    B, C, H, D = x.shape
    flat = F.pad(x.reshape(B, C, H * D), (0, H))
    return flat.reshape(B, C, H, D + 1)[:, :, :, :width]


class LSTMResidual(nn.Module):
    """Skeleton of a PixelRNN residual layer: 2h backbone -> LSTM (state h) -> 1x1 Mask B back to 2h, + input."""

    def __init__(self, width: int, state: int, groups: int):
        super().__init__()
        self.state = state
        self.project = MaskedConv2d(state, width, 1, "B", groups)


def state_window_weight(conv_weight: torch.Tensor) -> torch.Tensor:
    """(4s, s, k) unmasked 1-D kernel -> (k*s, 4s) for a channels-last window."""
    return conv_weight.detach().permute(2, 1, 0).reshape(-1, conv_weight.shape[0]).contiguous()


def read_window(cache: torch.Tensor, slot: torch.Tensor, col: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(B, L, rows, W+2p, C) ring cache -> (B, L, k, C): ring row ``slot``, padded columns col + offsets."""
    return cache.index_select(3, col + offsets).index_select(2, slot.reshape(1)).squeeze(2)


def stacked_matmul(window: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, L, k, C) windows x (L, k*C, Cout) -> (L, B, Cout), one batched MatMul for all layers."""
    return torch.bmm(window.reshape(window.shape[0], window.shape[1], -1).transpose(0, 1), weight)
