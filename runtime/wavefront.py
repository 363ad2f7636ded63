"""The wavefront loop: several pixels of each image per call (manifest ``schedule.wavefront``).

Row i runs ``lag`` pixels behind row i - 1 (``bundle.state.Wavefront``), so the pixels (i, t - lag * i)
in flight at call t are independent and go through the wavefront graph together: W + lag * (H - 1)
calls per sub-step instead of H * W. Each pixel gets the raster loop's noise and forced value, runs its
sub-steps in the same order, and commits its new columns into the same ring slots after its last
sub-step, so a seed samples the raster loop's images; log-probs agree within float rounding, since ORT
may round a GEMM row differently when it has other rows beside it (docs/architecture.md, "Wavefront").

``WavefrontRunner`` wraps a bundle's step backend with its wavefront backend: ``bundle_loop`` hands it
the loop (its ``bundle_loop``); every other use (``infer``, ``bind``) goes to the step graph.
"""
from __future__ import annotations

import numpy as np

from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.data import check_images
from pixelrt.errors import BundleError, PixelrtError
from pixelrt.runtime.conditioning import check_context


def wave_loop(runner, image: ImageSpec, state: list[StateSpec], schedule: StepSchedule, noise: np.ndarray,
              force: np.ndarray | None = None, batch_size: int = 64, progress: bool = False,
              desc: str = "sampling", context: dict | None = None):
    """``step_loop``'s result (images and per-sub-pixel log-probs) from the wavefront graph ``runner``."""
    from pixelrt.runtime.sampler import StepResult, _progress, check_noise

    front = schedule.wavefront
    if front is None:
        raise PixelrtError("this bundle's schedule has no wavefront graph; sample with the raster step loop")
    if any(s.update != "ring-row" for s in state):
        raise BundleError("a wavefront schedule needs ring-row states only; re-export the bundle")
    n = len(noise)
    noise = check_noise(noise, n, image, schedule)
    context = check_context(context, schedule.context, n)
    if batch_size < 1:
        raise PixelrtError(f"batch size must be at least 1, got {batch_size}")
    if force is not None:
        if force.shape != (n, *image.shape):
            raise PixelrtError(f"forced images have shape {force.shape}, expected {(n, *image.shape)}")
        force = check_images(force, image.levels, "forced images")
    images = np.zeros((n, *image.shape), dtype=np.uint8)
    logp = np.zeros((n, *image.shape), dtype=np.float32)
    calls = front.calls(image.height, image.width)
    bar = _progress(calls * ((n + batch_size - 1) // batch_size), desc, progress, unit="call")
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        images[lo:hi], logp[lo:hi] = _wave_batch(runner, image, schedule, state, noise[lo:hi],
                                                 None if force is None else force[lo:hi],
                                                 {k: v[lo:hi] for k, v in context.items()}, bar)
    if bar is not None:
        bar.close()
    return StepResult(images, logp)


def _wave_batch(runner, image, schedule, state, noise, force, context, bar):
    B = len(noise)
    C, H, W = image.shape
    S, K = schedule.substeps_per_pixel, schedule.noise_per_substep
    cps, front = C // S, schedule.wavefront
    caches = {s.name: s.allocate(B) for s in state}
    # (S, B, H, W[, K]) and (S, B, H, W[, cps]): a sub-step's pixels in flight are one fancy index, (B, P[, n])
    noise_s = np.ascontiguousarray(noise.reshape(B, S, K, H, W).transpose(1, 0, 3, 4, 2))
    noise_s = noise_s[..., 0] if K == 1 else noise_s
    force_s = (np.full((S, B, H, W, cps), -1, np.int64) if force is None
               else np.ascontiguousarray(force.reshape(B, S, cps, H, W).transpose(1, 0, 3, 4, 2)).astype(np.int64))
    force_s = force_s[..., 0] if cps == 1 else force_s
    values = np.zeros((S, B, H, W, cps), np.int64)
    logps = np.zeros((S, B, H, W, cps), np.float32)
    channels = [np.array(s, np.int64) for s in range(S)]
    call = _caller(runner, caches, context)
    for t in range(front.calls(H, W)):
        lo, hi = front.in_flight(t, H, W)
        i = np.arange(lo, hi, dtype=np.int64)
        j = t - front.lag * i
        pixel = np.zeros((B, len(i), C), np.int64)
        for s in range(S):
            out = call(pixel, i, j, channels[s], force_s[s][:, i, j], noise_s[s][:, i, j])
            v = out["value"].reshape(B, len(i), cps)
            values[s][:, i, j] = v
            logps[s][:, i, j] = out["logp"].reshape(B, len(i), cps)
            pixel[:, :, s * cps:(s + 1) * cps] = v
        for st in state:  # each pixel's new columns into its ring slot: (B, P, L, C) -> [:, :, slot, col]
            caches[st.name][:, :, (i + st.pad) % st.rows, j + st.pad] = out[st.source].transpose(0, 2, 1, 3)
        if bar is not None:
            bar.update(1)
    if values.min() < 0 or values.max() >= image.levels:
        raise BundleError(f"the wavefront graph sampled {int(values.min())}..{int(values.max())}, outside the "
                          f"bundle's {image.levels} levels: the graph is not the model its manifest describes; "
                          "re-export the bundle from its checkpoint")
    # (S, B, H, W, cps) -> (B, S*cps = C, H, W)
    images = values.transpose(1, 0, 4, 2, 3).reshape(B, C, H, W)
    return images.astype(np.uint8), logps.transpose(1, 0, 4, 2, 3).reshape(B, C, H, W)


def _caller(runner, caches: dict, context: dict):
    """``call(pixel, rows, cols, channel, force, noise) -> outputs``: one wavefront call, the states and
    context fed from their buffers, the inputs checked on the first call only."""
    first = [True]

    def call(pixel, rows, cols, channel, force, noise):
        feeds = {"pixel": pixel, "rows": rows, "cols": cols, "channel": channel, "force": force, "noise": noise,
                 **caches, **context}
        check, first[0] = first[0], False
        return runner.infer(feeds, check=check)

    return call


class WavefrontRunner:
    """A bundle's step backend with its wavefront backend attached: ``bundle_loop`` runs the wavefront
    loop; everything else (teacher-forced parity, ``infer``, ``bind``) is the step backend's."""

    def __init__(self, step, wave):
        self.step, self.wave = step, wave

    def __getattr__(self, name):
        return getattr(self.step, name)

    def bundle_loop(self, bundle, noise, **kwargs):
        kwargs.pop("row_runner", None)
        return wave_loop(self.wave, bundle.image, bundle.state, bundle.step_schedule, noise, **kwargs)
