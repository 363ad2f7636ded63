"""PixelVAE bundles in the runtime (torch-free): load, bounds, sampling, interpolation.

A PixelVAE bundle (manifest ``kind: "pixelvae"``) is one directory:

    manifest.json    kind, image, latent, graphs encoder + features, ``decoder``; sha256 of EVERY file below
    encoder.onnx     x uint8 (B, C, H, W) -> mu, logvar float32 (B, Z)
    features.onnx    z float32 (B, Z) -> cond float32 (B, F, H, W), run once per latent
    reference.npz    a fixed batch, its latent noise (n, K, Z) and PyTorch's ELBO / IWAE-K per image
    pixelcnn/        an ordinary Gated PixelCNN bundle (full, step, row graphs) whose context is ``cond``

Likelihood: log p(x|z) = the PixelCNN's full graph on (x, features(z)); ELBO and IWAE-K come from
the same host estimators as the VAE's (``runtime/vae.py``). Sampling: z ~ N(0, I) -> features graph
once -> the step loop of the conditioned PixelCNN, with ``cond`` as per-image context.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelrt.errors import BundleError, DataError, PixelrtError
from pixelrt.bundle import Bundle, load_bundle
from pixelrt.runtime.vae import VaeBounds, encode, latent_bounds, latent_size


@dataclass
class PixelVAEBundle:
    top: Bundle
    pixelcnn: Bundle

    @property
    def image(self):
        return self.top.image

    @property
    def latent(self) -> int:
        return latent_size(self.top)

    @property
    def context_name(self) -> str:
        return self.top.manifest.parts["pixelcnn"].context


def open_pixelvae(bundle: Bundle | str | Path) -> PixelVAEBundle:
    """The parts of a verified PixelVAE bundle (``load_bundle`` checked the PixelCNN part and its context)."""
    top = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if top.kind != "pixelvae":
        raise BundleError(f"{top.root} is a {top.kind} bundle ({top.family}), not a PixelVAE; export one from "
                          "`pixelrt train --model pixelvae`")
    return PixelVAEBundle(top, top.parts["pixelcnn"])


def features(graph, z: np.ndarray, name: str, batch_size: int = 1024) -> np.ndarray:
    """The features graph over latents z (n, Z) in batches: the conditioning maps (n, F, H, W)."""
    z = np.ascontiguousarray(z, np.float32)
    if not np.isfinite(z).all():
        raise PixelrtError("latents contain NaN or infinity")
    return np.concatenate([graph.infer({"z": z[lo:lo + batch_size]})[name] for lo in range(0, len(z), batch_size)])


def autoregressive_log_px(feature_graph, full, name: str, batch_size: int = 256):
    """log p(x|z) through the features graph and the PixelCNN's full graph: ``f(z, x) -> (n,) float64``
    (the per-sub-pixel log-probs summed in float64, as the VAE's decoder path does)."""

    def log_px(z: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, len(z), batch_size):
            cond = feature_graph.infer({"z": z[lo:lo + batch_size]})[name]
            logp = full.infer({"x": x[lo:lo + batch_size], name: cond})["logp"]
            out.append(logp.reshape(len(logp), -1).astype(np.float64).sum(1))
        return np.concatenate(out)
    return log_px


@contextmanager
def pixelvae_backends(pv: PixelVAEBundle, runtime: str = "ort", step: bool = False):
    """Active backends: {"encoder", "features", "full"} and, with ``step``, "step": (step, row)."""
    from contextlib import ExitStack

    from pixelrt.runtime.backends import open_backend, step_backends

    with ExitStack() as stack:
        out = {"encoder": stack.enter_context(open_backend(runtime, pv.top.graph_path("encoder"))),
               "features": stack.enter_context(open_backend(runtime, pv.top.graph_path("features")))}
        if step:
            out["step"] = stack.enter_context(step_backends(runtime, pv.pixelcnn))
        else:
            out["full"] = stack.enter_context(open_backend(runtime, pv.pixelcnn.graph_path("full")))
        yield out


def pixelvae_bounds(pv: PixelVAEBundle, backends: dict, x: np.ndarray, ks, seed: int = 0,
                    eps: np.ndarray | None = None, batch_size: int = 256, progress: bool = False,
                    source: str = "images") -> VaeBounds:
    """ELBO and IWAE-K per image with the autoregressive p(x|z) (backends from ``pixelvae_backends``)."""
    log_px = autoregressive_log_px(backends["features"], backends["full"], pv.context_name, batch_size)
    return latent_bounds(backends["encoder"], log_px, pv.image, x, ks, seed, eps, batch_size, progress, source)


@dataclass
class PixelVAESample:
    images: np.ndarray   # (N, C, H, W) uint8
    z: np.ndarray        # (N, Z) float32, the latents the images were drawn given
    logp: np.ndarray     # (N, C, H, W) float32: log p(x_i | x_<i, z) of each drawn value, nats

    @property
    def log_px(self) -> np.ndarray:
        return self.logp.astype(np.float64).reshape(len(self.logp), -1).sum(1)


def decode_latents(pv: PixelVAEBundle, backends: dict, z: np.ndarray, noise: np.ndarray, batch_size: int = 64,
                   progress: bool = False, force: np.ndarray | None = None, desc: str = "sampling") -> PixelVAESample:
    """Features graph once per latent, then the PixelCNN's step loop given the maps (``force``: teacher forcing)."""
    from pixelrt.runtime.sampler import bundle_loop

    cond = features(backends["features"], z, pv.context_name)
    step, row = backends["step"]
    r = bundle_loop(step, row, pv.pixelcnn, noise, batch_size=batch_size, progress=progress, desc=desc, force=force,
                    context={pv.context_name: cond})
    return PixelVAESample(r.images, np.asarray(z, np.float32), r.logp)


def pixelvae_noise(pv: PixelVAEBundle, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """z (n, Z) ~ N(0, I) and the step loop's uniforms, both from one seeded generator."""
    from pixelrt.runtime.sampler import make_noise

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, pv.latent), dtype=np.float32)
    return z, make_noise(n, pv.image, int(rng.integers(2 ** 31)), pv.pixelcnn.step_schedule)


