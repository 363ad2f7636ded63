"""FLOPs (2 x MACs) per pixel of the cached step graph and of a dense full forward, counted from the config,
for the families whose counts are written down (``FLOPS``). The step-loop bench reports GFLOP/s and the share
of the measured matmul peak for those; other families are timed without (``-`` in the table)."""
from __future__ import annotations


def step_flops_per_pixel(cfg) -> int:
    """PixelCNN: FLOPs the cached step graph executes per pixel.

    Per step: input conv centre C*w + window rows*k0*C*w (the window matmul covers all
    (k0//2+1)*k0 taps, the zeroed ones too); per block reduce w*h, centre h*h, window
    (k//2+1)*k*h*h, expand h*w (h = w/2); head w*m + m*C*L. Every sub-pixel step runs the
    whole network, so a pixel costs C steps.
    """
    C, w, h, m = cfg.channels, cfg.hidden, cfg.hidden // 2, cfg.head_hidden
    k0, k = cfg.input_kernel, cfg.block_kernel
    macs = C * w + (k0 // 2 + 1) * k0 * C * w
    macs += cfg.blocks * (w * h + h * h + (k // 2 + 1) * k * h * h + h * w)
    macs += w * m + m * C * cfg.levels
    return 2 * macs * C


def wave_flops_per_pixel(cfg) -> int:
    """PixelCNN: FLOPs the wavefront graph executes per pixel: the step's, less the masked current-row taps
    (the centre and right of it) that its windows do not read (``models/pixelcnn_wave.live_taps``)."""
    C, w, h = cfg.channels, cfg.hidden, cfg.hidden // 2
    k0, k = cfg.input_kernel, cfg.block_kernel
    skipped = (k0 // 2 + 1) * C * w + cfg.blocks * (k // 2 + 1) * h * h  # k//2 + 1 taps of each current row
    return step_flops_per_pixel(cfg) - 2 * skipped * C


def dense_flops_per_pixel(cfg) -> int:
    """PixelCNN: FLOPs per pixel of one full-path forward with dense k x k kernels (masks not exploited).

    One forward yields every channel's logits, so there is no factor C here. This is what
    the naive sampler pays per pixel of the image, once per sub-pixel it samples.
    """
    C, w, h, m = cfg.channels, cfg.hidden, cfg.hidden // 2, cfg.head_hidden
    k0, k = cfg.input_kernel, cfg.block_kernel
    macs = k0 * k0 * C * w + cfg.blocks * (w * h + k * k * h * h + h * w) + w * m + m * C * cfg.levels
    return 2 * macs


def gated_step_flops_per_pixel(cfg) -> int:
    """Gated PixelCNN: the step graph once per sub-pixel (horizontal stack + head) and the row graph once per
    row (the vertical stack and links for all W columns, i.e. once per pixel amortised)."""
    C, Fw, m, L = cfg.channels, cfg.hidden, cfg.head_hidden, cfg.layers
    p0, p = cfg.input_kernel // 2, cfg.kernel // 2
    step = (p0 + 1) * C * 2 * Fw + Fw * Fw  # first horizontal conv (centre + window) and its 1x1 out
    step += (L - 1) * ((p + 1) * Fw * 2 * Fw + Fw * Fw)
    step += Fw * m + m * C * cfg.levels  # head
    row = (p0 + 1) * cfg.input_kernel * C * 2 * Fw + (L - 1) * (p + 1) * cfg.kernel * Fw * 2 * Fw
    row += L * Fw * 2 * Fw  # vertical -> horizontal links
    return 2 * (C * step + row)


def gated_dense_flops_per_pixel(cfg) -> int:
    """Gated PixelCNN: one full forward per pixel (both stacks, links, head), dense kernels."""
    C, Fw, m, L = cfg.channels, cfg.hidden, cfg.head_hidden, cfg.layers
    p0, p, k0, k = cfg.input_kernel // 2, cfg.kernel // 2, cfg.input_kernel, cfg.kernel
    macs = (p0 + 1) * k0 * C * 2 * Fw + (p0 + 1) * C * 2 * Fw
    macs += (L - 1) * ((p + 1) * k * Fw * 2 * Fw + (p + 1) * Fw * 2 * Fw)
    macs += L * (Fw * 2 * Fw + Fw * Fw) + Fw * m + m * C * cfg.levels
    return 2 * macs


# family -> (cached step FLOPs per pixel, dense full forward FLOPs per pixel)
FLOPS = {
    "pixelcnn": (step_flops_per_pixel, dense_flops_per_pixel),
    "gated": (gated_step_flops_per_pixel, gated_dense_flops_per_pixel),
}


def flops_per_pixel(family: str, cfg) -> tuple[int | None, int | None]:
    """(cached step, dense full forward) FLOPs per pixel, or (None, None) where the family's are not counted."""
    step, dense = FLOPS.get(family, (None, None))
    return (None, None) if step is None else (step(cfg), dense(cfg))
