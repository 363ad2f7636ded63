"""`pixelrt parity --receptive-field`: the causal receptive field measured by autograd, not assumed.

The Jacobian audit of :mod:`pixelrt.models.causality` gives, for every output
sub-pixel, the input sub-pixels it reads. Coverage is the fraction of the
causal past actually reached: a plain PixelCNN shows its blind spot (< 1); a
model that sees all earlier pixels reaches 1.0. The map drawn for one output
pixel is what people look at: ``X`` the pixel, ``#`` read, ``.`` in the causal
past but never read (the blind spot), blank: the future.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pixelrt.models.causality import CausalityReport, audit_model


@dataclass
class FieldReport:
    name: str
    shape: tuple          # (C, h, w) audited
    audit: CausalityReport

    def as_dict(self) -> dict:
        return {"model": self.name, "shape": list(self.shape), **self.audit.as_dict()}


def pixel_map(deps: np.ndarray, i: int, j: int) -> str:
    """ASCII map of the input pixels output pixel (i, j) reads (any channel group to any)."""
    _, H, W, _, _, _ = deps.shape
    reads = deps[:, i, j].any(axis=(0, 1))  # (H, W)
    lines = []
    for r in range(H):
        row = []
        for c in range(W):
            if (r, c) == (i, j):
                row.append("X")
            elif (r, c) > (i, j):
                row.append(" ")
            else:
                row.append("#" if reads[r, c] else ".")
        lines.append(" ".join(row).rstrip())
    return "\n".join(lines)


def most_blind(deps: np.ndarray) -> tuple[int, int]:
    """The output pixel with the most unread pixels in its causal past (the latest one on a tie)."""
    _, H, W, _, _, _ = deps.shape
    reads = deps.any(axis=(0, 3))  # (H, W, H, W)
    past = np.arange(H * W)[None, :] < np.arange(H * W)[:, None]
    blind = (past & ~reads.reshape(H * W, H * W)).sum(1)
    k = H * W - 1 - int(np.argmax(blind[::-1]))
    return divmod(k, W)


def measure(model: torch.nn.Module, name: str, shape: tuple, seed: int = 0) -> FieldReport:
    return FieldReport(name, tuple(shape), audit_model(model, tuple(shape), seed=seed))


def plain_pixelcnn(channels: int, levels: int, seed: int = 0) -> torch.nn.Module:
    """The foundation's PixelCNN with default layers (random weights: the field is structural)."""
    from pixelrt.models.registry import get_model

    torch.manual_seed(seed)
    entry = get_model("pixelcnn")
    return entry.build(entry.make_config(channels=channels, levels=levels))


def format_fields(reports: list[FieldReport]) -> str:
    lines = ["receptive field (autograd Jacobian of every output sub-pixel w.r.t. the input)",
             f"{'model':<28} {'audited':>9} {'violations':>10} {'coverage of the causal past':>28}"]
    for r in reports:
        lines.append(f"{r.name:<28} {'x'.join(map(str, r.shape)):>9} {r.audit.violations:>10} {r.audit.coverage:>28.3f}")
    for r in reports:
        i, j = most_blind(r.audit.dependencies)
        lines.append(f"\n{r.name}: inputs read by output pixel ({i}, {j})  [X pixel, # read, . blind spot]")
        lines.append(pixel_map(r.audit.dependencies, i, j))
    return "\n".join(lines)
