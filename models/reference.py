"""PyTorch references for parity: a step runner with the backend's ``infer`` contract, and
the naive sampler (a full forward pass per sub-pixel, the seed's method) kept as the oracle.

The step runner is duck-typed to ``pixelrt.runtime.backend.Backend.infer`` so that the one
step loop in ``pixelrt.runtime.sampler`` drives PyTorch and every runtime alike.
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.models.heads import gather_logp, inverse_cdf_sample, log_softmax


def _build(model: torch.nn.Module, method: str, width: int | None) -> torch.nn.Module:
    """``model.<method>()``; models whose step modules depend on the image width
    (``step_needs_width``, e.g. PixelCNN++) get ``width``."""
    if getattr(model, "step_needs_width", False):
        if width is None:
            raise ValueError(f"{type(model).__name__}.{method} needs the image width; pass width=")
        return getattr(model, method)(width).eval()
    return getattr(model, method)().eval()


class TorchStepRunner:
    """Runs a model's step module on numpy feeds, returning numpy outputs by name."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, width: int | None = None):
        self.step = _build(model, "stepper", width)
        self.input_names = self.step.input_names()
        self.output_names = self.step.output_names()

    @torch.inference_mode()
    def infer(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.asarray(feeds[k])) for k in self.input_names]
        outs = self.step(*args)
        return {k: v.numpy() for k, v in zip(self.output_names, outs)}


class TorchRowRunner(TorchStepRunner):
    """Runs a model's per-row module (``model.row_stepper()``), for bundles whose schedule has a row graph."""

    def __init__(self, model: torch.nn.Module, width: int | None = None):
        self.step = _build(model, "row_stepper", width)
        self.input_names = self.step.input_names()
        self.output_names = self.step.output_names()


@torch.inference_mode()
def naive_sample(model: torch.nn.Module, noise: np.ndarray, levels: int,
                 rows: int | None = None, context: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample by re-running the whole image for every sub-pixel: O(image) per step.

    noise: (N, C, H, W) uniform [0, 1), the same noise the step graphs take, so the
    oracle and the fast path must return the same images. ``rows`` stops early (for
    timing the first rows only). ``context``: per-image conditioning inputs of a conditional model.
    Returns (images uint8, logp float32).
    """
    model.eval()
    ctx = {k: torch.from_numpy(np.asarray(v)) for k, v in (context or {}).items()}  # e.g. label (N,)
    N, C, H, W = noise.shape
    x = torch.zeros(N, C, H, W, dtype=torch.long)
    logp_out = torch.zeros(N, C, H, W)
    u = torch.from_numpy(noise)
    for i in range(H if rows is None else rows):
        for j in range(W):
            for c in range(C):
                logits = model.logits_from_float(model.normalize(x), **ctx)[:, c, :, i, j]  # (N, levels)
                logp = log_softmax(logits, dim=-1)
                value = inverse_cdf_sample(logp, u[:, c, i, j])
                x[:, c, i, j] = value
                logp_out[:, c, i, j] = gather_logp(logp, value, dim=-1)
    return x.to(torch.uint8).numpy(), logp_out.numpy()
