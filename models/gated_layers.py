"""Layers of the Gated PixelCNN (van den Oord et al. 2016), each with a full path and a step path.

Two stacks replace PixelCNN's square masked kernels, whose union of receptive
fields leaves a blind spot to the upper right:

* the **vertical stack** (``VerticalConv``): a (p+1) x k kernel over rows r-p..r,
  columns j-p..j+p. Its output at row r may read all of row r, so it is only ever
  used *shifted down one row* (``shift_down``): the horizontal stack at row i reads
  the vertical stack of row i-1, i.e. rows < i at every column in reach.
* the **horizontal stack** (``HorizontalConv``): a 1 x (p+1) kernel over columns
  j-p..j of the current row; the centre tap carries the R->G->B channel-group mask
  (Mask A in the first layer, Mask B later, from ``models/masks.py``).

Together they cover every earlier pixel within reach, which ``models/causality.py``
measures (coverage 1.0 against PixelCNN's < 1).

Step paths. The vertical stack at row r reads columns right of j, so it cannot be
computed pixel by pixel; it runs once per finished row (``VerticalConv.row``), from
a window of the last p input rows, which is O(W) per row, O(1) per pixel. The
horizontal stack runs per pixel: its centre tap on this step's input plus the
cached taps left of it (``HorizontalWindowStack``, a ring-row cache of one row).

Gate channel layout: a gated conv has 2F outputs that ``gate`` turns into F. With
G colour groups the 2F outputs are G contiguous blocks, each [tanh half, sigmoid
half], so that the masked conv's groups (contiguous blocks of 2F/G) line up with
the F/G outputs of each group after the gate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.errors import PixelrtError
from pixelrt.models.layers import RowCache
from pixelrt.models.masks import centre_block, channel_groups


def gate(x: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """tanh(f) * sigmoid(g) over dim 1: (B, 2F, ...) -> (B, F, ...), per colour group (see module doc)."""
    B, two_f = x.shape[:2]
    rest = x.shape[2:]
    parts = x.reshape(B, groups, 2, two_f // (2 * groups), *rest)
    out = torch.tanh(parts[:, :, 0]) * torch.sigmoid(parts[:, :, 1])
    return out.reshape(B, two_f // 2, *rest)


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> row i holds row i-1 (row 0 zeros): the vertical -> horizontal link."""
    return F.pad(x, (0, 0, 1, 0))[:, :, : x.shape[2]]


def _init(weight: torch.Tensor, bias: torch.Tensor, fan_in: float) -> None:
    nn.init.normal_(weight, std=math.sqrt(1.0 / max(fan_in, 1.0)))
    nn.init.uniform_(bias, -1 / math.sqrt(max(fan_in, 1.0)), 1 / math.sqrt(max(fan_in, 1.0)))


