"""Autoregressive masks for convolution kernels (the seed lecture's Mask A / Mask B).

Pixels are generated in raster order, and within a pixel the channels in
R -> G -> B order. A kernel tap may read every row above the centre and every
column left of the centre in the centre row. At the centre tap itself the
hidden channels are split into ``groups`` contiguous groups (one per image
channel) and output group g may read input group g' only when

* Mask A (first layer): g' <  g   (a sub-pixel never sees itself),
* Mask B (later layers): g' <= g  (a feature may use its own group's past).

For one image channel the centre block is simply 0 (A) or 1 (B).
"""
from __future__ import annotations

import torch

MASK_TYPES = ("A", "B")


def channel_groups(channels: int, groups: int) -> torch.Tensor:
    """Group index of each of ``channels`` channels, split into ``groups`` contiguous blocks."""
    if channels % groups:
        raise ValueError(
            f"{channels} channels cannot be split into {groups} equal colour groups; "
            f"choose a channel count divisible by {groups}"
        )
    return torch.arange(channels) // (channels // groups)


def centre_block(mask_type: str, groups: int) -> torch.Tensor:
    """The (groups, groups) matrix of the centre tap: entry [g_out, g_in] is 1 when allowed.

    For RGB this is the seed's 3x3 matrix: Mask A = strictly lower triangular,
    Mask B = lower triangular including the diagonal.
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask type must be 'A' or 'B', got {mask_type!r}")
    ones = torch.ones(groups, groups)
    return torch.tril(ones, diagonal=-1 if mask_type == "A" else 0)


def conv_mask(mask_type: str, out_channels: int, in_channels: int, kernel: int, groups: int) -> torch.Tensor:
    """Mask of shape (out, in, k, k) for a causal kernel of odd size ``k``."""
    if kernel % 2 != 1:
        raise ValueError(f"masked kernels must have odd size, got {kernel}")
    c = kernel // 2
    mask = torch.zeros(out_channels, in_channels, kernel, kernel)
    mask[:, :, :c, :] = 1.0  # every row above the centre
    mask[:, :, c, :c] = 1.0  # left of the centre in the centre row
    g_out = channel_groups(out_channels, groups)
    g_in = channel_groups(in_channels, groups)
    block = centre_block(mask_type, groups)
    mask[:, :, c, c] = block[g_out][:, g_in]
    return mask
