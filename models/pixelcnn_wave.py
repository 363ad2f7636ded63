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
    noise (B, P) float32, then the ring states. Outputs: value, logp (B, P) and each ring state's new
    columns, which the host writes at each pixel's (slot, column); "batch-last" swaps B and P.
    ``layout`` (``bundle.state.WAVE_LAYOUTS``):

    * "batch-last" (what PixelCNN exports): each ring is (L, rows, W+2p, C, B), the per-pixel tensors
      (P, B) and the new columns (L, C, P, B). A window is one Gather of whole (C, B) blocks (all the
      batch's taps at a position at once). The blocks' window is then one MatMul with the weights as the
      first operand and the batch as its columns, and only its (L, P, N, B) product is transposed to the
      trunk's rows; the input conv's window, narrower than its product, is transposed first. The new
      columns leave through one 2-D transpose. At batch 64 the Gather copies 224 blocks of 8 KiB per
      call instead of 14,336 of 128 bytes (docs/architecture.md, "Round 3").
    * "batch-first": the step graph's own rings (B, L, rows, W+2p, C) and new columns (B, P, L, C). Each
      window is one table lookup per pixel and one Gather straight into (B, P, L, taps, C) order.

    Either way the trunk is the step module's (``PixelCNNStep.trunk``) with the pixels in flight flattened
    into its GEMMs' rows, every reshape has a constant target or the batch and pixel sizes, and the sampler
    is the step graph's (``heads.sample_categorical``): the same CDF and the same integers.
    """

    def __init__(self, step, layout: str = "batch-last"):
        super().__init__()
        self.step, self.states = step, step.states
        self.lag = reach(step) + 1
        self.wavefront = Wavefront("wave", self.lag, layout)
        self.graph = wave_graph(step.channels, step.states, front=self.wavefront)
        self.geometry = {}
        for name, stack in (("input", step.input_window), ("blocks", step.block_windows)):
            keep = live_taps(stack)  # the masked taps (current row, centre and right) are not read at all
            per_layer = stack.spec.rows * (step.width + 2 * stack.spec.pad)  # flat positions of one layer
            L, _, N = stack.w_window.shape
            w = stack.w_window.reshape(L, len(stack.row_offsets) * len(stack.col_offsets), -1, N)[:, keep]
            w = w.reshape(L, -1, N)  # (L, taps * Cin, N)
            self.geometry[name] = (L, per_layer, stack.spec.channels, w.shape[1], N)
            if self.wavefront.batch_last:
                self.register_buffer(f"index_{name}", stack.index[:, keep].clone())  # (phases*W, taps)
                # the blocks' window is multiplied before it is transposed (N = h+1 < taps*Cin); the input
                # conv's is transposed first (taps*Cin < 2h) and multiplied in the trunk, weights second
                self.register_buffer(f"w_{name}", w.transpose(1, 2)[:, None].contiguous() if name == "blocks"
                                     else w.clone())  # (L, 1, N, taps*Cin) / (1, taps*Cin, N)
                if name == "blocks":  # added to the (L, P, N, B) product, before its transpose: there the
                    # broadcast runs along B, 25 vs 45 us per call at batch 64 with 7 pixels in flight
                    self.register_buffer("bias_blocks", stack.bias.reshape(L, 1, N, 1).clone())
            else:
                table = stack.index[:, keep][:, None, :] + torch.arange(L)[None, :, None] * per_layer
                self.register_buffer(f"index_{name}", table.reshape(table.shape[0], -1).clone())  # (phases*W, L*taps)
                self.register_buffer(f"w_{name}", w.clone())

    @staticmethod
    def _window(cache, index, key, layers: int):
        """Batch-first: (B * P, L, taps*C), every layer's taps at each pixel in flight, in one Gather."""
        flat = cache.reshape(cache.shape[0], -1, cache.shape[-1])  # (B, L*rows*(W+2p), C)
        window = flat.index_select(1, F.embedding(key, index).reshape(-1))  # (B, P*L*taps, C)
        return window.reshape(-1, layers, index.shape[1] // layers * cache.shape[-1])

    def _taps(self, cache, name: str, key, pixels, batch):
        """Batch-last: (L, P, taps*C, B), every layer's window at each pixel in flight, in one Gather of
        (C, B) blocks."""
        L, positions, C, K, _ = self.geometry[name]
        flat = cache.reshape(L, positions, C, -1)  # (L, rows*(W+2p), C, B)
        taps = flat.index_select(1, F.embedding(key, getattr(self, f"index_{name}")).reshape(-1))  # (L, P*taps, C, B)
        return taps.reshape(L, pixels, K, batch)

    def _products(self, input_cache, block_cache, key, pixels, batch):
        """Batch-last: the input conv's window (P * B, taps*C) and the blocks' window products (L, P * B, N),
        bias added, rows in (p, b) order."""
        K0 = self.geometry["input"][3]
        window = self._taps(input_cache, "input", key, pixels, batch).transpose(2, 3).reshape(-1, K0)
        N = self.geometry["blocks"][-1]
        product = self.w_blocks @ self._taps(block_cache, "blocks", key, pixels, batch) + self.bias_blocks
        return window, product.transpose(2, 3).reshape(self.step.blocks, -1, N)

    def forward(self, pixel, rows, cols, channel, force, noise, input_cache, block_cache):
        s = self.step
        key = torch.remainder(rows, s.phases) * s.width + cols
        args = (pixel.reshape(-1, s.channels),)  # the GEMMs' rows: (b, p) batch-first, (p, b) batch-last
        if self.wavefront.batch_last:
            window, product = self._products(input_cache, block_cache, key, force.shape[0], force.shape[1])
            windows = dict(window_weights=(self.w_input[0], None), products=product)
            args += (window, None)
        else:
            windows = dict(window_weights=(self.w_input[0], self.w_blocks))
            args += (self._window(input_cache, self.index_input, key, 1),
                     self._window(block_cache, self.index_blocks, key, s.blocks))
        value, logp, new_0, new_1 = s.trunk(*args, channel, force.reshape(-1), noise.reshape(-1), **windows)
        if self.wavefront.batch_last:  # rows (p, b) -> (L, C, P, B): one transpose each (none for C = 1),
            # written straight to the output: (P, B, L, C) -> (L, C, P, B) is a 2-D transpose to ORT
            new_0 = new_0.reshape(-1, s.channels).t() if s.channels > 1 else new_0
            new_0 = new_0.reshape(1, s.channels, *force.shape)
            new_1 = new_1.reshape(*force.shape, s.blocks, s.half).permute(2, 3, 0, 1)
        else:
            new_0, new_1 = new_0.reshape(*force.shape, 1, s.channels), new_1.reshape(*force.shape, s.blocks, s.half)
        return value.reshape_as(force), logp.reshape_as(noise), new_0, new_1
