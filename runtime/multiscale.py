"""Multi-Scale PixelRNN bundles in the runtime (torch-free): load, sample, evaluate.

A multi-scale bundle (manifest ``kind: "multiscale"``) is one directory:

    manifest.json        kind, the fine image, ``stages``, cond graph, reference; sha256 of EVERY file below
    cond.onnx            coarse uint8 (B, C, s, s) -> bias field (B, F, n, n), run once per image
    reference.npz        a fixed batch and its log p1(c) + log p2(x | c) at export time
    stage1/              an ordinary autoregressive bundle of the s x s coarse image
    stage2/              an autoregressive bundle of the n x n image whose schedule's context is ["bias"]

Sampling: the step loop on stage 1 -> cond graph -> the step loop on stage 2 with the bias as
context. Evaluation: coarsen x (integer arithmetic, the model's rule), stage 1's full graph on
the coarse image, cond graph, stage 2's full graph on (x, bias).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelrt.errors import BundleError, PixelrtError
from pixelrt.bundle import Bundle, load_bundle

STAGES = ("stage1", "stage2")


def coarsen(x: np.ndarray) -> np.ndarray:
    """(N, C, n, n) uint8 -> (N, C, n/2, n/2) uint8: mean of each 2x2 block rounded half-down, floor((S+1)/4)."""
    N, C, H, W = x.shape
    if H % 2 or W % 2:
        raise PixelrtError(f"multi-scale images need even sides, got {H}x{W}")
    s = x.astype(np.int64).reshape(N, C, H // 2, 2, W // 2, 2).sum((3, 5))
    return ((s + 1) // 4).astype(np.uint8)


@dataclass
class MultiScaleBundle:
    top: Bundle
    stage1: Bundle
    stage2: Bundle

    @property
    def image(self):
        return self.top.image

    @property
    def context_name(self) -> str:
        return self.top.manifest.parts["stage2"].context


def open_multiscale(bundle: Bundle | str | Path) -> MultiScaleBundle:
    """The stages of a verified multi-scale bundle (loaded and checked by ``load_bundle`` as its parts)."""
    top = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if top.kind != "multiscale":
        raise BundleError(f"{top.root} is a {top.kind} bundle, not a multi-scale one")
    return MultiScaleBundle(top, top.parts["stage1"], top.parts["stage2"])


@dataclass
class MultiScaleEval:
    loglik1: np.ndarray  # (N,) log p1(c(x)), nats
    loglik2: np.ndarray  # (N,) log p2(x | c(x)), nats
    bits_per_dim: np.ndarray  # (N,) of the sum, per fine sub-pixel

    @property
    def loglik(self) -> np.ndarray:
        return self.loglik1 + self.loglik2

    @property
    def mean_bits_per_dim(self) -> float:
        return float(self.bits_per_dim.mean())


def bias_field(cond, coarse: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The cond graph over coarse images in batches: (N, F, n, n) float32."""
    return np.concatenate([cond.infer({"coarse": coarse[lo:lo + batch_size]})["bias"]
                           for lo in range(0, len(coarse), batch_size)])


def evaluate_multiscale(ms: MultiScaleBundle, x: np.ndarray, runtime: str = "ort", batch_size: int = 256,
                        source: str = "images") -> MultiScaleEval:
    from pixelrt.runtime.backends import open_backend
    from pixelrt.runtime.evaluate import check_bundle_images, evaluate

    x = check_bundle_images(ms.top, x, source)
    c = coarsen(x)
    with open_backend(runtime, ms.top.graph_path("cond")) as cond:
        bias = bias_field(cond, c, batch_size)
    with open_backend(runtime, ms.stage1.graph_path("full")) as full1:
        r1 = evaluate(full1, ms.stage1, c, batch_size, source=f"{source} (coarsened)")
    with open_backend(runtime, ms.stage2.graph_path("full")) as full2:
        r2 = evaluate(full2, ms.stage2, x, batch_size, source=source, context={ms.context_name: bias})
    return MultiScaleEval(r1.loglik, r2.loglik, ms.image.bits_per_dim(r1.loglik + r2.loglik))


@dataclass
class MultiScaleSample:
    images: np.ndarray   # (N, C, n, n) uint8
    coarse: np.ndarray   # (N, C, s, s) uint8, stage 1's draw (== coarsen(images) only in distribution)
    logp1: np.ndarray    # (N, C, s, s) float32 nats
    logp2: np.ndarray    # (N, C, n, n) float32 nats

    @property
    def loglik(self) -> np.ndarray:
        """log p1(c) + log p2(x | c) per image, float64."""
        f = lambda a: a.astype(np.float64).reshape(len(a), -1).sum(1)  # noqa: E731
        return f(self.logp1) + f(self.logp2)


def multiscale_noise(ms: MultiScaleBundle, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1's then stage 2's uniform noise from one seeded generator."""
    rng = np.random.default_rng(seed)
    out = []
    for b in (ms.stage1, ms.stage2):
        k = b.step_schedule.noise_channels
        out.append(rng.random((n, k, b.image.height, b.image.width), dtype=np.float32))
    return out[0], out[1]


@contextmanager
def multiscale_backends(ms: MultiScaleBundle, runtime: str = "ort"):
    """Active backends on the three sampling graphs, kept open across ``sample_multiscale`` calls:
    yields {"step1": (step, row), "cond": cond, "step2": (step, row)}."""
    from pixelrt.runtime.backends import open_backend, step_backends

    with step_backends(runtime, ms.stage1) as s1, open_backend(runtime, ms.top.graph_path("cond")) as cond, \
            step_backends(runtime, ms.stage2) as s2:
        yield {"step1": s1, "cond": cond, "step2": s2}


def sample_multiscale(ms: MultiScaleBundle, n: int, seed: int, runtime: str = "ort", batch_size: int = 64,
                      progress: bool = False, force: np.ndarray | None = None,
                      backends: dict | None = None) -> MultiScaleSample:
    """Stage 1 step loop -> cond graph -> stage 2 step loop with the bias field as context.

    force: (N, C, n, n) images to teacher-force instead of sampling (stage 1 is forced with their
    coarse version); the summed log-probs are then the images' log p1(c) + log p2(x | c).
    backends: from ``multiscale_backends`` (default: opened for this call on ``runtime``).
    """
    if n < 1:
        raise PixelrtError(f"-n must be at least 1, got {n}")
    if force is not None:
        force = ms.top.image.check_images(force, "forced images", "forced images are {got}, the bundle's are {want}")
        n = len(force)
    if backends is None:
        with multiscale_backends(ms, runtime) as opened:
            return sample_multiscale(ms, n, seed, runtime, batch_size, progress, force, opened)
    from pixelrt.runtime.sampler import bundle_loop

    noise1, noise2 = multiscale_noise(ms, n, seed)
    r1 = bundle_loop(*backends["step1"], ms.stage1, noise1, batch_size=batch_size, progress=progress,
                     desc="stage 1", force=None if force is None else coarsen(force))
    bias = bias_field(backends["cond"], r1.images, batch_size)
    r2 = bundle_loop(*backends["step2"], ms.stage2, noise2, batch_size=batch_size, progress=progress,
                     desc="stage 2", force=force, context={ms.context_name: bias})
    return MultiScaleSample(r2.images, r1.images, r1.logp, r2.logp)