def sample_pixelvae(pv: PixelVAEBundle, backends: dict, n: int, seed: int = 0, batch_size: int = 64,
                    progress: bool = False) -> PixelVAESample:
    """n images: z ~ N(0, I) -> features -> the conditioned step loop; everything from ``seed``."""
    if n < 1:
        raise PixelrtError(f"-n must be at least 1, got {n}")
    z, noise = pixelvae_noise(pv, n, seed)
    return decode_latents(pv, backends, z, noise, batch_size, progress)


def interpolate_pixelvae(pv: PixelVAEBundle, backends: dict, pair: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    """Samples along the straight line between the posterior means of two images, every point decoded
    with the SAME step-loop noise (so only z changes along the row). Returns uint8 (steps + 2, C, H, W):
    the first image, ``steps`` samples from mu(a) to mu(b) inclusive, the second image."""
    from pixelrt.runtime.sampler import make_noise

    if steps < 2:
        raise PixelrtError(f"--steps must be at least 2 (both end points), got {steps}")
    pair = pv.image.check_images(pair, "interpolation pair", "interpolation images are {got} but the bundle was "
                                                             "exported for {want}")
    if len(pair) != 2:
        raise DataError(f"interpolation needs exactly 2 images, got {len(pair)}")
    mu, _ = encode(backends["encoder"], pair)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    z = (1.0 - t) * mu[0] + t * mu[1]
    noise = np.repeat(make_noise(1, pv.image, seed, pv.pixelcnn.step_schedule), steps, axis=0)
    out = decode_latents(pv, backends, z, noise)
    return np.concatenate([pair[:1], out.images, pair[1:]])
