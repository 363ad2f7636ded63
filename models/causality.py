"""Causality audit by autograd: no output may depend on the same or a later sub-pixel.

For every output position (group g, row i, col j) we back-propagate the sum of
that position's outputs to the input and record which input sub-pixels get a
non-zero gradient. A dependency on a later pixel, or on a channel group not
allowed at the centre (Mask A: g' < g, Mask B: g' <= g), is a violation. The
same map measures the receptive field: the fraction of the allowed past that
the output actually reaches (PixelCNN's blind spot shows up as < 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pixelrt.models.contract import example_context, torch_context


@dataclass
class CausalityReport:
    violations: int   # (output, input) sub-pixel pairs that break causality
    checked: int      # output positions audited
    coverage: float   # fraction of allowed (output, input) pairs with a dependency
    dependencies: np.ndarray  # bool (G, H, W, G, H, W): output (g,i,j) reads input (g',i',j')

    def as_dict(self) -> dict:
        return {"violations": self.violations, "checked": self.checked, "coverage": self.coverage}


def allowed_pairs(groups: int, height: int, width: int, strict: bool) -> np.ndarray:
    """bool (G,H,W,G,H,W): input sub-pixel precedes output sub-pixel (strict: Mask A at the centre)."""
    g, i, j = np.meshgrid(np.arange(groups), np.arange(height), np.arange(width), indexing="ij")
    pos = (i * width + j).reshape(-1)
    grp = g.reshape(-1)
    before = pos[None, :] < pos[:, None]
    same = pos[None, :] == pos[:, None]
    centre = grp[None, :] < grp[:, None] if strict else grp[None, :] <= grp[:, None]
    return (before | (same & centre)).reshape(groups, height, width, groups, height, width)


def dependency_map(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, out_groups: int,
                   in_groups: int) -> np.ndarray:
    """Jacobian sparsity of ``fn`` (1, Cin, H, W) -> (1, Cout, H, W), pooled over channel groups.

    One batched backward pass (``is_grads_batched``): row n of the batch
    back-propagates output position n = (g, i, j), summed over group g's channels.
    """
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    _, cout, H, W = y.shape
    cin = x.shape[1]
    grouped = y[0].reshape(out_groups, cout // out_groups, H, W).sum(1)  # (G, H, W)
    n = grouped.numel()
    basis = torch.eye(n, dtype=grouped.dtype).reshape(n, *grouped.shape)
    (grads,) = torch.autograd.grad(grouped, x, grad_outputs=basis, is_grads_batched=True)  # (n, 1, Cin, H, W)
    nz = grads[:, 0].abs() > 0
    pooled = nz.reshape(n, in_groups, cin // in_groups, H, W).any(2)  # (n, G_in, H, W)
    return pooled.reshape(out_groups, H, W, in_groups, H, W).numpy()


def audit(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, groups: int, strict: bool) -> CausalityReport:
    deps = dependency_map(fn, x, groups, groups)
    _, H, W = x.shape[1:]
    allowed = allowed_pairs(groups, H, W, strict)
    return CausalityReport(
        violations=int((deps & ~allowed).sum()),
        checked=groups * H * W,
        coverage=float((deps & allowed).sum() / max(1, allowed.sum())),
        dependencies=deps,
    )


def audit_model(model: torch.nn.Module, shape: tuple[int, int, int], seed: int = 0) -> CausalityReport:
    """Audit a model's logits w.r.t. its normalised input (strict: a sub-pixel never sees itself)."""
    C, H, W = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, C, H, W, generator=gen) * 2 - 1

    def logits(xf: torch.Tensor) -> torch.Tensor:
        out = model.logits_from_float(xf, **context)  # (1, C, L, H, W)
        return out.reshape(1, -1, H, W)

    # conditional models are audited under one example label / map (conditioning is no pixel: it may not leak)
    context = torch_context(example_context(model, 1, seed))
    was_training = model.training
    model.eval()
    try:
        return audit(logits, x, C, strict=True)
    finally:
        model.train(was_training)
