"""Gated PixelCNN step path: a per-pixel step module and a per-row module for the vertical stack.

Why two graphs: the vertical stack at row r reads row r up to p columns right of
the current one, so it cannot run pixel by pixel. Its output is only used one row
later (shifted down), so it runs once, after row r is finished, for every column
at once (``GatedPixelCNNRow``): O(W) per row, O(1) per pixel, as the vertical
stack of Ramachandran et al.'s fast generation does. It leaves, per layer, the
link into the horizontal gates of row r+1 (``link``, (B, L, W, 2F)) which the
step module gathers at ``col``: the vertical stack costs the step one Gather.

States (all zero before the first pixel):
  cache_0  ring-row (B, 1, 1, W+2p0, C)     the image row so far (first horizontal conv's input)
  cache_1  ring-row (B, L-1, 1, W+2p, F)    the row so far of each later horizontal conv's input
  vrows_0  row      (B, C, p0, W+2p0)       the last p0 image rows (first vertical conv's window)
  vrows_1  row      (B, L-1, F, p, W+2p)    the last p rows of each later vertical conv's input
  link     row      (B, L, W, 2F)           vertical -> horizontal link of the next row
Conditioning enters both graphs as context inputs: ``label`` (B,) int64 and
``cond`` (B, Cc, H, W) float32; the step gathers the map at (row, col), the row
module takes row ``row`` of it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle.graphs import row_graph, row_state, step_graph, step_schedule
from pixelrt.models.categorical import CategoricalStepHead
from pixelrt.models.contract import StepModule
from pixelrt.models.gated_layers import HorizontalWindowStack, gate
from pixelrt.models.layers import RowCache, ring_states
from pixelrt.models.pixelcnn import normalize


def _context(names: list[str], args: tuple) -> tuple[dict, tuple]:
    return dict(zip(names, args[: len(names)])), args[len(names):]


def gated_states(model, width: int) -> tuple:
    """The ring-row states of the horizontal stack, then the row module's vrows_0, vrows_1 and link."""
    cfg = model.config
    L, Fw, C = cfg.layers, cfg.hidden, cfg.channels
    first, rest = model.layers[0].hconv, model.layers[1].hconv
    caches: list[tuple[RowCache, int]] = [(first.cache, 1), (rest.cache, L - 1)]
    p0, p = model.layers[0].vconv.pad, model.layers[1].vconv.pad
    return (*ring_states(caches, width), row_state("vrows_0", (C, p0, width + 2 * p0)),
            row_state("vrows_1", (L - 1, Fw, p, width + 2 * p)), row_state("link", (L, width, 2 * Fw)))


