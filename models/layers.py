"""Causal layers with two paths: ``forward`` (whole image) and a step path.

The full path runs the whole image teacher-forced, for training and exact
likelihood. The step path computes one position from cached state, so that
sampling costs O(depth) per position instead of O(image) (Ramachandran et al.
2017, "Fast Generation for Convolutional Autoregressive Models").

A masked k x k convolution at (row, col) reads its input at rows row-k//2..row
only, so its state is a ring buffer of k//2+1 input rows, zero padded by k//2
columns on each side: padded row r lives in slot r % rows. The host writes
each new input column into slot (row + pad) % rows once the pixel is complete;
slots not yet written hold zeros (the full path's zero padding) or stale rows,
and stale values only ever meet zero weights (the mask blocks every tap at or
after the centre, and the centre tap is applied to the fresh input directly).

The step path splits a masked conv in two, because only the centre tap needs
this step's input:

* ``MaskedConvStep``: the centre tap plus bias, on the fresh input (B, Cin);
* ``ConvWindowStack``: the taps before the centre, read from the cache. Layers
  that share a cache geometry (every block of a PixelCNN) are stacked into one
  (B, L, rows, W + 2*pad, C) state and computed by one batched MatMul at the
  start of the step, since no window depends on this step's activations.

Layout and stacking were measured, not guessed (ORT CPU, ref28 at batch 64):
channels-first caches made ONNX Runtime's Gather copy whole rows (O(width) per
step), and one state tensor per layer cost a Gather pair and a feed per layer.
Channels last, each window row is k*C contiguous floats: O(k*C) per step.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle.graphs import ring_state
from pixelrt.models.masks import conv_mask


@dataclass(frozen=True)
class RowCache:
    """Geometry of a masked conv's step state: the last ``rows`` input rows, padded."""

    channels: int  # input channels of the layer
    rows: int      # k//2 + 1 rows: k//2 above the current row, plus the current row
    pad: int       # k//2 zero columns left and right (and zero rows above the image)

    def shape(self, width: int, layers: int = 1) -> tuple[int, int, int, int]:
        """Per-image state shape (L, rows, W + 2*pad, C) of ``layers`` stacked caches."""
        return (layers, self.rows, width + 2 * self.pad, self.channels)

    def slot(self, row: int) -> int:
        """Ring slot that image row ``row`` is written to."""
        return (row + self.pad) % self.rows


def ring_states(caches: list[tuple[RowCache, int]], width: int) -> list:
    """The step protocol's ring-row states of ``caches`` ((geometry, stacked layers) each): state
    ``cache_k`` in, its new column ``new_k`` out."""
    return [ring_state(f"cache_{k}", f"new_{k}", layers, c.rows, c.pad, width, c.channels)
            for k, (c, layers) in enumerate(caches)]


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
        """Frozen centre-tap step; pair it with a ConvWindowStack when ``cache`` is not None."""
        return MaskedConvStep(self)


