"""The autoregressive step loop, written once against the backend interface.

The host draws all noise up-front from a seed, so one seed gives the same image
on every runtime. Each step feeds the caches, the position, the partly filled
current pixel and the noise; the graph samples inside and returns the value,
its log-prob and each cache's new column, which the host writes into the ring
buffers in place once the pixel's last channel is done. Nothing else is copied
per step. Fed the true image through ``force``, the same loop yields the
teacher-forced conditionals used for parity.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixelrt.data import check_images
from pixelrt.errors import PixelrtError
from pixelrt.runtime.bundle import ImageSpec, StateSpec


@dataclass
class StepResult:
    images: np.ndarray  # uint8 (N, C, H, W): sampled (or forced) values
    logp: np.ndarray    # float32 (N, C, H, W): log p of each value given its past, nats

    @property
    def loglik(self) -> np.ndarray:
        """Summed per-image log-probability in nats, (N,), accumulated in float64."""
        return self.logp.astype(np.float64).reshape(len(self.logp), -1).sum(1)


def make_noise(n: int, image: ImageSpec, seed: int) -> np.ndarray:
    """Uniform [0, 1) noise, one value per sub-pixel, (N, C, H, W) float32, deterministic per seed."""
    return np.random.default_rng(seed).random((n, *image.shape), dtype=np.float32)


def check_noise(noise: np.ndarray, n: int, image: ImageSpec) -> np.ndarray:
    if n < 1:
        raise PixelrtError("nothing to sample: the noise array holds no images; ask for at least one")
    if noise.shape != (n, *image.shape):
        raise PixelrtError(f"noise has shape {noise.shape}, expected {(n, *image.shape)} (one uniform per sub-pixel)")
    if not np.all(np.isfinite(noise)):
        raise PixelrtError("noise contains NaN or infinity; draw it with make_noise(n, image, seed)")
    if noise.min() < 0.0 or noise.max() >= 1.0:
        raise PixelrtError(f"noise must lie in [0, 1), got [{noise.min()}, {noise.max()}]; draw it with make_noise()")
    return noise.astype(np.float32, copy=False)


def step_loop(runner, image: ImageSpec, state: list[StateSpec], noise: np.ndarray,
              force: np.ndarray | None = None, batch_size: int = 64, progress: bool = False,
              desc: str = "sampling") -> StepResult:
    """Run the step graph over every sub-pixel in raster, R->G->B order.

    runner: anything with ``infer(feeds, check=...) -> dict`` (a Backend or the PyTorch reference).
    noise: (N, C, H, W) uniform [0, 1). force: optional (N, C, H, W) true values for teacher forcing.
    """
    n = len(noise)
    noise = check_noise(noise, n, image)
    if batch_size < 1:
        raise PixelrtError(f"batch size must be at least 1, got {batch_size}")
    if force is not None:
        if force.shape != noise.shape:
            raise PixelrtError(f"forced images have shape {force.shape}, expected {noise.shape}")
        force = check_images(force, image.levels, "forced images")
    images = np.zeros((n, *image.shape), dtype=np.uint8)
    logp = np.zeros((n, *image.shape), dtype=np.float32)
    C, H, W = image.shape
    rows = H * ((n + batch_size - 1) // batch_size)
    bar = _progress(rows, desc, progress)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        forced = None if force is None else force[lo:hi]
        out_img, out_logp = _loop_batch(runner, image, state, noise[lo:hi], forced, bar)
        images[lo:hi], logp[lo:hi] = out_img, out_logp
    if bar is not None:
        bar.close()
    return StepResult(images, logp)


def _loop_batch(runner, image, state, noise, force, bar):
    B = len(noise)
    C, H, W = image.shape
    caches = {s.name: s.allocate(B) for s in state}
    # (H, W, C, B) layouts make each step's (B,) slice contiguous without a copy.
    noise_t = np.ascontiguousarray(noise.transpose(2, 3, 1, 0))
    force_t = (np.full((H, W, C, B), -1, dtype=np.int64) if force is None
               else np.ascontiguousarray(force.transpose(2, 3, 1, 0)).astype(np.int64))
    scalars = [np.array(k, dtype=np.int64) for k in range(max(H, W, C))]
    pixel = np.zeros((B, C), dtype=np.int64)
    values = np.zeros((H, W, C, B), dtype=np.int64)
    logps = np.zeros((H, W, C, B), dtype=np.float32)
    feeds = dict(caches)
    first = True
    for i in range(H):
        for j in range(W):
            pixel[:] = 0
            for c in range(C):
                feeds.update(pixel=pixel, row=scalars[i], col=scalars[j], channel=scalars[c],
                             force=force_t[i, j, c], noise=noise_t[i, j, c])
                out = runner.infer(feeds, check=first)
                first = False
                values[i, j, c] = out["value"]
                logps[i, j, c] = out["logp"]
                pixel[:, c] = out["value"]
            for s in state:  # commit this pixel's column into each ring buffer, in place
                caches[s.name][:, :, (i + s.pad) % s.rows, j + s.pad] = out[s.source]
        if bar is not None:
            bar.update(1)
    return values.transpose(3, 2, 0, 1).astype(np.uint8), logps.transpose(3, 2, 0, 1)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="row", leave=False)
