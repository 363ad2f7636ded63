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

from pixelrt.models.gated_layers import HorizontalWindowStack, gate
from pixelrt.models.heads import gather_logp, inverse_cdf_sample, log_softmax
from pixelrt.models.layers import RowCache
from pixelrt.models.pixelcnn import normalize


def _context(names: list[str], args: tuple) -> tuple[dict, tuple]:
    return dict(zip(names, args[: len(names)])), args[len(names):]


class GatedPixelCNNStep(nn.Module):
    """One sub-pixel from the cached current row and the row module's link (see module doc)."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.channels, self.levels, self.groups = cfg.channels, cfg.levels, cfg.channels
        self.context_names = list(cfg.context_names)
        first, rest = model.layers[0], list(model.layers[1:])
        self.window_0 = HorizontalWindowStack([first.hconv])
        self.window_1 = HorizontalWindowStack([layer.hconv for layer in rest])
        centres = [layer.hconv.centre() for layer in model.layers]
        self.register_buffer("w_centre_0", centres[0][0])
        self.register_buffer("b_centre_0", centres[0][1])
        self.register_buffer("w_centre_1", torch.stack([w for w, _ in centres[1:]]))  # (L-1, F, 2F)
        self.register_buffer("b_centre_1", torch.stack([b for _, b in centres[1:]]))  # (L-1, 2F)
        self.outs = nn.ModuleList(layer.out.stepper() for layer in model.layers)
        self.cond_h = model.cond_h
        self.head_hidden = model.head_hidden.stepper()
        self.head_out = model.head_out.stepper()
        self.register_buffer("channel_ids", torch.arange(cfg.channels))
        self.layers, self.width = cfg.layers, cfg.hidden

    @property
    def caches(self) -> list[tuple[RowCache, int]]:
        """(geometry, stacked layers) of each ring-row state, in input order."""
        return [(self.window_0.spec, 1), (self.window_1.spec, self.window_1.layers)]

    def row_states(self, width: int) -> list[tuple[str, str, tuple]]:
        """(name, row-graph output, per-image shape) of each ``row`` state (export/row_graph.py's protocol)."""
        L, Fw, C, p0, p = self.layers, self.width, self.channels, self.window_0.spec.pad, self.window_1.spec.pad
        shapes = {"vrows_0": (C, p0, width + 2 * p0), "vrows_1": (L - 1, Fw, p, width + 2 * p),
                  "link": (L, width, 2 * Fw)}
        return [(name, f"new_{name}", shape) for name, shape in shapes.items()]

    def input_names(self) -> list[str]:
        return (["pixel", "row", "col", "channel", "force", "noise"] + self.context_names
                + ["cache_0", "cache_1", "link"])

    def output_names(self) -> list[str]:
        return ["value", "logp", "new_0", "new_1"]

    def forward(self, pixel, row, col, channel, force, noise, *args):
        ctx, (cache_0, cache_1, link) = _context(self.context_names, args)
        x = normalize(pixel, self.levels)  # (B, C)
        cond = ctx.get("cond")
        cond_vec = None if cond is None else \
            cond.index_select(2, row.reshape(1)).index_select(3, col.reshape(1)).flatten(1)  # (B, Cc)
        bias = self.cond_h.at(ctx.get("label"), cond_vec)  # (L, B, 2F) or None
        links = link.index_select(2, col.reshape(1)).squeeze(2).transpose(0, 1)  # (L, B, 2F)
        windows = self.window_1(cache_1, col)  # (L-1, B, 2F)
        a = x @ self.w_centre_0 + self.b_centre_0 + self.window_0(cache_0, col)[0] + links[0]
        h = self.outs[0](gate(a if bias is None else a + bias[0], self.groups))
        new = []
        for k in range(1, self.layers):
            new.append(h)
            a = h @ self.w_centre_1[k - 1] + self.b_centre_1[k - 1] + windows[k - 1] + links[k]
            h = h + self.outs[k](gate(a if bias is None else a + bias[k], self.groups))
        out = self.head_out(F.relu(self.head_hidden(F.relu(h))))  # (B, C*levels)
        logits = out.reshape(out.shape[0], self.channels, self.levels).index_select(1, channel.reshape(1))
        logp_all = log_softmax(logits.squeeze(1), dim=-1)
        value = torch.where(force >= 0, force, inverse_cdf_sample(logp_all, noise))
        logp = gather_logp(logp_all, value, dim=-1)
        full = torch.where(self.channel_ids == channel, value.unsqueeze(1), pixel)
        return value, logp, normalize(full, self.levels).unsqueeze(1), torch.stack(new, dim=1)


class GatedPixelCNNRow(nn.Module):
    """The vertical stack for one finished row r: new vertical windows and the link for row r+1."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        self.levels, self.layers, self.width = cfg.levels, cfg.layers, cfg.hidden
        self.context_names = list(cfg.context_names)
        self.vconvs = nn.ModuleList(layer.vconv for layer in model.layers)
        self.register_buffer("w_link", torch.stack(
            [layer.link.weight.detach()[:, :, 0, 0].t() for layer in model.layers]))  # (L, F, 2F)
        self.cond_v = model.cond_v
        self.pad_0, self.pad = self.vconvs[0].pad, self.vconvs[1].pad

    def state_shapes(self, channels: int, width: int) -> dict[str, tuple]:
        """Per-image shapes of the row states, in input order (and ``link``, the step's input)."""
        L, Fw, p0, p = self.layers, self.width, self.pad_0, self.pad
        return {"vrows_0": (channels, p0, width + 2 * p0), "vrows_1": (L - 1, Fw, p, width + 2 * p),
                "link": (L, width, 2 * Fw)}

    def input_names(self) -> list[str]:
        return ["row_pixels", "row"] + self.context_names + ["vrows_0", "vrows_1"]

    def output_names(self) -> list[str]:
        return ["new_vrows_0", "new_vrows_1", "new_link"]

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
