"""Exact log-likelihood of images through a bundle's full graph, in any backend."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixelrt.errors import PixelrtError
from pixelrt.bundle import Bundle


@dataclass
class EvalResult:
    loglik: np.ndarray      # (N,) nats, per image
    logp: np.ndarray        # (N, C, H, W) nats, per sub-pixel
    bits_per_dim: np.ndarray  # (N,) per image

    @property
    def mean_bits_per_dim(self) -> float:
        return float(self.bits_per_dim.mean())


def check_bundle_images(bundle: Bundle, x: np.ndarray, source: str) -> np.ndarray:
    """Validate images against the bundle's shape and levels before they reach a graph."""
    return bundle.image.check_images(
        x, source, f"{source}: images are {{got}} (C x H x W) but the bundle {bundle.root} was exported for {{want}}; "
                   "evaluate data of that shape or export a model trained on it")


def evaluate(backend, bundle: Bundle, x: np.ndarray, batch_size: int = 256, source: str = "images",
             progress: bool = False, context: dict | None = None) -> EvalResult:
    """Run the full graph over ``x`` (uint8 N, C, H, W) in batches on an active backend.

    context: the per-image conditioning inputs the bundle names (e.g. {"label": (N,) int64}).
    """
    from pixelrt.runtime.conditioning import check_conditioning, check_context

    x = check_bundle_images(bundle, x, source)
    context = check_conditioning(bundle, check_context(context, bundle.context, len(x)), len(x))
    if batch_size < 1:
        raise PixelrtError(f"batch size must be at least 1, got {batch_size}")
    lls, logps = [], []
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="evaluating", unit="batch", leave=False)
    for lo in starts:
        out = backend.infer({"x": x[lo:lo + batch_size], **{k: v[lo:lo + batch_size] for k, v in context.items()}})
        lls.append(out["loglik"].astype(np.float64))
        logps.append(out["logp"])
    loglik = np.concatenate(lls)
    return EvalResult(loglik, np.concatenate(logps), bundle.image.bits_per_dim(loglik))
