"""The fallback: the module itself, run on its receptive-field window around the current position.

    model = derive(module, adapter, height, width, step="window")

For a module whose per-layer caches cannot be derived (an op models/derive does not know, a vertical stack
shifted down before its next vertical conv) but that is a translation-equivariant causal conv net with
zero padding. The receptive field is measured by autograd (float64, three random images, at both edges of
the last row): ``up`` rows above, ``left`` and ``right`` columns. A step keeps the last ``up + 1`` image
rows in a ring and runs the module on the window of ``up + 1`` rows and ``left + right + 1`` columns
containing the position, moved inside the image at its edges so that the window's borders there are the
image's: the module's zero padding then sees what it sees on the whole image, and every value the current
position reads lies inside the window. Exact for such a net; its cost per step is the module on the window
(O(field) instead of O(image)). A module that reads a later position (a global op: a mean, attention) is
refused here too. The exporter's validation (step loop vs full graph, sampled vs full, causality) decides.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelrt.bundle import ConditioningSpec
from pixelrt.bundle.graphs import ring_state, step_graph, step_schedule
from pixelrt.models.categorical import categorical_step
from pixelrt.models.contract import StepModule
from pixelrt.models.derive.adapter import Adapter
from pixelrt.models.derive.analysis import DOCS, DeriveError
from pixelrt.models.heads import gather_logp, log_softmax


def receptive_field(module: nn.Module, adapter: Adapter, H: int, W: int, seed: int = 0) -> tuple[int, int, int]:
    """(rows above, columns left, columns right) the output at a position reads, by autograd."""
    import copy

    m64 = copy.deepcopy(module).double().eval()
    g = torch.Generator().manual_seed(seed)
    up = left = right = 0
    for _ in range(3):
        x = adapter.encode(torch.randint(0, adapter.levels, (1, adapter.channels, H, W), generator=g)).double()
        ctx = [torch.randint(0, c, (1,), generator=g) for c in adapter.context.values()]
        for j in sorted({0, W // 2, W - 1}):
            xg = x.clone().requires_grad_(True)
            out = adapter.logits(m64(xg, *ctx))[..., H - 1, j]
            (grad,) = torch.autograd.grad(out.sum(), xg)
            hit = grad[0].abs().amax(0) > 0  # (H, W)
            rows, cols = hit.nonzero(as_tuple=True)
            if bool(((rows == H - 1) & (cols > j)).any()):
                raise DeriveError(f"{type(module).__name__}'s output at row {H - 1}, column {j} reads a later column "
                                  f"of its row: it is not causal (a global op, or a mask that lets the future in); "
                                  f"see {DOCS}")
            up = max(up, H - 1 - int(rows.min()))
            left, right = max(left, j - int(cols.min())), max(right, int(cols.max()) - j)
    return up, left, right


class WindowModel(nn.Module):
    """The step protocol for ``module`` by receptive-field windows (module doc)."""

    family = "derived-window"

    def __init__(self, module: nn.Module, adapter: Adapter, height: int, width: int):
        super().__init__()
        self.module, self.adapter, self.height, self.width = module.eval(), adapter, height, width
        self.field = receptive_field(module, adapter, height, width)
        self.source = type(module).__name__

    @property
    def conditioning(self) -> tuple:
        return tuple(ConditioningSpec(k, "int64", (), "class", c) for k, c in self.adapter.context.items())

    def describe(self) -> dict:
        up, left, right = self.field
        return {"family": self.family, "config": {"module": self.source, "adapter": self.adapter.to_json(),
                                                  "height": self.height, "width": self.width,
                                                  "field": {"up": up, "left": left, "right": right}}}

    def normalize(self, x):
        return self.adapter.encode(x)

    def logits_from_float(self, xf, **context):
        return self.adapter.logits(self.module(xf, *[context[k] for k in self.adapter.context]))

    def log_prob(self, x: torch.Tensor, **context) -> torch.Tensor:
        logp = log_softmax(self.logits_from_float(self.adapter.encode(x), **context), dim=2)
        return gather_logp(logp, x.long(), dim=2)

    def forward(self, x, **context):
        return self.log_prob(x, **context).flatten(1).sum(1)

    def step_module(self, image):
        return WindowStep(self, image.width)


class WindowStep(StepModule):
    """One sub-pixel: the module on the window around (row, col) of the ring of the last rows."""

    def __init__(self, model: WindowModel, width: int):
        super().__init__()
        self.model, self.adapter = model.module, model.adapter
        up, left, right = model.field
        H, W, C = model.height, model.width, model.adapter.channels
        self.rows, self.cols = min(H, up + 1), min(W, left + right + 1)
        self.up, self.left, self.H, self.W = up, left, H, W
        self.channels, self.levels = C, model.adapter.levels
        self.context_names = list(model.adapter.context)
        self.register_buffer("row_ids", torch.arange(self.rows))
        self.register_buffer("col_ids", torch.arange(self.cols))
        self.states = (ring_state("cache_0", "new_0", 1, self.rows, 0, width, C),)
        self.graph = step_graph(C, self.states, model.conditioning)
        self.schedule = step_schedule(C, context=model.conditioning)

    def forward(self, pixel, row, col, channel, force, noise, *args):
        ctx, cache = args[:-1], args[-1]
        r0 = torch.clamp(row - self.up, min=0, max=self.H - self.rows)
        c0 = torch.clamp(col - self.left, min=0, max=self.W - self.cols)
        slots = torch.remainder(r0 + self.row_ids, self.rows)
        win = cache[:, 0].index_select(1, slots).index_select(2, c0 + self.col_ids)  # (B, rows, cols, C)
        here = ((self.row_ids == row - r0)[:, None] & (self.col_ids == col - c0)[None, :])  # (rows, cols)
        img = torch.where(here[None, :, :, None], pixel.to(win.dtype)[:, None, None, :], win).permute(0, 3, 1, 2)
        logits = self.adapter.logits(self.model(self.adapter.encode(img), *ctx))  # (B, C, L, rows, cols)
        at = logits.index_select(3, (row - r0).reshape(1)).index_select(4, (col - c0).reshape(1))
        out = at.reshape(pixel.shape[0], self.channels * self.levels)
        value, logp, full = categorical_step(out, pixel, channel, force, noise, self.channels, self.levels)
        return value, logp, full.to(torch.float32).unsqueeze(1)
