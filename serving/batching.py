"""Concurrent sampling requests merged into one step loop, each getting exactly its own images (torch-free).

Each request's noise is ``make_noise(n, image, seed, schedule)`` of that request alone: the uniforms a local
``pixelrt sample -n N --seed S`` draws. The step loop is per-image independent (row b of every state and output
depends only on row b of the inputs), so concatenating the requests' noise and context along the batch axis and
running one loop gives each request the images of its own seed, and the rows are split back in order.

What is and is not bit-exact (measured, docs/serving.md): images are identical; per-sub-pixel log-probs can differ
in the last float bits when a request shares a batch with others, because ONNX Runtime's CPU ReduceSum (the step
graph's softmax normaliser) sums a row in an order that depends on the row's position and on the rows after it in
the batch. A request served alone in its batch gives bit-identical log-probs; ``merge=False`` serves every request
alone (bit-exact always, no batching gain).

Requests are checked one by one first: a bad one gets its own error, the rest are still served.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pixelrt.errors import PixelrtError


@dataclass
class SampleRequest:
    """One request: ``n`` images from ``seed`` with per-image ``context`` (e.g. {"label": (n,) int64})."""

    seed: int
    n: int
    context: dict = field(default_factory=dict)


@dataclass
class SampleReply:
    images: np.ndarray      # uint8 (n, C, H, W)
    logp: np.ndarray        # float32 (n, C, H, W)
    loglik: np.ndarray      # float64 (n,): logp summed in float64, as Samples.loglik


def parse_request(bundle, seed: np.ndarray, context: dict) -> SampleRequest:
    """A request from its tensors: ``seed`` (n, 1) int64, the same in every row; context arrays with n rows."""
    seed = np.asarray(seed)
    if seed.ndim == 0 or seed.size == 0:
        raise PixelrtError("seed must have one row per requested image (shape [n, 1]); got an empty tensor")
    n = len(seed)
    if not np.issubdtype(seed.dtype, np.integer):
        raise PixelrtError(f"seed must be an integer tensor (INT64), got {seed.dtype}")
    flat = seed.reshape(n, -1)
    if flat.shape[1] != 1 or not np.all(flat == flat[0, 0]):
        raise PixelrtError("seed must be one value repeated in every row of a request (shape [n, 1]): the rows are "
                           "the request's n images, drawn together from that seed")
    value = int(flat[0, 0])
    if value < 0:
        raise PixelrtError(f"seed must be a non-negative integer, got {value}")
    return SampleRequest(value, n, per_image(bundle, context, n))


def per_image(bundle, context: dict, n: int) -> dict:
    """Context tensors as the manifest shapes them per image (a label arrives as [n, 1], Triton's form of a
    per-image scalar), then checked: range, dtype, NaN (``check_conditioning``)."""
    from pixelrt.runtime.conditioning import check_conditioning

    recs = {r.name: r for r in bundle.manifest.conditioning}
    shaped = {}
    for k, v in context.items():
        v, rec = np.asarray(v), recs.get(k)
        fits = rec is not None and v.size == n * int(np.prod(rec.shape, dtype=np.int64))
        shaped[k] = v.reshape(n, *rec.shape) if fits else v
    return check_conditioning(bundle, shaped, n) if (bundle.context or shaped) else {}


def sample_merged(bundle, step, row, requests: list[SampleRequest], merge: bool = True,
                  on_row=None) -> list[SampleReply]:
    """One step loop over every request's images (``merge``), or one loop per request; replies in order.

    ``on_row(k, i, values, logp)``: called as raster row i of request k is finished (values uint8 (n, C, W), logp
    float32 (n, C, W)), while the loop goes on (``serving/streaming.py``); not called where the backend runs the
    whole loop itself (TensorRT)."""
    from pixelrt.runtime.sampler import bundle_loop, make_noise
    from pixelrt.serving.streaming import RowTap

    if not requests:
        return []
    groups = [requests] if merge else [[r] for r in requests]
    replies: list[SampleReply] = []
    first = 0
    for group in groups:
        noise = np.concatenate([make_noise(r.n, bundle.image, r.seed, bundle.step_schedule) for r in group])
        total = len(noise)
        context = {k: np.concatenate([r.context[k] for r in group]) for k in bundle.context} or None
        runner = step
        if on_row is not None and not hasattr(step, "bundle_loop"):
            bounds = np.cumsum([0] + [r.n for r in group])

            def split(i, values, logp, base=first, bounds=bounds):
                for k in range(len(bounds) - 1):
                    lo, hi = bounds[k], bounds[k + 1]
                    on_row(base + k, i, values[lo:hi], logp[lo:hi])

            runner = RowTap(step, bundle.image, bundle.step_schedule, split)
        res = bundle_loop(runner, row, bundle, noise, batch_size=total, context=context)
        first += len(group)
        loglik = res.loglik
        lo = 0
        for r in group:
            replies.append(SampleReply(res.images[lo:lo + r.n], res.logp[lo:lo + r.n], loglik[lo:lo + r.n]))
            lo += r.n
    return replies


def score_merged(bundle, full, xs: list[np.ndarray], contexts: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The full graph over the requests' images in one call: [(loglik float32 (n,), logp (n, C, H, W))]."""
    from pixelrt.runtime.evaluate import evaluate

    if not xs:
        return []
    x = np.concatenate(xs)
    context = {k: np.concatenate([c[k] for c in contexts]) for k in bundle.context} or None
    res = evaluate(full, bundle, x, batch_size=len(x), source="request", context=context)
    out, lo = [], 0
    for part in xs:
        out.append((res.loglik[lo:lo + len(part)].astype(np.float32), res.logp[lo:lo + len(part)]))
        lo += len(part)
    return out
