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

import functools

import numpy as np

from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.errors import BundleError, PixelrtError


def wave_loop(runner, image: ImageSpec, state: list[StateSpec], schedule: StepSchedule, noise: np.ndarray,
              force: np.ndarray | None = None, batch_size: int = 64, progress: bool = False,
              desc: str = "sampling", context: dict | None = None):
    """``step_loop``'s result (images and per-sub-pixel log-probs) from the wavefront graph ``runner``."""
    from pixelrt.runtime.sampler import StepResult, _progress, check_loop_inputs

    front = schedule.wavefront
    if front is None:
        raise PixelrtError("this bundle's schedule has no wavefront graph; sample with the raster step loop")
    if any(s.update != "ring-row" for s in state):
        raise BundleError("a wavefront schedule needs ring-row states only; re-export the bundle")
    n = len(noise)
    noise, force, context = check_loop_inputs(image, schedule, noise, force, context, batch_size)
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
    cps = C // S
    front = schedule.wavefront
    caches = {s.name: front.allocate(s, B) for s in state}
    # (S, B, H*W[, K]) and (S, B, H*W[, cps]): a call's pixels in flight are one strided slice (``_plan``)
    noise_s = np.ascontiguousarray(noise.reshape(B, S, K, H * W).transpose(1, 0, 3, 2))
    noise_s = noise_s[..., 0] if K == 1 else noise_s
    force_s = None if force is None else \
        np.ascontiguousarray(force.reshape(B, S, cps, H * W).transpose(1, 0, 3, 2)).astype(np.int64)
    force_s = force_s[..., 0] if force_s is not None and cps == 1 else force_s  # None: the buffers stay -1
    values = np.zeros((S, B, H * W, cps), np.int64)
    logps = np.zeros((S, B, H * W, cps), np.float32)
    # flat ring views, (B, L, rows * (W + 2 pad), C) or batch-last (L, rows * (W + 2 pad), C, B): a pixel's
    # column goes to slot * (W + 2 pad) + col + pad
    flat = [(caches[st.name].reshape(st.shape[1], -1, st.shape[-1], B) if front.batch_last else
             caches[st.name].reshape(B, st.shape[1], -1, st.shape[-1]), st.source) for st in state]
    lead = (slice(None),) * (1 if front.batch_last else 2)  # the axes before a ring's flat positions
    io = _Calls(runner, caches, context, B, C, () if cps == 1 else (cps,), () if K == 1 else (K,), front.batch_last)
    swap = (lambda a: a.swapaxes(0, 1)) if front.batch_last else (lambda a: a)  # outputs as (B, P, ...)
    for P, at, rows, cols, slots in _plan(front, H, W, tuple((st.rows, st.pad, st.shape[3]) for st in state)):
        buf = io.buffers(P)
        buf["rows"][:], buf["cols"][:] = rows, cols
        if S > 1:
            buf["pixel"][:] = 0
        for s in range(S):
            buf["channel"][()] = s
            if force_s is not None:
                buf["force"][:] = force_s[s][:, at]
            buf["noise"][:] = noise_s[s][:, at]
            out = io.run()
            v = swap(out["value"]).reshape(B, P, cps)
            values[s][:, at] = v
            logps[s][:, at] = swap(out["logp"]).reshape(B, P, cps)
            if S > 1:
                buf["pixel"][:, :, s * cps:(s + 1) * cps] = v
        for (ring, source), where in zip(flat, slots):  # each pixel's new columns into its slot:
            ring[(*lead, where)] = out[source].transpose(0, 2, 1, 3)  # (L, C, P, B) -> (L, P, C, B), or (B, P, L, C)
        if bar is not None:
            bar.update(1)
    if values.min() < 0 or values.max() >= image.levels:
        raise BundleError(f"the wavefront graph sampled {int(values.min())}..{int(values.max())}, outside the "
                          f"bundle's {image.levels} levels: the graph is not the model its manifest describes; "
                          "re-export the bundle from its checkpoint")
    # (S, B, H*W, cps) -> (B, S*cps = C, H, W)
    images = values.reshape(S, B, H, W, cps).transpose(1, 0, 4, 2, 3).reshape(B, C, H, W)
    return images.astype(np.uint8), logps.reshape(S, B, H, W, cps).transpose(1, 0, 4, 2, 3).reshape(B, C, H, W)


@functools.lru_cache(maxsize=64)
def _plan(front, height: int, width: int, rings: tuple) -> tuple:
    """Per call t: (P, the pixels' strided slice of a flat H*W axis, rows, cols, each ring's flat slots).

    Row i is at column t - lag*i, flat position t + i*(W - lag): consecutive rows in flight are one slice.
    ``rings``: (rows, pad, W + 2 pad) of each ring state; a pixel's column goes to flat position
    ((i + pad) % rows) * (W + 2 pad) + j + pad of its ring."""
    lag, stride = front.lag, width - front.lag
    plan = []
    for t in range(front.calls(height, width)):
        lo, hi = front.in_flight(t, height, width)
        i = np.arange(lo, hi, dtype=np.int64)
        j = t - lag * i
        at = slice(t + lo * stride, t + (hi - 1) * stride + 1, stride) if hi - lo > 1 else \
            slice(t + lo * stride, t + lo * stride + 1)
        slots = tuple(((i + pad) % rows) * wp + j + pad for rows, pad, wp in rings)
        plan.append((hi - lo, at, i, j, slots))
    return tuple(plan)


class _Calls:
    """The wavefront graph's per-call inputs, one set of buffers per count of pixels in flight. A runner
    that can bind them (ORT CPU: ``bind(..., pixels=P)``) reads those buffers and writes preallocated
    outputs, so no array is allocated per call; any other runner gets the feed dict, checked once."""

    def __init__(self, runner, caches: dict, context: dict, batch: int, channels: int, per_force: tuple = (),
                 per_noise: tuple = (), batch_last: bool = False):
        self.runner, self.caches, self.context, self.batch, self.channels = runner, caches, context, batch, channels
        self.per_force, self.per_noise = per_force, per_noise  # a call's channels and uniforms per pixel, if > 1
        self.batch_last = batch_last  # the graph's per-pixel tensors are (P, B, ...); the host sees (B, P, ...)
        self.sets: dict[int, tuple] = {}
        self.current = None
        self.first = True

    def buffers(self, pixels: int) -> dict:
        got = self.sets.get(pixels)
        if got is None:
            B = self.batch
            lead = (pixels, B) if self.batch_last else (B, pixels)
            buf = {"pixel": np.zeros((*lead, self.channels), np.int64), "rows": np.zeros(pixels, np.int64),
                   "cols": np.zeros(pixels, np.int64), "channel": np.zeros((), np.int64),
                   "force": np.full((*lead, *self.per_force), -1, np.int64),
                   "noise": np.zeros((*lead, *self.per_noise), np.float32)}
            feeds = {**buf, **self.caches, **self.context}
            bind = getattr(self.runner, "bind", None)
            bound = bind(feeds, B, pixels=pixels) if callable(bind) else None
            if self.batch_last:  # the host writes (B, P, ...) views of the bound buffers
                buf = {k: v.swapaxes(0, 1) if k in ("pixel", "force", "noise") else v for k, v in buf.items()}
            got = self.sets[pixels] = (buf, feeds, None if bound is None else bound[0])
        self.current = got
        return got[0]

    def run(self) -> dict:
        _, feeds, bound = self.current
        if bound is not None:
            return bound()
        check, self.first = self.first, False
        return self.runner.infer(feeds, check=check)


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
