"""PixelCNN++ cached generation, the per-row half: the u stream of the next row at every resolution
that advances (``PixelCNNPPRow``, exported as ``row.onnx``), and the helpers the step graph shares.

The scheme (which resolution runs when, what each conv caches) is described in
``models/pixelcnnpp_step.py``, which holds the per-pixel half.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle.graphs import row_graph, row_state
from pixelrt.models import logistic
from pixelrt.models.contract import StepModule
from pixelrt.models.pixelcnnpp_layers import GatedResnet, block_counts, concat_elu

if TYPE_CHECKING:
    from pixelrt.models.pixelcnnpp import PixelCNNPP

# -- shared helpers ------------------------------------------------------------------
def _split_nin(block: GatedResnet, filters: int):
    """nin of a decoder ul block reads concat_elu([u, ul]) = elu([u, ul, -u, -ul]): its u part
    (weights on elu(u), elu(-u); with the bias) and ul part (weights on elu(ul), elu(-ul))."""
    w = block.nin.weight.detach()[:, :, 0, 0]  # (F, 4F)
    Fw = filters
    w_u = torch.cat([w[:, :Fw], w[:, 2 * Fw:3 * Fw]], dim=1)
    w_ul = torch.cat([w[:, Fw:2 * Fw], w[:, 3 * Fw:]], dim=1)
    return w_u, w_ul, block.nin.bias.detach()


def _nin_u_weights(block: GatedResnet, filters: int, decoder: bool):
    if decoder:
        w_u, _, b = _split_nin(block, filters)
        return w_u, b
    return block.nin.weight.detach()[:, :, 0, 0], block.nin.bias.detach()


_TRACING = [False]


class tracing_for_export:
    """While active, resolution branches become ``torch.cond`` (an ONNX ``If``); eagerly they are
    plain Python branches, which is what the PyTorch step runner wants."""

    def __enter__(self):
        _TRACING.append(True)

    def __exit__(self, *exc):
        _TRACING.pop()


def _cond(pred, true_fn, false_fn, operands: list):
    if _TRACING[-1]:
        return torch.cond(pred, true_fn, false_fn, tuple(operands))
    return true_fn(*operands) if bool(pred) else false_fn(*operands)


# -- row graph: the u stream, one row at a time ---------------------------------------------
def conv_row(conv, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """A 2x3 down-shifted conv's output row from its input rows r-1 and r: (B, Cin, W) x2 -> (B, Cout, W')."""
    x = F.pad(torch.stack([prev, cur], dim=2), (1, 1, 0, 0))
    return F.conv2d(x, conv.conv.weight, conv.conv.bias, stride=(1, conv.stride)).squeeze(2)


def up_row(deconv, coarse: torch.Tensor, tap: torch.Tensor) -> torch.Tensor:
    """Fine row 2a + tap of a stride-2 transposed 2x3 down-shifted conv from coarse row a: (B, Cin, Wc) -> (B, Cout, 2Wc)."""
    y = F.conv_transpose2d(coarse.unsqueeze(2), deconv.deconv.weight, deconv.deconv.bias, stride=2)
    Wc = coarse.shape[-1]
    return y.index_select(2, tap.reshape(1)).squeeze(2)[:, :, 1:1 + 2 * Wc]


class PixelCNNPPRow(StepModule):
    """The per-row graph: after row i, the u stream of row i + 1 at every resolution that advances.

    Inputs: row_pixels (B, C, W) int64 (row i), row (scalar i), then the row states
    (``state_names``). Outputs: the new row states, named ``<state>_next``.
    """

    def __init__(self, model: PixelCNNPP, width: int, bootstrap: bool = True):
        super().__init__()
        cfg = model.config
        cfg.check_image(width, width)
        self.m, self.cfg, self.width = model, cfg, width
        self.R, self.Fw = cfg.resolutions, cfg.filters
        self.enc, self.dec = block_counts(cfg)
        self.nin_u = nn.ModuleList()
        self.consts = None
        if bootstrap:
            boot = PixelCNNPPRow(model, width, bootstrap=False)
            zeros = [torch.zeros(1, *s) for s in boot.state_shapes()]
            with torch.no_grad():
                out = boot(torch.zeros(1, cfg.channels, width, dtype=torch.long), torch.tensor(-1), *zeros)
            for name, t in zip(self.state_names(), out):
                self.register_buffer(f"const_{name}", t.detach().clone())
            self.consts = True
        self.graph = row_graph(cfg.channels, width, self.states(), self.states())

    def state_names(self) -> list[str]:
        names = ["x_prev"]
        for l in range(self.R):
            names += [f"u{l}_cache", f"u{l}_feed"]
            if l < self.R - 1:
                names.append(f"u{l}_down_in")
            if l > 0:
                names.append(f"u{l}_dec_out")
        return names

    def state_shapes(self) -> list[tuple]:
        C, Fw = self.cfg.channels, self.Fw
        shapes = {"x_prev": (C + 1, self.width)}
        for l in range(self.R):
            Wl = self.width >> l
            shapes[f"u{l}_cache"] = (2 * (self.enc[l] + self.dec[l]), 2 * Fw, Wl)
            shapes[f"u{l}_feed"] = (Wl, self.enc[l] + self.dec[l], Fw)
            shapes[f"u{l}_down_in"] = (Fw, Wl)
            shapes[f"u{l}_dec_out"] = (Fw, Wl)
        return [shapes[n] for n in self.state_names()]

    def states(self) -> list:
        """The u stream's states, each replaced after every finished row by output ``{name}_next``."""
        return [row_state(n, s, f"{n}_next") for n, s in zip(self.state_names(), self.state_shapes())]

    def forward(self, row_pixels, row, *states):
        names = self.state_names()
        S = dict(zip(names, states))
        if self.consts:  # before the first row graph run, the states are those of virtual row -1
            first = row == 0
            S = {n: torch.where(first, getattr(self, f"const_{n}"), S[n]) for n in names}
        m, cfg = self.m, self.cfg
        valid = (row >= 0).to(torch.float32)
        xf = logistic.normalize(row_pixels, cfg.levels)
        x_cur = torch.cat([xf, torch.ones_like(xf[:, :1])], dim=1) * valid  # (B, C+1, W); zero padding above the image
        r = row + 1
        u0 = conv_row(m.u_in, S["x_prev"], x_cur) * (r > 0).to(torch.float32)  # down_shift: row 0 is zero
        out = self._level(0, u0, r, S)
        out["x_prev"] = x_cur
        return tuple(out[n] for n in names)

    def _level(self, l: int, h: torch.Tensor, r_l: torch.Tensor, S: dict) -> dict:
        """Level l's row r_l (encoder, coarser levels if they advance, decoder): new states of levels >= l."""
        m = self.m
        cache = S[f"u{l}_cache"]
        new_cache, feeds, E = [], [], [h]
        slot = 0
        for k, (u_block, ul_block) in enumerate(zip(m.u_enc[l], m.ul_enc[l])):
            h, ins = self._block(u_block, h, cache, slot, None)
            new_cache += ins
            slot += 2
            E.append(h)
            feeds.append(self._nin_u(ul_block, h, decoder=False))
        out = {}
        if l < self.R - 1:
            deeper = [n for n in self.state_names() if n[0] == "u" and int(n[1:].split("_")[0]) > l]
            top = E[-1]

            def advance(top, down_in, r_l, *deep):
                S2 = dict(zip(deeper, deep))
                h1 = conv_row(m.u_down[l], down_in, top)
                res = self._level(l + 1, h1, torch.div(r_l, 2, rounding_mode="floor"), S2)
                return tuple(res[n] for n in deeper)

            def keep(top, down_in, r_l, *deep):
                return tuple(t.clone() for t in deep)

            deep = _cond(r_l % 2 == 0, advance, keep, [top, S[f"u{l}_down_in"], r_l] + [S[n] for n in deeper])
            out.update(zip(deeper, deep))
            u = up_row(m.u_up[l], out[f"u{l + 1}_dec_out"], r_l % 2)
            out[f"u{l}_down_in"] = top
        else:
            u = E.pop()
        for u_block, ul_block in zip(m.u_dec[l], m.ul_dec[l]):
            u, ins = self._block(u_block, u, cache, slot, E.pop())
            new_cache += ins
            slot += 2
            feeds.append(self._nin_u(ul_block, u, decoder=True))
        out[f"u{l}_cache"] = torch.stack(new_cache, dim=1)
        out[f"u{l}_feed"] = torch.stack(feeds, dim=2)  # (B, W_l, L, F)
        if l > 0:
            out[f"u{l}_dec_out"] = u
        return out

    @staticmethod
    def _block(block: GatedResnet, x, cache, slot: int, skip):
        in1 = concat_elu(x)
        c1 = conv_row(block.conv1, cache[:, slot], in1)
        if skip is not None:
            c1 = c1 + F.conv1d(concat_elu(skip), block.nin.weight[:, :, 0], block.nin.bias)
        in2 = concat_elu(c1)
        c2 = conv_row(block.conv2, cache[:, slot + 1], in2)
        a, b = c2.chunk(2, dim=1)
        return x + a * torch.sigmoid(b), [in1, in2]

    def _nin_u(self, ul_block: GatedResnet, u, decoder: bool):
        """The u part of a ul block's nin for every column: (B, F, W) -> (B, W, F)."""
        w, b = _nin_u_weights(ul_block, self.Fw, decoder)
        return (F.conv1d(concat_elu(u), w.unsqueeze(-1), b)).transpose(1, 2)
