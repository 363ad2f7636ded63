"""Causal layers with two paths: ``forward`` (whole image) and a step path.

The full path runs the whole image teacher-forced, for training and exact
likelihood. The step path computes one position from cached state, so that
sampling costs O(depth) per position instead of O(image) (Ramachandran et al.
2017, "Fast Generation for Convolutional Autoregressive Models").

A masked k x k convolution at (row, col) reads its input at rows row-k//2..row
only. Its cache is therefore a ring buffer of k//2+1 input rows, zero padded
by k//2 columns on each side: padded row r lives in slot r % rows. The host
writes each new input column into slot (row + pad) % rows after the pixel is
complete; slots of rows not yet written hold zeros (the full path's zero
padding) or stale rows, and stale values only ever meet zero weights (the mask
blocks every tap at or after the centre, and the centre tap is applied to the
fresh input directly, not read from the cache).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.models.masks import conv_mask


@dataclass(frozen=True)
class RowCache:
    """State of one masked conv's step path: the last ``rows`` input rows, padded."""

    channels: int  # input channels of the layer
    rows: int      # k//2 + 1 rows: k//2 above the current row, plus the current row
    pad: int       # k//2 zero columns left and right (and zero rows above the image)

    def shape(self, width: int) -> tuple[int, int, int]:
        """Per-image cache shape (C, rows, W + 2*pad); the batch axis comes first."""
        return (self.channels, self.rows, width + 2 * self.pad)

    def slot(self, row: int) -> int:
        """Ring slot that image row ``row`` is written to."""
        return (row + self.pad) % self.rows


class MaskedConv2d(nn.Module):
    """k x k convolution with Mask A or Mask B and R->G->B channel groups."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, mask_type: str, groups: int = 1):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel = in_channels, out_channels, kernel
        self.mask_type, self.groups = mask_type, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("mask", conv_mask(mask_type, out_channels, in_channels, kernel, groups), persistent=False)
        # He-style init over the taps the mask keeps (a masked kernel has fewer inputs).
        fan_in = float(self.mask[0].sum().clamp(min=1.0))
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / fan_in))
        nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    @property
    def cache(self) -> RowCache | None:
        """Step-path state, or None for a 1x1 conv (it needs no past)."""
        if self.kernel == 1:
            return None
        return RowCache(self.in_channels, self.kernel // 2 + 1, self.kernel // 2)

    def masked_weight(self) -> torch.Tensor:
        if getattr(self, "premasked", False):
            return self.weight
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, H, W) -> (B, Cout, H, W)
        return F.conv2d(x, self.masked_weight(), self.bias, padding=self.kernel // 2)

    def stepper(self) -> "MaskedConvStep":
        """Frozen step path with the weights laid out for one position."""
        return MaskedConvStep(self)


def freeze_masks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose masked weights are stored pre-multiplied, for export.

    The exported graph then holds each kernel once as an initializer feeding its
    Conv directly (no mask tensors, no Mul at run time), which is also the form
    quantisation tools expect.
    """
    frozen = copy.deepcopy(model).eval()
    for m in frozen.modules():
        if isinstance(m, MaskedConv2d):
            with torch.no_grad():
                m.weight.copy_(m.weight * m.mask)
            m.premasked = True
    return frozen


class MaskedConvStep(nn.Module):
    """One output position of a MaskedConv2d from its RowCache and the fresh centre input.

    Weights are copied (detached) at construction: a step module is built for
    sampling or export after training, never trained itself.
    """

    def __init__(self, conv: MaskedConv2d):
        super().__init__()
        w = conv.masked_weight().detach().clone()  # (Cout, Cin, k, k)
        k, pad = conv.kernel, conv.kernel // 2
        self.register_buffer("w_centre", w[:, :, pad, pad].t().contiguous())  # (Cin, Cout)
        self.register_buffer("bias", conv.bias.detach().clone())
        self.spec = conv.cache
        if self.spec is not None:
            window = w[:, :, : pad + 1, :].clone()  # rows above and the current row
            window[:, :, pad, pad:] = 0.0  # centre comes from the fresh input; right of it is masked
            self.register_buffer("w_window", window.flatten(1).t().contiguous())  # (Cin*rows*k, Cout)
            self.register_buffer("row_offsets", torch.arange(pad + 1))
            self.register_buffer("col_offsets", torch.arange(k))

    def forward(self, centre: torch.Tensor, cache: torch.Tensor | None = None,
                row: torch.Tensor | None = None, col: torch.Tensor | None = None) -> torch.Tensor:
        """centre: (B, Cin) input at the current position; cache: (B, Cin, rows, W+2p)."""
        out = centre @ self.w_centre + self.bias  # (B, Cout)
        if self.spec is None:
            return out
        slots = torch.remainder(row + self.row_offsets, self.spec.rows)
        window = cache.index_select(2, slots).index_select(3, col + self.col_offsets)  # (B, Cin, rows, k)
        return out + window.flatten(1) @ self.w_window
