"""PyTorch references for parity: a step runner with the backend's ``infer`` contract, and
the naive sampler (a full forward pass per sub-pixel, the seed's method) kept as the oracle.

The step runner is duck-typed to ``pixelrt.runtime.backend.Backend.infer`` so that the one
step loop in ``pixelrt.runtime.sampler`` drives PyTorch and every runtime alike.
"""
from __future__ import annotations

import numpy as np
import torch

from pixelrt.bundle import ImageSpec
from pixelrt.models.heads import sample_categorical


class TorchStepRunner:
    """Runs a model's step module (the step protocol's ``step_module(image)``) on numpy feeds,
    returning numpy outputs by name."""

    name = "torch"
    method = "step_module"

    def __init__(self, model: torch.nn.Module, image: ImageSpec):
        self.step = getattr(model, self.method)(image).eval()
        self.input_names = self.step.input_names()
        self.output_names = self.step.output_names()

    @torch.inference_mode()
    def infer(self, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.asarray(feeds[k])) for k in self.input_names]
        outs = self.step(*args)
        return {k: v.numpy() for k, v in zip(self.output_names, outs)}


class TorchRowRunner(TorchStepRunner):
    """Runs a model's per-row module (``row_module(image)``), for bundles whose schedule has a row graph."""

    method = "row_module"


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
                value, logp, _ = sample_categorical(logits, u[:, c, i, j])  # the step graphs' sampler
                x[:, c, i, j] = value
                logp_out[:, c, i, j] = logp
    return x.to(torch.uint8).numpy(), logp_out.numpy()
