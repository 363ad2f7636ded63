"""`pixelrt bench --model gated28`: the Gated PixelCNN's benchmark spec and FLOP counts.

FLOPs (2 x MACs) per pixel, counted as ``export/bench.py`` counts PixelCNN's: the cached
path runs the step graph once per sub-pixel (horizontal stack + head) and the row graph
once per row (the vertical stack and links for all W columns, i.e. once per pixel
amortised); the naive path pays one dense full forward per pixel per sub-pixel.
"""
from __future__ import annotations

from pixelrt.bundle import ImageSpec


def step_flops_per_pixel(cfg) -> int:
    C, Fw, m, L = cfg.channels, cfg.hidden, cfg.head_hidden, cfg.layers
    p0, p = cfg.input_kernel // 2, cfg.kernel // 2
    step = (p0 + 1) * C * 2 * Fw + Fw * Fw  # first horizontal conv (centre + window) and its 1x1 out
    step += (L - 1) * ((p + 1) * Fw * 2 * Fw + Fw * Fw)
    step += Fw * m + m * C * cfg.levels  # head
    row = (p0 + 1) * cfg.input_kernel * C * 2 * Fw + (L - 1) * (p + 1) * cfg.kernel * Fw * 2 * Fw
    row += L * Fw * 2 * Fw  # vertical -> horizontal links
    return 2 * (C * step + row)


def dense_flops_per_pixel(cfg) -> int:
    """One full forward per pixel (both stacks, links, head), dense kernels."""
    C, Fw, m, L = cfg.channels, cfg.hidden, cfg.head_hidden, cfg.layers
    p0, p, k0, k = cfg.input_kernel // 2, cfg.kernel // 2, cfg.input_kernel, cfg.kernel
    macs = (p0 + 1) * k0 * C * 2 * Fw + (p0 + 1) * C * 2 * Fw
    macs += (L - 1) * ((p + 1) * k * Fw * 2 * Fw + (p + 1) * Fw * 2 * Fw)
    macs += L * (Fw * 2 * Fw + Fw * Fw) + Fw * m + m * C * cfg.levels
    return 2 * macs


def gated28():
    from pixelrt.export.bench import BenchSpec

    return BenchSpec("gated28", dict(channels=1, levels=256, hidden=32, layers=8, head_hidden=64),
                     ImageSpec(1, 28, 28, 256), family="gated")
