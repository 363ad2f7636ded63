"""PixelCNN++ cached generation (the Fast PixelCNN++ scheme, Ramachandran et al. 2017).

The u stream (rows above) of row r depends on rows < r only, so it is computed a
whole row at a time by the per-row graph (``PixelCNNPPRow``, ``models/pixelcnnpp_row.py``) after each finished
row; the ul stream (up and left) is computed one pixel at a time by the step
graph (``PixelCNNPPStep``), which reads the u stream's contribution for its
column from the row states. Every convolution caches only what its kernel
reads:

* row graph: each 2x3 down-shifted conv keeps its input's previous row (B, Cin, W_l);
  the row is convolved as a 2-row image. Resolution l (width W >> l) advances only
  on rows r with r % 2**l == 0 (``torch.cond``, exported as an ONNX ``If``); the
  stride-2 conv reads the finer level's previous and current rows, the transposed
  conv turns the coarser level's current row into this level's row (tap r % 2).
* step graph: each 2x2 down-right-shifted conv keeps a 2-row ring of its input at
  its own resolution (channels last, one zero column of left padding). Level l runs
  only at fine positions with i % 2**l == j % 2**l == 0 (nested ``If``); its caches
  are written by the host at those positions only (state update ``strided-ring-row``).
  The stride-2 conv into level l+1 reads the level-l cache of the last encoder
  output; the transposed conv back reads level l+1's decoder output at (a//2, b//2)
  with tap (a % 2, b % 2), fresh when this step computed it, else from a one-row cache.

Per step, level l costs one position's worth of work every 4**l steps, whatever
the image size. Row 0 needs u-stream values that no finished row produced: the
row module is run once at construction on a virtual row -1 (zero padding), and
its result is baked in as constants that both graphs select while no row graph
has run yet for that resolution.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle import StateSpec
from pixelrt.bundle.graphs import ring_state, step_graph, step_schedule
from pixelrt.models import logistic
from pixelrt.models.contract import StepModule
from pixelrt.models.pixelcnnpp_layers import block_counts, concat_elu
from pixelrt.models.pixelcnnpp_row import PixelCNNPPRow, _cond, _split_nin

if TYPE_CHECKING:
    from pixelrt.models.pixelcnnpp import PixelCNNPP


# -- step graph: the ul stream, one pixel at a time ------------------------------------------
class ShiftedWindow(nn.Module):
    """The cached taps of L stacked convs over a 2-row ring (rows a-1, a; slot (r + 1) % 2),
    columns b - left .. b - left + cols - 1 (cache padded by one zero column on the left and right).

    forward(cache (B, L, 2, W_l + 2, Cin), a, b) -> (L, B, Cout): one batched MatMul.
    """

    def __init__(self, windows: list[torch.Tensor], cols: int, left: int):
        super().__init__()
        # windows: (Cout, Cin, 2, cols) with the taps at or after the current position zeroed
        self.register_buffer("w", torch.stack([w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]) for w in windows]))
        self.register_buffer("row_offsets", torch.arange(2))
        self.register_buffer("col_offsets", torch.arange(cols) + (1 - left))

    def forward(self, cache, a, b):
        window = cache.index_select(3, b + self.col_offsets).index_select(2, torch.remainder(a + self.row_offsets, 2))
        window = window.reshape(window.shape[0], window.shape[1], -1).transpose(0, 1)
        return torch.bmm(window, self.w)


def _dr_window(conv) -> torch.Tensor:
    w = conv.conv.weight.detach().clone()  # (Cout, Cin, 2, 2): rows a-1, a; cols b-1, b
    w[:, :, 1, 1] = 0.0  # the current position comes from this step's input
    return w


def _centre(conv):
    return conv.conv.weight.detach()[:, :, -1, -1].t().contiguous(), conv.conv.bias.detach().clone()


SAMPLER = "gumbel-max component + logistic inverse CDF, clamped and rounded"


class PixelCNNPPStep(StepModule):
    """One whole pixel (all channels) from cached state; the ul stream at every due resolution.

    Inputs: row, col (int64 scalars), force (B, C) int64 (-1 = sample; (B,) when C = 1),
    noise (B, C*(K+1)) uniform, then the step states (``step_states``) and the row states
    the row graph owns (``u{l}_feed``). Outputs: value, logp (like force), then each step
    state's new column (``source``).
    """

    def __init__(self, model: PixelCNNPP, width: int):
        super().__init__()
        cfg = model.config
        cfg.check_image(width, width)
        self.cfg, self.width, self.R, self.Fw = cfg, width, cfg.resolutions, cfg.filters
        self.enc, self.dec = block_counts(cfg)
        row = PixelCNNPPRow(model, width)
        for l in range(self.R):  # the u stream of level row 0 (virtual row -1's row graph output)
            self.register_buffer(f"const_feed{l}", getattr(row, f"const_u{l}_feed").clone())
        m = model
        # ul input: rows i-1, i x cols j-1..j+1 of x_pad; down part (1x3 on row i-1), left part (2x1 at col j-1)
        C1, Fw = cfg.channels + 1, cfg.filters
        w = torch.zeros(Fw, C1, 2, 3)
        w[:, :, 0, :] += m.ul_in_up.conv.weight.detach()[:, :, 0, :]
        w[:, :, :, 0] += m.ul_in_left.conv.weight.detach()[:, :, :, 0]
        self.x_window = ShiftedWindow([w], cols=3, left=1)
        self.register_buffer("b_up", m.ul_in_up.conv.bias.detach().clone())
        self.register_buffer("b_left", m.ul_in_left.conv.bias.detach().clone())
        self.win1, self.win2 = nn.ModuleList(), nn.ModuleList()
        self.down_window, self.up_w, self.up_b = nn.ModuleList(), [], []
        for l in range(self.R):
            blocks = list(m.ul_enc[l]) + list(m.ul_dec[l])
            self.win1.append(ShiftedWindow([_dr_window(b.conv1) for b in blocks], cols=2, left=1))
            self.win2.append(ShiftedWindow([_dr_window(b.conv2) for b in blocks], cols=2, left=1))
            for k, b in enumerate(blocks):
                for name, conv in (("c1", b.conv1), ("c2", b.conv2)):
                    wc, bc = _centre(conv)
                    self.register_buffer(f"w{l}_{k}_{name}", wc)
                    self.register_buffer(f"b{l}_{k}_{name}", bc)
                if k >= self.enc[l]:
                    _, w_ul, _ = _split_nin(b, Fw)
                    self.register_buffer(f"w{l}_{k}_nin_ul", w_ul.t().contiguous())
            if l < self.R - 1:
                self.down_window.append(ShiftedWindow([_dr_window(m.ul_down[l])], cols=2, left=1))
                wc, bc = _centre(m.ul_down[l])
                self.register_buffer(f"w{l}_down", wc)
                self.register_buffer(f"b{l}_down", bc)
                wu = m.ul_up[l].deconv.weight.detach()  # (Cin, Cout, 2, 2)
                self.register_buffer(f"w{l}_up", wu.permute(2, 3, 0, 1).reshape(4, Fw, Fw).contiguous())
                self.register_buffer(f"b{l}_up", m.ul_up[l].deconv.bias.detach().clone())
        self.register_buffer("w_out", m.out.weight.detach()[:, :, 0, 0].t().contiguous())
        self.register_buffer("b_out", m.out.bias.detach().clone())

        row_states = row.states()
        self.states = (*self.step_states(), *row_states)
        feeds = [s for s in row_states if s.name in self.feed_names()]
        C, noise = cfg.channels, cfg.channels * (cfg.mixtures + 1)
        self.graph = step_graph(C, [*self.step_states(), *feeds], channels_per_substep=C, noise_per_substep=noise,
                                inputs=("row", "col", "force", "noise"))
        self.schedule = step_schedule(C, substeps_per_pixel=1, noise_per_substep=noise, row_graph="row",
                                      sampler=SAMPLER)

    # -- I/O -------------------------------------------------------------------------
    def step_states(self) -> list[StateSpec]:
        """The ul stream's ring rows at every resolution (strided below full resolution)."""
        C1, Fw, W = self.cfg.channels + 1, self.Fw, self.width
        out = [ring_state("x_cache", "x_new", 1, 2, 1, W, C1)]
        for l in range(self.R):
            s, L = 2 ** l, self.enc[l] + self.dec[l]
            out.append(ring_state(f"ul{l}_c1", f"ul{l}_c1_new", L, 2, 1, W, 2 * Fw, s))
            out.append(ring_state(f"ul{l}_c2", f"ul{l}_c2_new", L, 2, 1, W, 2 * Fw, s))
            if l < self.R - 1:
                out.append(ring_state(f"ul{l}_down", f"ul{l}_down_new", 1, 2, 1, W, Fw, s))
            if l > 0:
                out.append(ring_state(f"ul{l}_dec", f"ul{l}_dec_new", 1, 1, 0, W, Fw, s))
        return out

    def feed_names(self) -> list[str]:
        return [f"u{l}_feed" for l in range(self.R)]

    # -- the step --------------------------------------------------------------------
    def forward(self, row, col, force, noise, *states):
        cfg = self.cfg
        names = [s.name for s in self.step_states()] + self.feed_names()
        S = dict(zip(names, states))
        B = noise.shape[0]
        force2 = force.reshape(B, cfg.channels)
        # ul input from the x cache; the down part is zero on row 0 and the left part on column 0 (shifts)
        h = self.x_window(S["x_cache"], row, col)[0] + self.b_up * (row > 0).to(torch.float32) \
            + self.b_left * (col > 0).to(torch.float32)
        out, h = self._level(0, h, row, col, S)
        params = F.elu(h) @ self.w_out + self.b_out
        value, logp = logistic.sample(params, noise, force2, cfg.channels, cfg.mixtures, cfg.levels)
        xf = logistic.normalize(value, cfg.levels)
        out["x_new"] = torch.cat([xf, torch.ones_like(xf[:, :1])], dim=1).unsqueeze(1)
        return (value.reshape(force.shape), logp.reshape(force.shape),
                *(out[s.source] for s in self.step_states()))

    def _feed(self, l, a, b, S):
        """The u stream's nin contribution of each ul block at level l, column b: (B, L, F)."""
        const = getattr(self, f"const_feed{l}").index_select(1, b)  # (1, 1, L, F)
        state = S[f"u{l}_feed"].index_select(1, b)
        return torch.where(a == 0, const, state)[:, 0]

    def _block(self, l, k, x, win1, win2, feed, skip):
        in1 = concat_elu(x, dim=-1)
        c1 = in1 @ getattr(self, f"w{l}_{k}_c1") + getattr(self, f"b{l}_{k}_c1") + win1[k] + feed[:, k]
        if skip is not None:
            c1 = c1 + concat_elu(skip, dim=-1) @ getattr(self, f"w{l}_{k}_nin_ul")
        in2 = concat_elu(c1, dim=-1)
        c2 = in2 @ getattr(self, f"w{l}_{k}_c2") + getattr(self, f"b{l}_{k}_c2") + win2[k]
        ga, gb = c2.chunk(2, dim=-1)
        return x + ga * torch.sigmoid(gb), in1, in2

    def _level(self, l: int, h, a, b, S: dict):
        """Level l at its position (a, b): encoder, due coarser levels, decoder. Returns the new
        columns of level >= l states and the decoder output (B, F)."""
        feed = self._feed(l, a, b, S)
        win1 = self.win1[l](S[f"ul{l}_c1"], a, b)
        win2 = self.win2[l](S[f"ul{l}_c2"], a, b)
        in1s, in2s, E = [], [], [h]
        k = 0
        for _ in range(self.enc[l]):
            h, i1, i2 = self._block(l, k, h, win1, win2, feed, None)
            in1s.append(i1)
            in2s.append(i2)
            E.append(h)
            k += 1
        out = {}
        if l < self.R - 1:
            top = E[-1]
            deeper = [s for s in self.step_states() if s.stride > 2 ** l]
            deep_in = [n for n in [s.name for s in self.step_states()] + self.feed_names()
                       if (n.startswith("ul") or n.startswith("u")) and int(n.lstrip("ul").split("_")[0]) > l]
            deep_in.append(f"ul{l}_down")
            deep_in = sorted(set(deep_in), key=deep_in.index)

            def run(top, a, b, *ops):
                S2 = dict(zip(deep_in, ops))
                h1 = self.down_window[l](S2[f"ul{l}_down"], a, b)[0] + top @ getattr(self, f"w{l}_down") \
                    + getattr(self, f"b{l}_down")
                a2, b2 = torch.div(a, 2, rounding_mode="floor"), torch.div(b, 2, rounding_mode="floor")
                res, dec = self._level(l + 1, h1, a2, b2, S2)
                return (*(res[s.source] for s in deeper), dec.clone())  # an If output may not alias another

            def skip(top, a, b, *ops):
                S2 = dict(zip(deep_in, ops))
                zeros = [top.new_zeros(top.shape[0], s.shape[1], s.shape[-1]) for s in deeper]
                b2 = torch.div(b, 2, rounding_mode="floor")
                dec = S2[f"ul{l + 1}_dec"].index_select(3, b2)[:, 0, 0, 0]  # computed at (2 (a//2), 2 (b//2))
                return (*zeros, dec)

            due = (a % 2 == 0) & (b % 2 == 0)
            res = _cond(due, run, skip, [top, a, b] + [S[n] for n in deep_in])
            out.update({s.source: t for s, t in zip(deeper, res[:-1])})
            tap = (a % 2) * 2 + (b % 2)
            h = res[-1] @ getattr(self, f"w{l}_up").index_select(0, tap)[0] + getattr(self, f"b{l}_up")
            out[f"ul{l}_down_new"] = top.unsqueeze(1)
        else:
            h = E.pop()
        for _ in range(self.dec[l]):
            h, i1, i2 = self._block(l, k, h, win1, win2, feed, E.pop())
            in1s.append(i1)
            in2s.append(i2)
            k += 1
        out[f"ul{l}_c1_new"] = torch.stack(in1s, dim=1)
        out[f"ul{l}_c2_new"] = torch.stack(in2s, dim=1)
        if l > 0:
            out[f"ul{l}_dec_new"] = h.unsqueeze(1)
        return out, h
