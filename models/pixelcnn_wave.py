"""PixelCNN's wavefront module: the step path for several pixels of each image per call.

In a PixelCNN every cached window reads the rows above at most ``pad`` columns to the right of the
pixel (pad = k // 2 of its conv), so once row i - 1 is ``lag = max pad + 1`` pixels ahead, pixel
(i, j) has all it reads. Row i runs ``lag`` pixels behind row i - 1: at call t the pixels
(i, t - lag * i) of every row in reach are independent, and an image takes W + lag * (H - 1) calls
per sub-step instead of H * W (ref28: 136 instead of 784).

The arithmetic per pixel is the step module's (``PixelCNNStep.trunk``), on the same ring-buffer states
with the same slot rule; only the window gather takes per-pixel positions. The rings need no extra
rows: a row that shares a slot with row i - pad - 1 writes ``lag`` columns behind where any row still
reads it, since lag > pad (checked by the manifest: ``Manifest._check_wavefront``). The pixels in flight
are flattened into the GEMMs' rows, so at batch B a call multiplies B * P rows at once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pixelrt.bundle.graphs import Wavefront, wave_graph
from pixelrt.models.contract import StepModule


def reach(step) -> int:
    """Columns to the right of a pixel that its windows read in the rows above: the largest ring pad."""
    return max(s.pad for s in step.states)


class PixelCNNWave(StepModule):
    """P pixels of each image per call from the step module's caches.

    Inputs: pixel (B, P, C) int64, rows/cols (P,) int64, channel () int64, force (B, P) int64,
    noise (B, P) float32, then the step module's states. Outputs: value, logp (B, P) and each ring
    state's new columns (B, P, L, C), which the host writes at each pixel's (slot, column).
    """

    def __init__(self, step):
        super().__init__()
        self.step, self.states = step, step.states
        self.lag = reach(step) + 1
        self.graph = wave_graph(step.channels, step.states)
        self.wavefront = Wavefront("wave", self.lag)

    def _window(self, stack, cache, key):
        """(B * P, L, rows*k*Cin): the taps of every layer at each pixel in flight (one lookup per pixel)."""
        B, L = cache.shape[0], stack.layers
        index = F.embedding(key, stack.index)  # (P, taps)
        P = index.shape[0]
        flat = cache.reshape(B, L, -1, cache.shape[-1])  # (B, L, rows*(W+2p), Cin)
        window = flat.index_select(2, index.reshape(-1)).reshape(B, L, P, -1)  # (B, L, P, taps*Cin)
        return window.transpose(1, 2).reshape(B * P, L, -1)

    def forward(self, pixel, rows, cols, channel, force, noise, input_cache, block_cache):
        s = self.step
        B, P = force.shape[0], rows.shape[0]
        key = torch.remainder(rows, s.phases) * s.width + cols
        value, logp, new_0, new_1 = s.trunk(pixel.reshape(B * P, -1), self._window(s.input_window, input_cache, key),
                                            self._window(s.block_windows, block_cache, key), channel,
                                            force.reshape(B * P), noise.reshape(B * P))
        return (value.reshape(B, P), logp.reshape(B, P), new_0.reshape(B, P, 1, -1),
                new_1.reshape(B, P, s.blocks, -1))
