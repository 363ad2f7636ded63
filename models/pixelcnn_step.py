"""PixelCNN's step module: one sub-pixel from cached rows, written for few, large graph operations.

At batch 1 a step is almost all per-node overhead in ONNX Runtime (docs/architecture.md, "Step-loop
speed"), so the arithmetic is arranged to leave ORT's optimiser as few nodes as it allows:

* each cached window (every block's kxk taps, the input conv's taps) is one table Gather of flat indices,
  one Gather from the stacked state and one batched MatMul, its bias added once for all blocks;
* a block is three GEMMs-with-epilogue after ORT's fusions: ``relu(relu(h) @ Wr + br)`` (FusedGemm),
  ``relu(a @ Wc + window)`` (FusedGemm whose C input is the block's cached taps plus bias) and
  ``h + c @ We + be`` (Gemm whose C input is the residual). The expand bias rides on a constant-1
  column: the window bias of that column is 1 and its weights are 0, so ``relu`` keeps it at 1, and
  ``We`` gets ``be`` as an extra row;
* the new cache columns leave as one Concat + Reshape, and a one-channel head skips the channel pick.

Weights stay the second GEMM operand, exported as MatMul + Add (what ORT prepacks and what the FP16 /
INT8 tools expect), and the image is normalised by the same nodes as before, so an FP16 copy rounds it
the way its full graph does. Same inputs, outputs and states as before (the bundle's step contract), so
the host loop and the TensorRT loop drive it unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pixelrt.bundle.graphs import step_graph, step_schedule
from pixelrt.models.categorical import categorical_step, normalize
from pixelrt.models.contract import StepModule
from pixelrt.models.layers import ConvWindowStack, RowCache, ring_states


def _centre(conv) -> tuple[torch.Tensor, torch.Tensor]:
    """(Cin, Cout) centre tap and bias of a masked conv, detached."""
    w = conv.masked_weight().detach()
    p = conv.kernel // 2
    return w[:, :, p, p].t().contiguous(), conv.bias.detach().clone()


class PixelCNNStep(StepModule):
    """One sub-pixel of a PixelCNN from cached rows: the model's step path.

    Inputs (names as exported):
      pixel (B, C) int64     channels < ``channel`` of the current pixel (the rest is ignored)
      row, col, channel      int64 scalars: the sub-pixel to produce
      force (B,) int64       the true value to teacher-force, or -1 to sample
      noise (B,) float32     uniform in [0, 1) for the inverse-CDF sampler
      cache_0                (B, 1, rows, W+2p, C): the input conv's rows
      cache_1                (B, n, rows, W+2p, h): every residual block's kxk conv rows, stacked
    Outputs:
      value (B,) int64, logp (B,) float32, new_0 (B, 1, C), new_1 (B, n, h): each cache's
      input at (row, col). The host writes them into the caches once the pixel's last
      channel is done.
    """

    def __init__(self, model, width: int):
        super().__init__()
        cfg = model.config
        C, L = cfg.channels, cfg.blocks
        self.channels, self.levels, self.blocks = C, cfg.levels, L
        # Weights are the second GEMM operand, (in, out), and every bias is named ``bias``: the form ORT prepacks
        # and the FP16 / INT8 tools expect (calibration/graphs.py). Exported as MatMul + Add, fused by ORT.
        w0, b0 = _centre(model.input_conv)
        self.input_window = ConvWindowStack([model.input_conv], width=width)
        self.register_buffer("w_input", self.input_window.w_window[0].clone())  # (K0, 2h)
        # The centre tap runs on the normalised pixel even where the mask zeroes it (Mask A, one channel), and
        # the first conv's cached input is normalised by the same nodes: an FP16 copy then rounds the image the
        # way its full graph does (an exact FP32 column moved FP16 step vs full from 2e-4 to 1.4e-3 bits/dim).
        self.register_buffer("w_centre", w0)  # (C, 2h)
        self.register_buffer("input_bias", b0)
        # blocks: window bias = conv bias, plus a constant-1 column that carries the expand bias
        half = model.blocks[0].conv.in_channels
        bias = torch.stack([torch.cat([b.conv.bias.detach(), torch.ones(1)]) for b in model.blocks])  # (L, h+1)
        self.block_windows = ConvWindowStack([b.conv for b in model.blocks], bias=bias, extra=1, width=width)
        cen = [[_centre(m) for m in (b.reduce, b.conv, b.expand)] for b in model.blocks]
        self.register_buffer("w_reduce", torch.stack([r[0] for r, _, _ in cen]))  # (L, 2h, h)
        self.register_buffer("reduce_bias", torch.stack([r[1] for r, _, _ in cen]))  # (L, h)
        self.register_buffer("w_conv", torch.stack([F.pad(c[0], (0, 1)) for _, c, _ in cen]))  # (L, h, h+1)
        self.register_buffer("w_expand", torch.stack(  # (L, h+1, 2h): the last row is the expand bias
            [torch.cat([e[0], e[1][None]]) for _, _, e in cen]))
        self.half = half
        wh, bh = _centre(model.head_hidden)
        wo, bo = _centre(model.head_out)
        self.register_buffer("w_head_hidden", wh)  # (2h, m)
        self.register_buffer("head_hidden_bias", bh)
        self.register_buffer("w_head_out", wo)  # (m, C*levels)
        self.register_buffer("head_out_bias", bo)
        # one lookup key for both windows: (row % phases) * W + col, phases a multiple of both rings
        self.phases, self.width = math.lcm(self.input_window.spec.rows, self.block_windows.spec.rows), width
        for stack in (self.input_window, self.block_windows):
            stack.index = stack.index_table(self.phases)
        caches: list[tuple[RowCache, int]] = [(self.input_window.spec, 1), (self.block_windows.spec, L)]
        self.states = tuple(ring_states(caches, width))
        self.graph, self.schedule = step_graph(C, self.states), step_schedule(C)

    def weight_macs(self) -> int:
        """Multiply-adds per step of the model's own weights (the constant-1 bias row and column not
        counted): what ``bench/flops.py`` counts."""
        L, h = self.blocks, self.half
        per_block = self.w_reduce[0].numel() + h * h + self.block_windows.w_window[0, :, :h].numel() + \
            h * self.w_expand.shape[2]
        return (self.input_window.w_window.numel() + self.w_centre.numel() + L * per_block
                + self.w_head_hidden.numel() + self.w_head_out.numel())

    def forward(self, pixel, row, col, channel, force, noise, input_cache, block_cache):
        key = torch.remainder(row, self.phases) * self.width + col
        return self.trunk(pixel, self.input_window.window(input_cache, row, col, key),
                          self.block_windows.window(block_cache, row, col, key), channel, force, noise)

    def trunk(self, pixel, input_window, block_window, channel, force, noise, window_weights=None, products=None):
        """Everything after the cache reads: ``input_window`` (B, 1, K0) and ``block_window`` (B, n, K) are
        the gathered taps (``ConvWindowStack.window``) of the input conv and of every block.
        ``window_weights``: (input, blocks) window weights for windows gathered without some taps (the
        wavefront's, without the masked ones); default the stacks' own. ``products``: the blocks' windows
        (n, B, h+1) already multiplied by their weights and their bias added (the batch-last wavefront's);
        ``block_window`` is then not used."""
        B = pixel.shape[0]
        x = normalize(pixel, self.levels)  # (B, C)
        w_input = self.w_input if window_weights is None else window_weights[0]
        h = input_window.reshape(B, -1) @ w_input + (x @ self.w_centre + self.input_bias)  # (B, 2h)
        if products is not None:
            windows = products
        elif window_weights is None:
            windows = self.block_windows.taps(block_window)  # (n, B, h+1): taps + bias, constant-1 column
        else:
            windows = torch.bmm(block_window.transpose(0, 1), window_weights[1]) + self.block_windows.bias
        new = []
        for k in range(self.blocks):
            a = F.relu(F.relu(h) @ self.w_reduce[k] + self.reduce_bias[k])  # (B, h): the kxk conv's input
            c = F.relu(a @ self.w_conv[k] + windows[k])  # (B, h+1), last column 1
            h = h + c @ self.w_expand[k]  # h + c We + be
            new.append(a)
        hidden = F.relu(F.relu(h) @ self.w_head_hidden + self.head_hidden_bias)  # (B, m)
        out = hidden @ self.w_head_out + self.head_out_bias  # (B, C*levels)
        value, logp, full = categorical_step(out, pixel, channel, force, noise, self.channels, self.levels)
        new_0 = normalize(full, self.levels).reshape(B, 1, self.channels)  # the first conv's input
        return value, logp, new_0, torch.cat(new, dim=1).reshape(B, self.blocks, self.half)
