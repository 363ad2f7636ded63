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
from pixelrt.errors import BundleError, PixelrtError
from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.conditioning import check_conditioning, check_context


@dataclass
class StepResult:
    images: np.ndarray  # uint8 (N, C, H, W): sampled (or forced) values
    logp: np.ndarray    # float32 (N, C, H, W): log p of each value given its past, nats

    @property
    def loglik(self) -> np.ndarray:
        """Summed per-image log-probability in nats, (N,), accumulated in float64."""
        return self.logp.astype(np.float64).reshape(len(self.logp), -1).sum(1)


def make_noise(n: int, image: ImageSpec, seed: int, schedule: StepSchedule | None = None) -> np.ndarray:
    """Uniform [0, 1) noise for ``n`` images, deterministic per seed: (N, S*K, H, W) float32.

    S sub-steps per pixel times K uniforms per sub-step (the schedule's); for a PixelCNN
    (S = C, K = 1) that is one uniform per sub-pixel, (N, C, H, W).
    """
    k = (schedule or StepSchedule(image.channels)).noise_channels
    return np.random.default_rng(seed).random((n, k, image.height, image.width), dtype=np.float32)


def check_noise(noise: np.ndarray, n: int, image: ImageSpec, schedule: StepSchedule | None = None) -> np.ndarray:
    k = (schedule or StepSchedule(image.channels)).noise_channels
    want = (n, k, image.height, image.width)
    if n < 1:
        raise PixelrtError("nothing to sample: the noise array holds no images; ask for at least one")
    if noise.shape != want:
        raise PixelrtError(f"noise has shape {noise.shape}, expected {want} ({k} uniforms per pixel; "
                           "draw it with make_noise(n, image, seed, schedule))")
    if not np.all(np.isfinite(noise)):
        raise PixelrtError("noise contains NaN or infinity; draw it with make_noise(n, image, seed)")
    if noise.min() < 0.0 or noise.max() >= 1.0:
        raise PixelrtError(f"noise must lie in [0, 1), got [{noise.min()}, {noise.max()}]; draw it with make_noise()")
    return noise.astype(np.float32, copy=False)


def check_loop_inputs(image: ImageSpec, schedule: StepSchedule, noise: np.ndarray, force, context,
                      batch_size: int) -> tuple:
    """(noise, force, context) of a sampling loop, checked (every loop: raster, wavefront, TensorRT's)."""
    n = len(noise)
    noise = check_noise(noise, n, image, schedule)
    context = check_context(context, schedule.context, n)
    if batch_size < 1:
        raise PixelrtError(f"batch size must be at least 1, got {batch_size}")
    if force is not None:
        if force.shape != (n, *image.shape):
            raise PixelrtError(f"forced images have shape {force.shape}, expected {(n, *image.shape)}")
        force = check_images(force, image.levels, "forced images")
    return noise, force, context


