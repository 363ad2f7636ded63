"""PixelCNN++'s layers and config (Salimans et al. 2017), shared by the full model and its step and row
modules: concat-ELU, the down / right shifts, shifted (de)convolutions and the gated ResNet block."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def concat_elu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return F.elu(torch.cat([x, -x], dim=dim))


def down_shift(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W): row i <- row i-1, zeros on top
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:  # col j <- col j-1, zeros on the left
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


@dataclass
class PixelCNNPPConfig:
    channels: int = 1       # image channels C: 1 grey, 3 RGB
    levels: int = 256       # values per sub-pixel
    filters: int = 32       # stream width F
    resnets: int = 1        # gated resnet blocks per resolution (encoder; the decoder has one more below the top)
    resolutions: int = 3    # 8x8 -> 8, 4, 2; H and W must be divisible by 2**(resolutions-1)
    mixtures: int = 5       # logistic mixture components K
    dropout: float = 0.1    # inside each gated resnet, training only

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {self.levels}")
        if self.channels < 1:
            raise ValueError(f"channels={self.channels} must be at least 1")
        for name in ("filters", "resnets", "resolutions", "mixtures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    def check_image(self, height: int, width: int) -> None:
        s = 2 ** (self.resolutions - 1)
        if height % s or width % s:
            raise ValueError(f"PixelCNN++ with {self.resolutions} resolutions needs H and W divisible by {s}, "
                             f"got {height}x{width}; lower --resolutions or pad the images")


class ShiftedConv2d(nn.Module):
    """Convolution padded so output (i, j) sees only rows <= i: down-shifted (kernel kh x kw, centred
    columns) or down-right-shifted (columns <= j). ``stride`` 2 downsamples."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], right: bool, stride: int = 1):
        super().__init__()
        self.kernel, self.right, self.stride = kernel, right, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)

    def pads(self) -> tuple[int, int, int, int]:  # left, right, top, bottom
        kh, kw = self.kernel
        return (kw - 1, 0, kh - 1, 0) if self.right else ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pads()))


class ShiftedDeconv2d(nn.Module):
    """Stride-2 transposed shifted convolution (2x upsampling). Fine (q, p) reads coarse row q // 2
    only; down-right (2x2): coarse column p // 2, tap (q % 2, p % 2); down (2x3): columns (p+1)//2 - {0,1}."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], right: bool):
        super().__init__()
        self.kernel, self.right = kernel, right
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        y = self.deconv(x)  # (B, Cout, 2H + kh - 2, 2W + kw - 2)
        c0 = 0 if self.right else (self.kernel[1] - 1) // 2
        return y[:, :, : 2 * H, c0: c0 + 2 * W]


class GatedResnet(nn.Module):
    def __init__(self, filters: int, right: bool, skip: int, dropout: float):
        super().__init__()
        kernel = (2, 2) if right else (2, 3)
        self.conv1 = ShiftedConv2d(2 * filters, filters, kernel, right)
        self.nin = nn.Conv2d(2 * skip, filters, 1) if skip else None
        self.conv2 = ShiftedConv2d(2 * filters, 2 * filters, kernel, right)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        c1 = self.conv1(concat_elu(x))
        if a is not None:
            c1 = c1 + self.nin(concat_elu(a))
        c2 = self.conv2(self.dropout(concat_elu(c1)))
        gate_a, gate_b = c2.chunk(2, dim=1)
        return x + gate_a * torch.sigmoid(gate_b)


def block_counts(cfg: PixelCNNPPConfig) -> tuple[list[int], list[int]]:
    """Gated resnets per resolution level (0 = finest): encoder and decoder."""
    R, n = cfg.resolutions, cfg.resnets
    return [n] * R, [n if lvl == R - 1 else n + 1 for lvl in range(R)]