def freeze_masks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose masked weights are stored pre-multiplied, for export.

    The exported graph then holds each kernel once as an initializer feeding its
    Conv directly (no mask tensors, no Mul at run time), which is also the form
    quantisation tools expect.
    """
    frozen = copy.deepcopy(model).eval()
    for m in frozen.modules():
        # every masked layer (MaskedConv2d, the gated stack's HorizontalConv, a user's own) has
        # ``weight``, a ``mask`` buffer and ``masked_weight()``, which honours ``premasked``
        if callable(getattr(m, "masked_weight", None)) and isinstance(getattr(m, "mask", None), torch.Tensor) \
                and not getattr(m, "premasked", False):
            with torch.no_grad():
                m.weight.copy_(m.weight * m.mask)
            m.premasked = True
    return frozen


class MaskedConvStep(nn.Module):
    """Centre tap + bias of a MaskedConv2d: the part of a step that reads this step's input.

    Weights are copied (detached) at construction: a step module is built for
    sampling or export after training, never trained itself.
    """

    def __init__(self, conv: MaskedConv2d):
        super().__init__()
        w = conv.masked_weight().detach()
        pad = conv.kernel // 2
        self.register_buffer("w_centre", w[:, :, pad, pad].t().contiguous())  # (Cin, Cout)
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, centre: torch.Tensor) -> torch.Tensor:  # (B, Cin) -> (B, Cout)
        return centre @ self.w_centre + self.bias


class ConvWindowStack(nn.Module):
    """The cached (pre-centre) taps of L masked convs that share one cache geometry.

    forward(cache (B, L, rows, W+2p, Cin), row, col) -> (L, B, Cout): each layer's
    contribution from the positions before (row, col), in one batched MatMul.

    ``extra`` appends that many zero-weight output columns, and ``bias`` ((Cout + extra,) or
    (L, Cout + extra)) is added to every layer's window in the same Add: a step module then hands
    each window to its GEMM as the C input (taps and bias in one epilogue).

    The window is one Gather from the cache with its rows and columns flattened: the flat indices of
    every (ring phase, column) are a constant table (``index``), so a step looks them up in two
    scalar Gathers instead of computing slots and offsets (fewer graph nodes, the same values).
    """

    def __init__(self, convs: list[MaskedConv2d], bias: torch.Tensor | None = None, extra: int = 0,
                 width: int | None = None):
        super().__init__()
        specs = {c.cache for c in convs}
        if len(specs) != 1 or None in specs:
            raise ValueError(f"stacked convs must share one k x k cache geometry, got {specs}")
        self.spec: RowCache = specs.pop()
        self.layers = len(convs)
        k, pad = convs[0].kernel, self.spec.pad
        weights = []
        for conv in convs:
            window = conv.masked_weight().detach()[:, :, : pad + 1, :].clone()  # rows above + current row
            window[:, :, pad, pad:] = 0.0  # the centre comes from the fresh input; right of it is masked
            # (Cout, Cin, rows, k) -> (rows, k, Cin, Cout): the order of a channels-last window.
            weights.append(F.pad(window.permute(2, 3, 1, 0).reshape(-1, conv.out_channels), (0, extra)))
        self.register_buffer("w_window", torch.stack(weights))  # (L, rows*k*Cin, Cout + extra)
        n = self.w_window.shape[-1]
        b = None if bias is None else bias.detach().reshape(-1, n).expand(self.layers, n)
        self.register_buffer("bias", None if b is None else b[:, None, :].clone())  # (L, 1, N)
        self.register_buffer("row_offsets", torch.arange(pad + 1))
        self.register_buffer("col_offsets", torch.arange(k))
        self.width = width
        if width is not None:
            self.register_buffer("index", self.index_table(self.spec.rows))

    def index_table(self, phases: int) -> torch.Tensor:
        """(phases * W, rows*k) int64: row ``key = (row % phases) * W + col`` holds the flat positions
        (ring slot * (W + 2p) + padded column) of the window's taps; ``phases`` is a multiple of the
        ring's rows, so stacks with different rings can share one key."""
        rows, k, width = self.spec.rows, len(self.col_offsets), self.width
        phase = torch.arange(phases)[:, None, None, None]
        slots = torch.remainder(phase + self.row_offsets[None, None, :, None], rows)
        cols = torch.arange(width)[None, :, None, None] + self.col_offsets[None, None, None, :]
        return (slots * (width + 2 * self.spec.pad) + cols).reshape(phases * width, rows * k)

    def window(self, cache: torch.Tensor, row: torch.Tensor, col: torch.Tensor, key=None) -> torch.Tensor:
        """(B, L, rows*k*Cin): the taps before (row, col) of every layer, channels last. ``key``
        (see ``index_table``; built with ``width``) replaces the slot and column arithmetic by one lookup."""
        B = cache.shape[0]
        if key is None:
            slots = torch.remainder(row + self.row_offsets, self.spec.rows)
            window = cache.index_select(3, col + self.col_offsets).index_select(2, slots)  # (B, L, rows, k, Cin)
            return window.reshape(B, self.layers, -1)
        index = F.embedding(key, self.index)  # (rows*k,): one Gather
        flat = cache.reshape(B, self.layers, -1, cache.shape[-1])  # (B, L, rows*(W+2p), Cin)
        return flat.index_select(2, index).reshape(B, self.layers, -1)

    def forward(self, cache: torch.Tensor, row: torch.Tensor, col: torch.Tensor, key=None) -> torch.Tensor:
        return self.taps(self.window(cache, row, col, key))

    def taps(self, window: torch.Tensor) -> torch.Tensor:
        """A gathered window (B, L, rows*k*Cin) -> (L, B, Cout + extra): one batched MatMul (+ the bias)."""
        out = torch.bmm(window.transpose(0, 1), self.w_window)
        return out if self.bias is None else out + self.bias