def step_loop(runner, image: ImageSpec, state: list[StateSpec], noise: np.ndarray,
              force: np.ndarray | None = None, batch_size: int = 64, progress: bool = False,
              desc: str = "sampling", schedule: StepSchedule | None = None, context: dict | None = None,
              row_runner=None) -> StepResult:
    """Run the step graph over every pixel in raster order, its sub-steps in R->G->B order.

    runner: anything with ``infer(feeds, check=...) -> dict`` (a Backend or the PyTorch reference).
    noise: (N, S*K, H, W) uniform [0, 1) (see make_noise). force: optional (N, C, H, W) true values
    for teacher forcing. schedule: the bundle's step schedule (default: one channel per call, one
    uniform each). context: per-image inputs the schedule names, e.g. {"label": (N,) int64}.
    row_runner: runs the schedule's per-row graph (needed when ``state`` has ``row`` states).
    """
    schedule = schedule or StepSchedule(image.channels)
    n = len(noise)
    noise, force, context = check_loop_inputs(image, schedule, noise, force, context, batch_size)
    if any(s.update == "row" for s in state) and row_runner is None:
        raise PixelrtError("this bundle has a per-row graph; pass row_runner (a backend on the bundle's "
                           f"{schedule.row_graph!r} graph)")
    images = np.zeros((n, *image.shape), dtype=np.uint8)
    logp = np.zeros((n, *image.shape), dtype=np.float32)
    C, H, W = image.shape
    rows = H * ((n + batch_size - 1) // batch_size)
    bar = _progress(rows, desc, progress)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        forced = None if force is None else force[lo:hi]
        ctx = {k: v[lo:hi] for k, v in context.items()}
        out_img, out_logp = _loop_batch(runner, row_runner, image, schedule, state, noise[lo:hi], forced, ctx, bar)
        images[lo:hi], logp[lo:hi] = out_img, out_logp
    if bar is not None:
        bar.close()
    return StepResult(images, logp)


def bundle_loop(step, row, bundle, noise: np.ndarray, **kwargs) -> StepResult:
    """``step_loop`` with a bundle's image, states and schedule (backends from ``step_backends``).

    A backend with its own device-resident loop (TensorRT: ``bundle_loop``) runs the whole loop itself."""
    if kwargs.get("context") is not None or bundle.context:  # label range, map shape (manifest "conditioning")
        kwargs["context"] = check_conditioning(bundle, kwargs.get("context"), len(noise))
    if row is None and hasattr(step, "bundle_loop"):
        return step.bundle_loop(bundle, noise, **kwargs)
    return step_loop(step, bundle.image, bundle.state, noise, schedule=bundle.step_schedule, row_runner=row, **kwargs)


def _wanted(runner) -> set | None:
    """Input names a runner takes (feeds are filtered to them), or None when it does not say."""
    names = getattr(runner, "input_names", None)
    if names is None and getattr(runner, "inputs", None):
        names = list(runner.inputs)
    return None if names is None else set(names)


def _loop_batch(runner, row_runner, image, schedule, state, noise, force, context, bar):
    B = len(noise)
    C, H, W = image.shape
    S, K = schedule.substeps_per_pixel, schedule.noise_per_substep
    cps = C // S
    caches = {s.name: s.allocate(B) for s in state}
    ring = [s for s in state if s.update == "ring-row"]
    replace = [s for s in state if s.update == "replace"]
    row_states = [s for s in state if s.update == "row"]
    strided = [s for s in state if s.update == "strided-ring-row"]
    # (H, W, S, B[, K]) and (H, W, S, B[, cps]) layouts make each call's slice contiguous without a copy.
    noise_t = noise.reshape(B, S, K, H, W).transpose(3, 4, 1, 0, 2)
    noise_t = np.ascontiguousarray(noise_t[..., 0] if K == 1 else noise_t)
    force_t = (np.full((H, W, S, B, cps), -1, dtype=np.int64) if force is None
               else force.reshape(B, S, cps, H, W).transpose(3, 4, 1, 0, 2).astype(np.int64))
    force_t = np.ascontiguousarray(force_t[..., 0] if cps == 1 else force_t)
    pixel = np.zeros((B, C), dtype=np.int64)
    values = np.zeros((H, W, S, B, cps), dtype=np.int64)
    logps = np.zeros((H, W, S, B, cps), dtype=np.float32)
    # The feed dict holds exactly the inputs the graph takes, built once, every per-step input in a buffer
    # of its own that each call overwrites in place. A runner that can bind them (ORT CPU: ``bind``) reads
    # those buffers and writes preallocated outputs: nothing is allocated per call (docs/architecture.md).
    wanted = _wanted(runner)
    takes = (lambda k: True) if wanted is None else wanted.__contains__
    per_step = {"row": np.zeros((), np.int64), "col": np.zeros((), np.int64), "channel": np.zeros((), np.int64),
                "force": np.empty_like(force_t[0, 0, 0]), "noise": np.empty_like(noise_t[0, 0, 0])}
    feeds = {k: v for k, v in {**caches, **context, "pixel": pixel, **per_step}.items() if takes(k)}
    t_force, t_noise = "force" in feeds, "noise" in feeds
    row_buf, col_buf, channel_buf, force_buf, noise_buf = per_step.values()
    call, inplace = _caller(runner, feeds, B)
    for i in range(H):
        row_buf[()] = i
        for j in range(W):
            pixel[:] = 0
            col_buf[()] = j
            for s in range(S):
                channel_buf[()] = s
                if t_force:
                    np.copyto(force_buf, force_t[i, j, s])
                if t_noise:
                    np.copyto(noise_buf, noise_t[i, j, s])
                out = call()
                values[i, j, s] = np.reshape(out["value"], (B, cps))
                logps[i, j, s] = np.reshape(out["logp"], (B, cps))
                pixel[:, s * cps:(s + 1) * cps] = values[i, j, s]
            for st in ring:  # commit this pixel's column into each ring buffer, in place
                caches[st.name][:, :, (i + st.pad) % st.rows, j + st.pad] = out[st.source]
            for st in strided:
                _commit_strided(caches[st.name], st, i, j, out[st.source])
            for st in replace:
                _replace(caches, feeds, st.name, out[st.source], inplace)
        if values[i].min() < 0 or values[i].max() >= image.levels:
            raise BundleError(f"the step graph sampled {int(values[i].min())}..{int(values[i].max())} in row {i}, "
                              f"outside the bundle's {image.levels} levels: the graph is not the model its manifest "
                              "describes; re-export the bundle from its checkpoint")
        if row_states:
            _run_row_graph(row_runner, i, values[i], caches, feeds, row_states, context, inplace)
        if bar is not None:
            bar.update(1)
    # (H, W, S, B, cps) -> (B, S*cps = C, H, W)
    images = values.transpose(3, 2, 4, 0, 1).reshape(B, C, H, W)
    return images.astype(np.uint8), logps.transpose(3, 2, 4, 0, 1).reshape(B, C, H, W)


def _caller(runner, feeds: dict, batch: int):
    """``(call, inplace)``: ``call()`` runs one step on the current contents of ``feeds``. A runner with
    ``bind`` (ORT CPU) binds the feeds and preallocated outputs once (``inplace``: states must then be
    updated in their buffers, never replaced); any other runner is called with the feed dict, its inputs
    checked on the first call."""
    bound = runner.bind(feeds, batch) if callable(getattr(runner, "bind", None)) else None
    if bound is not None:
        return bound[0], True
    first = [True]

    def call():
        check, first[0] = first[0], False
        return runner.infer(feeds, check=check)

    return call, False


def _replace(caches: dict, feeds: dict, name: str, value: np.ndarray, inplace: bool) -> None:
    """A ``replace`` or ``row`` state's new value: copied into its bound buffer, or the buffer replaced."""
    if inplace:
        np.copyto(caches[name], value)
        return
    caches[name] = np.ascontiguousarray(value)
    if name in feeds:
        feeds[name] = caches[name]


def _commit_strided(cache: np.ndarray, st: StateSpec, i: int, j: int, column: np.ndarray) -> None:
    """strided-ring-row: a coarser resolution's cache advances only at pixels on its grid."""
    if i % st.stride == 0 and j % st.stride == 0:
        cache[:, :, (i // st.stride + st.pad) % st.rows, j // st.stride + st.pad] = column


def _run_row_graph(row_runner, i, row_values, caches, feeds, row_states, context, inplace=False):
    """After row i: feed the finished row (B, C, W) and the row states; replace them by its outputs."""
    W, S, B, cps = row_values.shape
    row_pixels = np.ascontiguousarray(row_values.transpose(2, 1, 3, 0).reshape(B, S * cps, W))
    # Every state is offered (feeds are filtered to the graph's inputs): a row graph may read the step's caches.
    row_feeds = {**caches, "row_pixels": row_pixels, "row": np.array(i, dtype=np.int64), **context,
                 **{s.name: caches[s.name] for s in row_states}}
    wanted = _wanted(row_runner)
    out = row_runner.infer(row_feeds if wanted is None else {k: row_feeds[k] for k in wanted if k in row_feeds},
                           check=i == 0)
    for s in row_states:  # the step graph may read it too
        _replace(caches, feeds, s.name, out[s.source], inplace)


def _progress(total: int, desc: str, enabled: bool, unit: str = "row"):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)
