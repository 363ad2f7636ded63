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


def live_taps(stack) -> torch.Tensor:
    """Indices (into a window's rows*k taps, row-major) of the taps a masked conv reads: every tap of the rows
    above, and the current row left of the centre (the centre comes from the fresh input; the right is masked)."""
    rows, k, pad = len(stack.row_offsets), len(stack.col_offsets), stack.spec.pad
    return torch.tensor([r * k + c for r in range(rows) for c in range(k) if r < rows - 1 or c < pad])


def reach(step) -> int:
    """Columns to the right of a pixel that its windows read in the rows above: the largest ring pad."""
    return max(s.pad for s in step.states)


class PixelCNNWave(StepModule):
    """P pixels of each image per call from the step module's caches.

    Inputs: pixel (B, P, C) int64, rows/cols (P,) int64, channel () int64, force (B, P) int64,
    noise (B, P) float32, then the step module's states. Outputs: value, logp (B, P) and each ring
    state's new columns (B, P, L, C), which the host writes at each pixel's (slot, column).

    Each window is one table lookup per pixel and one Gather from the state with its layers, rows and
    columns flattened, straight into (B, P, L, taps, C) order (no Transpose), and every reshape has a
    constant target (no shape arithmetic in the graph): the nodes ORT runs per call are the step
    graph's plus the batch/pixel flattening. The sampler sums the CDF levels-first and counts levels with a
    MatMul (``heads.inverse_cdf_sample``): the same CDF and the same integers as the step graph's.
    """

    def __init__(self, step):
        super().__init__()
        self.step, self.states = step, step.states
        self.lag = reach(step) + 1
        self.graph = wave_graph(step.channels, step.states)
        self.wavefront = Wavefront("wave", self.lag)
        for name, stack in (("input", step.input_window), ("blocks", step.block_windows)):
            keep = live_taps(stack)  # the masked taps (current row, centre and right) are not read at all
            per_layer = stack.spec.rows * (step.width + 2 * stack.spec.pad)  # flat positions of one layer
            table = stack.index[:, keep][:, None, :] + torch.arange(stack.layers)[None, :, None] * per_layer
            self.register_buffer(f"index_{name}", table.reshape(table.shape[0], -1).clone())  # (phases*W, L*taps)
            L, _, N = stack.w_window.shape
            w = stack.w_window.reshape(L, len(stack.row_offsets) * len(stack.col_offsets), -1, N)[:, keep]
            self.register_buffer(f"w_{name}", w.reshape(L, -1, N).clone())  # (L, taps * Cin, N)

    @staticmethod
    def _window(cache, index, key, layers: int):
        """(B * P, L, taps*C): every layer's taps at each pixel in flight, in one Gather."""
        flat = cache.reshape(cache.shape[0], -1, cache.shape[-1])  # (B, L*rows*(W+2p), C)
        window = flat.index_select(1, F.embedding(key, index).reshape(-1))  # (B, P*L*taps, C)
        return window.reshape(-1, layers, index.shape[1] // layers * cache.shape[-1])

    def forward(self, pixel, rows, cols, channel, force, noise, input_cache, block_cache):
        s = self.step
        key = torch.remainder(rows, s.phases) * s.width + cols
        value, logp, new_0, new_1 = s.trunk(
            pixel.reshape(-1, s.channels), self._window(input_cache, self.index_input, key, 1),
            self._window(block_cache, self.index_blocks, key, s.blocks), channel, force.reshape(-1),
            noise.reshape(-1), count="levels-first", window_weights=(self.w_input[0], self.w_blocks))
        return (value.reshape_as(force), logp.reshape_as(noise), new_0.reshape(*force.shape, 1, s.channels),
                new_1.reshape(*force.shape, s.blocks, s.half))
