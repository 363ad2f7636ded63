"""The derivation's own check, in PyTorch, before anything is exported: a teacher-forced step loop (the
runtime's ring and row-state updates, written out) against the derived full path, value by value.

A derived step path is accepted only when every sub-pixel's step log-prob matches the full path within the
validator's budget; otherwise the refusal names the first value of the traced graph (in graph order) whose
step form diverged, with its error, so a wrong cache points at its conv, not at the model's output.
"""
from __future__ import annotations

import torch

from pixelrt.bundle import ImageSpec
from pixelrt.models.derive.analysis import DOCS, DeriveError

AUDIT_NATS = 1e-4   # per sub-pixel: the validator's LOGP_BUDGET
NODE_TOL = 1e-4     # a value diverged: relative to max(1, |value|)


def audit(model, images: int = 2, seed: int = 5) -> float:
    """Max |step - full| log-prob over every sub-pixel of ``images`` random images; raises DeriveError."""
    ad, H, W = model.adapter, model.height, model.width
    C = ad.channels
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, ad.levels, (images, C, H, W), generator=g)
    ctx = {k: torch.randint(0, c, (images,), generator=g) for k, c in ad.context.items()}
    image = ImageSpec(C, H, W, ad.levels)
    full_env = {}
    with torch.no_grad():
        want = model.log_prob(x, **ctx)
        model.full(ad.encode(x), *model._ctx(ctx), record=full_env)
        step, row = model.step_module(image), (model.row_module(image) if model.plan.row_nodes else None)
        got, worst = _loop(model, step, row, x, ctx, full_env)
    err = float((got - want).abs().max())
    if not err <= AUDIT_NATS:
        if worst:
            name, e, where = worst
            node = next(n for n in model.analysis.gm.graph.nodes if n.name == name)
            raise DeriveError(f"the derived step path of {model.source} is not its full path: "
                              f"{model.analysis.name(node)} diverged by {e:.2e} at {where} (log p off by {err:.2e} "
                              f"nats); nothing is exported. Report this with the module; see {DOCS}")
        raise DeriveError(f"the derived step path of {model.source} is off by {err:.2e} nats per sub-pixel (budget "
                          f"{AUDIT_NATS:g}); nothing is exported; see {DOCS}")
    return err


def _loop(model, step, row, x, ctx, full_env):
    B, C, H, W = x.shape
    states = {s.name: torch.zeros((B, *s.shape[1:])) for s in step.states}
    ctx_in = [ctx[k] for k in model.adapter.context]
    logp = torch.zeros(B, C, H, W)
    check = _Checker(model, full_env)
    step.trace_env = {}
    if row is not None:
        row.trace_env = {}
    for i in range(H):
        for j in range(W):
            pixel = torch.zeros(B, C, dtype=torch.long)
            for c in range(C):
                out = step(pixel, torch.tensor(i), torch.tensor(j), torch.tensor(c), x[:, c, i, j].long(),
                           torch.zeros(B), *ctx_in, *(states[s.name] for s in step.states))
                logp[:, c, i, j] = out[1]
                pixel[:, c] = out[0]
            check.step(step.trace_env, i, j)
            for s, new in zip([s for s in step.states if s.update == "ring-row"], out[2:]):
                states[s.name][:, :, (i + s.pad) % s.rows, j + s.pad] = new
        if row is not None:
            feeds = {"row_pixels": x[:, :, i, :].long(), "row": torch.tensor(i), **ctx, **states}
            outs = row(*(feeds[n] for n in row.input_names()))
            check.row(row.trace_env, i)
            for s, new in zip([s for s in step.states if s.update == "row"], outs):
                states[s.name] = new
    return logp, check.worst


class _Checker:
    """First diverging value (graph order) over the loop, skipping values legitimately partial at a step."""

    def __init__(self, model, full_env):
        a = model.analysis
        self.order = {n.name: k for k, n in enumerate(a.gm.graph.nodes)}
        partial = {n.name for n in a.pixel_dependent} - {n.name for n in model.plan.redo} - {a.image_node.name}
        self.names = {n.name for n in a.reach if n not in a.skip and n.name not in partial}
        self.full, self.worst = full_env, None

    def _cmp(self, env, i, sl, where):
        for name, v in env.items():
            if name not in self.names or not isinstance(v, torch.Tensor) or name not in self.full:
                continue
            ref = self.full[name][..., i:i + 1, sl]
            if v.numel() != ref.numel():
                continue
            if ref.shape != v.shape:  # a conv's flat (B, C) output at one position
                ref = ref.reshape(v.shape)
            e = float(((v - ref).abs() / ref.abs().clamp(min=1.0)).max())
            if e > NODE_TOL and (self.worst is None or self.order[name] < self.order[self.worst[0]]):
                self.worst = (name, e, where)

    def step(self, env, i, j):
        self._cmp(env, i, slice(j, j + 1), f"row {i}, column {j}")

    def row(self, env, i):
        self._cmp(env, i, slice(None), f"the row graph of row {i}")