class GatedPixelCNNStep(StepModule):
    """One sub-pixel from the cached current row and the row module's link (see module doc)."""

    def __init__(self, model, width: int):
        super().__init__()
        cfg = model.config
        self.channels, self.levels, self.groups = cfg.channels, cfg.levels, cfg.channels
        self.context_names = list(cfg.context_names)
        first, rest = model.layers[0], list(model.layers[1:])
        self.window_0 = HorizontalWindowStack([first.hconv])
        self.window_1 = HorizontalWindowStack([layer.hconv for layer in rest])
        centres = [layer.hconv.centre() for layer in model.layers]
        self.register_buffer("w_centre_0", centres[0][0])
        self.register_buffer("w_centre_1", torch.stack([w for w, _ in centres[1:]]))  # (L-1, F, 2F)
        self.register_buffer("b_centre", torch.stack([b for _, b in centres])[:, None])  # (L, 1, 2F)
        self.outs = nn.ModuleList(layer.out.stepper() for layer in model.layers)
        self.cond_h = model.cond_h
        self.head = CategoricalStepHead(model.head_hidden, model.head_out, cfg.channels, cfg.levels)
        self.layers, self.width = cfg.layers, cfg.hidden
        states, ctx = gated_states(model, width), model.conditioning
        self.states = states
        self.graph = step_graph(cfg.channels, [s for s in states if s.name not in ("vrows_0", "vrows_1")], ctx)
        self.schedule = step_schedule(cfg.channels, context=ctx, row_graph="row")

    def forward(self, pixel, row, col, channel, force, noise, *args):
        ctx, (cache_0, cache_1, link) = _context(self.context_names, args)
        x = normalize(pixel, self.levels)  # (B, C)
        cond = ctx.get("cond")
        cond_vec = None if cond is None else \
            cond.index_select(2, row.reshape(1)).index_select(3, col.reshape(1)).flatten(1)  # (B, Cc)
        bias = self.cond_h.at(ctx.get("label"), cond_vec)  # (L, B, 2F) or None
        # every layer's gate input but its centre tap, in one tensor: the link from the row above, the cached
        # taps left of the pixel and the biases; each layer's centre GEMM then takes its slice as the C input
        links = link.index_select(2, col.reshape(1)).squeeze(2).transpose(0, 1)  # (L, B, 2F)
        rest = links + torch.cat([self.window_0(cache_0, col), self.window_1(cache_1, col)]) + self.b_centre
        rest = rest if bias is None else rest + bias
        h = self.outs[0](self._gate(x @ self.w_centre_0 + rest[0]))
        new = []
        for k in range(1, self.layers):
            new.append(h)
            h = h + self.outs[k](self._gate(h @ self.w_centre_1[k - 1] + rest[k]))
        value, logp, full = self.head(h, pixel, channel, force, noise)
        new_1 = torch.cat(new, 1).reshape(pixel.shape[0], self.layers - 1, -1)  # one Concat + Reshape
        return value, logp, normalize(full, self.levels).unsqueeze(1), new_1

    def _gate(self, a):
        """``gate`` for one colour group as one Split: tanh of the first half times sigmoid of the second."""
        if self.groups > 1:
            return gate(a, self.groups)
        t, s = a.chunk(2, dim=1)
        return torch.tanh(t) * torch.sigmoid(s)


class GatedPixelCNNRow(StepModule):
    """The vertical stack for one finished row r: new vertical windows and the link for row r+1."""

    def __init__(self, model, width: int):
        super().__init__()
        cfg = model.config
        self.levels, self.layers, self.width = cfg.levels, cfg.layers, cfg.hidden
        self.context_names = list(cfg.context_names)
        self.vconvs = nn.ModuleList(layer.vconv for layer in model.layers)
        self.register_buffer("w_link", torch.stack(
            [layer.link.weight.detach()[:, :, 0, 0].t() for layer in model.layers]))  # (L, F, 2F)
        self.cond_v = model.cond_v
        self.pad_0, self.pad = self.vconvs[0].pad, self.vconvs[1].pad
        rows = [s for s in gated_states(model, width) if s.update == "row"]
        self.graph = row_graph(cfg.channels, width, rows[:2], rows, model.conditioning)

    def forward(self, row_pixels, row, *args):
        ctx, (vrows_0, vrows_1) = _context(self.context_names, args)
        cond = ctx.get("cond")
        cond_row = None if cond is None else cond.index_select(2, row.reshape(1)).squeeze(2)  # (B, Cc, W)
        bias = self.cond_v.row(ctx.get("label"), cond_row)  # (L, B, 2F, W) or None
        x = F.pad(normalize(row_pixels, self.levels), (self.pad_0, self.pad_0))  # (B, C, W+2p0)
        window = torch.cat([vrows_0, x.unsqueeze(2)], dim=2)  # rows r-p0..r
        new_0 = window[:, :, 1:]
        a = self.vconvs[0].row(window)
        v = gate(a if bias is None else a + bias[0])  # (B, F, W)
        links, new_1 = [v.transpose(1, 2) @ self.w_link[0]], []
        for k in range(1, self.layers):
            window = torch.cat([vrows_1[:, k - 1], F.pad(v, (self.pad, self.pad)).unsqueeze(2)], dim=2)
            new_1.append(window[:, :, 1:])
            a = self.vconvs[k].row(window)
            v = gate(a if bias is None else a + bias[k])
            links.append(v.transpose(1, 2) @ self.w_link[k])  # (B, W, 2F)
        return new_0, torch.stack(new_1, dim=1), torch.stack(links, dim=1)