class VerticalConv(nn.Module):
    """(p+1) x k conv over rows r-p..r (k = 2p+1 odd): out[r, j] reads in[r-p..r, j-p..j+p].

    No mask: the model only uses this stack shifted down one row.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"vertical kernels must be odd and at least 3, got {kernel}")
        self.pad = kernel // 2
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, self.pad + 1, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        _init(self.weight, self.bias, in_channels * (self.pad + 1) * kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        p = self.pad
        return F.conv2d(F.pad(x, (p, p, p, 0)), self.weight, self.bias)

    def row(self, window: torch.Tensor) -> torch.Tensor:
        """window (B, Cin, p+1, W+2p): rows r-p..r, zero padded left/right -> (B, Cout, W) at row r."""
        return F.conv2d(window, self.weight, self.bias).squeeze(2)


def horizontal_mask(mask_type: str, out_channels: int, in_channels: int, kernel: int, groups: int) -> torch.Tensor:
    """(out, in, 1, p+1) mask: every tap left of the centre, and the colour-group block at the centre."""
    p = kernel // 2
    mask = torch.ones(out_channels, in_channels, 1, p + 1)
    block = centre_block(mask_type, groups)
    mask[:, :, 0, p] = block[channel_groups(out_channels, groups)][:, channel_groups(in_channels, groups)]
    return mask


class HorizontalConv(nn.Module):
    """1 x (p+1) conv over columns j-p..j of the current row; Mask A / B channel groups at the centre."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, mask_type: str, groups: int):
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"horizontal kernels must be odd and at least 3, got {kernel}")
        self.pad = kernel // 2
        self.in_channels, self.out_channels, self.mask_type = in_channels, out_channels, mask_type
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, self.pad + 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("mask", horizontal_mask(mask_type, out_channels, in_channels, kernel, groups),
                             persistent=False)
        _init(self.weight, self.bias, float(self.mask[0].sum()))

    @property
    def cache(self) -> RowCache:
        """One ring row of the layer's input: the current row, columns left of the centre."""
        return RowCache(self.in_channels, 1, self.pad)

    def masked_weight(self) -> torch.Tensor:
        if getattr(self, "premasked", False):  # export copies store the product (layers.freeze_masks)
            return self.weight
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (self.pad, 0, 0, 0)), self.masked_weight(), self.bias)

    def centre(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Cin, Cout) centre-tap matrix and bias, detached for a step module."""
        return self.masked_weight().detach()[:, :, 0, self.pad].t().contiguous(), self.bias.detach().clone()


class HorizontalWindowStack(nn.Module):
    """The taps left of the centre of L horizontal convs sharing one geometry, in one batched MatMul.

    forward(cache (B, L, 1, W+2p, Cin), col) -> (L, B, Cout). Slots j..j+p-1 of the
    padded row are columns j-p..j-1: written earlier in this row, or zero padding.
    """

    def __init__(self, convs: list[HorizontalConv]):
        super().__init__()
        specs = {c.cache for c in convs}
        if len(specs) != 1:
            raise ValueError(f"stacked horizontal convs must share one cache geometry, got {specs}")
        self.spec: RowCache = specs.pop()
        self.layers = len(convs)
        p = self.spec.pad
        weights = [c.masked_weight().detach()[:, :, 0, :p].permute(2, 1, 0).reshape(-1, c.out_channels)
                   for c in convs]  # (p*Cin, Cout), channels last per tap
        self.register_buffer("w_window", torch.stack(weights))  # (L, p*Cin, Cout)
        self.register_buffer("col_offsets", torch.arange(p))

    def forward(self, cache: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        window = cache[:, :, 0].index_select(2, col + self.col_offsets)  # (B, L, p, Cin)
        window = window.reshape(window.shape[0], self.layers, -1).transpose(0, 1)  # (L, B, p*Cin)
        return torch.bmm(window, self.w_window)


class ConditionBias(nn.Module):
    """Per-layer gate biases from the conditioning: a learned label embedding and a 1x1 conv of a
    spatial map (Cc, H, W), for ``layers`` gates of ``width`` pre-activations each.

    Neither input is a pixel, so the bias can never leak the image; the audit checks it anyway.
    """

    def __init__(self, layers: int, width: int, num_classes: int, cond_channels: int):
        super().__init__()
        self.layers, self.width = layers, width
        self.label = nn.Embedding(num_classes, layers * width) if num_classes else None
        self.cond = nn.Conv2d(cond_channels, layers * width, 1, bias=False) if cond_channels else None
        if self.label is not None:
            nn.init.normal_(self.label.weight, std=0.1)

    @property
    def active(self) -> bool:
        return self.label is not None or self.cond is not None

    def full(self, label: torch.Tensor | None, cond: torch.Tensor | None, H: int, W: int) -> torch.Tensor | None:
        """(B, L, width, H, W) or (B, L, width, 1, 1) bias of every layer, or None."""
        out = None
        if self.label is not None:
            out = self.label(label).reshape(-1, self.layers, self.width, 1, 1)
        if self.cond is not None:
            c = self.cond(cond).reshape(cond.shape[0], self.layers, self.width, H, W)
            out = c if out is None else out + c
        return out

    def at(self, label: torch.Tensor | None, cond_vec: torch.Tensor | None) -> torch.Tensor | None:
        """Bias at one position: cond_vec (B, Cc) is the map gathered there -> (L, B, width)."""
        out = None
        if self.label is not None:
            out = self.label(label).reshape(-1, self.layers, self.width)
        if self.cond is not None:
            w = self.cond.weight.reshape(self.layers * self.width, -1)  # (L*width, Cc)
            c = (cond_vec @ w.t()).reshape(-1, self.layers, self.width)
            out = c if out is None else out + c
        return None if out is None else out.transpose(0, 1)

    def row(self, label: torch.Tensor | None, cond_row: torch.Tensor | None) -> torch.Tensor | None:
        """Bias along one row: cond_row (B, Cc, W) -> (L, B, width, W) (label part broadcast)."""
        out = None
        if self.label is not None:
            out = self.label(label).reshape(-1, self.layers, self.width, 1)
        if self.cond is not None:
            w = self.cond.weight.reshape(self.layers * self.width, -1)
            c = torch.einsum("kc,bcw->bkw", w, cond_row).reshape(cond_row.shape[0], self.layers, self.width, -1)
            out = c if out is None else out + c
        return None if out is None else out.transpose(0, 1)


def check_context(label: torch.Tensor | None, cond: torch.Tensor | None, num_classes: int,
                  cond_shape: tuple | None, batch: int) -> None:
    """One clear error per misuse: missing, unexpected, mis-shaped or out-of-range conditioning.
    Skipped while torch.export traces the graph (the runtime checks feeds against the manifest)."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return
    if num_classes and label is None:
        raise PixelrtError(f"this model is label-conditional ({num_classes} classes); pass label (one per image)")
    if not num_classes and label is not None:
        raise PixelrtError("this model is not label-conditional; do not pass a label")
    if label is not None:
        if label.shape != (batch,):
            raise PixelrtError(f"label must have shape ({batch},) (one per image), got {tuple(label.shape)}")
        if len(label) and (int(label.min()) < 0 or int(label.max()) >= num_classes):
            raise PixelrtError(f"labels must lie in 0..{num_classes - 1}, got {int(label.min())}..{int(label.max())}")
    if cond_shape and cond is None:
        raise PixelrtError(f"this model is conditioned on a {tuple(cond_shape)} map; pass cond (one per image)")
    if not cond_shape and cond is not None:
        raise PixelrtError("this model takes no conditioning map; do not pass cond")
    if cond is not None:
        if tuple(cond.shape) != (batch, *cond_shape):
            raise PixelrtError(f"cond must have shape {(batch, *cond_shape)}, got {tuple(cond.shape)}")
        if not bool(torch.isfinite(cond).all()):
            raise PixelrtError("cond contains NaN or infinity")
