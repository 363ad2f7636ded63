"""VAE bounds, sampling and interpolation from a bundle's encoder and decoder graphs, without torch.

Every estimator takes its Gaussian noise from the host (numpy, seeded per image index), so
PyTorch and ONNX Runtime can be compared sample for sample: the same code below drives
any object with the backends' ``infer(feeds) -> dict`` contract (``models.vae.TorchGraphRunner``
for PyTorch). The graphs return per-sub-pixel log p(x|z) in float32; everything after that
(the sum over sub-pixels, log p(z), log q(z|x), the closed-form KL, the log-sum-exp over K)
is float64 with the max subtracted.

    ELBO   = mean_k log p(x|z_k) - KL(q(z|x) || N(0, I))            (k = 1..K, closed-form KL)
    IWAE-K = log (1/K) sum_k exp(log p(x|z_k) + log p(z_k) - log q(z_k|x))
    z_k    = mu(x) + exp(logvar(x) / 2) * eps_k,  eps_k ~ N(0, I) from the seed
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pixelrt.errors import BundleError, DataError, PixelrtError
from pixelrt.bundle import Bundle, ImageSpec

LOG_2PI = math.log(2.0 * math.pi)
MAX_K = 100_000


def latent_size(bundle: Bundle) -> int:
    """The bundle's latent size, from its manifest; BundleError for a bundle without a latent."""
    if bundle.kind not in ("vae", "pixelvae"):
        raise BundleError(f"{bundle.root} is a {bundle.kind} bundle ({bundle.family}), not a VAE; this command "
                          "needs a bundle exported from `pixelrt train --model vae`")
    return bundle.manifest.latent.size


def latent_noise(n: int, k: int, latent: int, seed: int, start: int = 0) -> np.ndarray:
    """eps (n, k, latent) float32 ~ N(0, I); image ``start + i`` always gets the same draws for a seed,
    whatever the batching, and its first k' draws are the same for every k >= k' (nested IWAE-K)."""
    out = np.empty((n, k, latent), np.float32)
    for i in range(n):
        out[i] = np.random.default_rng([seed, start + i]).standard_normal((k, latent), dtype=np.float32)
    return out


def check_ks(ks, limit: int = MAX_K) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > limit:
        raise PixelrtError(f"IWAE sample counts must be integers in 1..{limit}, got {ks}; e.g. --iwae 100")
    return ks


def iwae_ladder(k: int) -> list[int]:
    """1, 10, 100, ... up to k, and k itself: the IWAE-K values a report shows."""
    ladder = [10 ** i for i in range(int(math.log10(k)) + 1) if 10 ** i <= k]
    return sorted(set(ladder + [k]))


@dataclass
class VaeBounds:
    """Per-image bounds in nats (float64, (N,)); ``iwae`` maps K -> IWAE-K."""

    image: ImageSpec
    elbo: np.ndarray
    kl: np.ndarray
    recon: np.ndarray                     # mean_k log p(x|z_k)
    iwae: dict[int, np.ndarray] = field(default_factory=dict)

    def bits_per_dim(self, nats: np.ndarray) -> float:
        return float(self.image.bits_per_dim(nats).mean())

    def summary(self) -> dict:
        out = {"images": int(len(self.elbo)), "elbo_bits_per_dim": self.bits_per_dim(self.elbo),
               "kl_nats": float(self.kl.mean()), "recon_nats": float(self.recon.mean())}
        out.update({f"iwae_{k}_bits_per_dim": self.bits_per_dim(v) for k, v in sorted(self.iwae.items())})
        return out


def _check_noise(eps: np.ndarray, n: int, latent: int) -> np.ndarray:
    eps = np.asarray(eps)
    if eps.dtype != np.float32 or eps.ndim != 3 or eps.shape[0] != n or eps.shape[2] != latent:
        raise PixelrtError(f"latent noise must be float32 (N={n}, K, Z={latent}), got {eps.dtype} {eps.shape}; "
                           "draw it with latent_noise()")
    if not np.isfinite(eps).all():
        raise PixelrtError("latent noise contains NaN or infinity; draw it with latent_noise()")
    return eps


def _lse(a: np.ndarray) -> np.ndarray:
    """log sum exp over the last axis, float64, max subtracted."""
    m = a.max(-1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(-1, keepdims=True)))[..., 0]


def encode(encoder, x: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """mu, logvar (N, Z) float32 from the encoder graph."""
    mus, lvs = [], []
    for lo in range(0, len(x), batch_size):
        out = encoder.infer({"x": x[lo:lo + batch_size]})
        mus.append(out["mu"])
        lvs.append(out["logvar"])
    mu, logvar = np.concatenate(mus), np.concatenate(lvs)
    if not (np.isfinite(mu).all() and np.isfinite(logvar).all()):
        raise PixelrtError("the encoder returned NaN or infinity for these images; the model diverged, "
                           "retrain it (lower --lr) and re-export")
    return mu, logvar


def decoder_log_px(decoder, image: ImageSpec, batch_size: int = 1024):
    """log p(x|z) from a VAE's factorised decoder graph: ``f(z (n, Z), x (n, C, H, W)) -> (n,) float64``,
    summed over sub-pixels in float64, ``batch_size`` latents per call."""
    noise = np.zeros((batch_size, *image.shape), np.float32)  # the decoder's sampler is unused here

    def log_px(z: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.concatenate([
            decoder.infer({"z": z[b:b + batch_size], "x": x[b:b + batch_size], "noise": noise[:len(z[b:b + batch_size])]})
            ["logp"].reshape(len(z[b:b + batch_size]), -1).astype(np.float64).sum(1)
            for b in range(0, len(z), batch_size)])
    return log_px


def vae_bounds(encoder, decoder, image: ImageSpec, x: np.ndarray, ks, seed: int = 0, eps: np.ndarray | None = None,
               batch_size: int = 1024, progress: bool = False, source: str = "images") -> VaeBounds:
    """ELBO and IWAE-K for every K in ``ks`` per image of ``x`` (uint8 N, C, H, W), VAE decoder graph."""
    batch_size = _check_batch(batch_size)
    return latent_bounds(encoder, decoder_log_px(decoder, image, batch_size), image, x, ks, seed, eps, batch_size,
                         progress, source)


def _check_batch(batch_size: int) -> int:
    if batch_size < 1:
        raise PixelrtError(f"batch size must be at least 1, got {batch_size}")
    return batch_size


def latent_bounds(encoder, log_px, image: ImageSpec, x: np.ndarray, ks, seed: int = 0, eps: np.ndarray | None = None,
                  batch_size: int = 1024, progress: bool = False, source: str = "images") -> VaeBounds:
    """ELBO and IWAE-K for every K in ``ks`` per image of ``x``, for any decoder: ``log_px(z, x) -> (n,)``
    float64 nats (``decoder_log_px`` for a VAE, ``runtime.pixelvae.autoregressive_log_px`` for a PixelVAE).

    The largest K's samples are drawn once (``latent_noise(seed)`` unless ``eps`` is given); IWAE-K
    uses the first K of them and the ELBO averages log p(x|z_k) over all of them, so every bound
    in one call shares its samples. ``log_px`` gets about ``batch_size`` latents per call.
    """
    x = image.check_images(x, source, f"{source}: images are {{got}} (C x H x W) but the bundle was exported for "
                                      "{want}; evaluate data of that shape or export a model trained on it")
    ks = check_ks(ks)
    batch_size = _check_batch(batch_size)
    K, N = ks[-1], len(x)
    mu, logvar = encode(encoder, x, batch_size)
    Z = mu.shape[1]
    if eps is not None:
        eps = _check_noise(eps, N, Z)
        if eps.shape[1] < K:
            raise PixelrtError(f"latent noise has {eps.shape[1]} samples per image, IWAE-{K} needs {K}")
    per_chunk = max(1, batch_size // K)
    log_w = np.empty((N, K))
    recon = np.empty(N)
    starts = range(0, N, per_chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"ELBO + IWAE-{K}", unit="chunk", leave=False)
    for lo in starts:
        hi = min(N, lo + per_chunk)
        e = eps[lo:hi, :K] if eps is not None else latent_noise(hi - lo, K, Z, seed, start=lo)
        z = (mu[lo:hi, None] + np.exp(np.float32(0.5) * logvar[lo:hi, None]) * e).reshape(-1, Z)
        log_px_k = np.asarray(log_px(z, np.repeat(x[lo:hi], K, axis=0)), np.float64).reshape(hi - lo, K)
        e64, z64 = e.astype(np.float64), z.astype(np.float64).reshape(hi - lo, K, Z)
        log_pz = -0.5 * (np.square(z64) + LOG_2PI).sum(-1)
        log_qz = -0.5 * (np.square(e64) + logvar[lo:hi, None].astype(np.float64) + LOG_2PI).sum(-1)
        log_w[lo:hi] = log_px_k + log_pz - log_qz
        recon[lo:hi] = log_px_k.mean(1)
    if not np.isfinite(log_w).all():
        raise PixelrtError("the decoder returned NaN or infinity; the model diverged, retrain it and re-export")
    mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
    kl = 0.5 * (np.square(mu64) + np.exp(lv64) - 1.0 - lv64).sum(1)
    iwae = {k: _lse(log_w[:, :k]) - math.log(k) for k in ks}
    return VaeBounds(image, recon - kl, kl, recon, iwae)


def decode(decoder, image: ImageSpec, z: np.ndarray, noise: np.ndarray, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Run the decoder graph on latents ``z`` (N, Z) float32 with sampling noise (N, C, H, W) uniform [0, 1).

    Returns ``sample`` (uint8, exact draws from p(x|z)) and ``mean`` (float32, level units).
    """
    z = np.ascontiguousarray(z, np.float32)
    if not np.isfinite(z).all():
        raise PixelrtError("latents contain NaN or infinity")
    blank = np.zeros((min(batch_size, len(z)), *image.shape), np.uint8)
    samples, means = [], []
    for lo in range(0, len(z), batch_size):
        zb = z[lo:lo + batch_size]
        out = decoder.infer({"z": zb, "x": blank[:len(zb)], "noise": noise[lo:lo + batch_size]})
        samples.append(out["sample"])
        means.append(out["mean"])
    return {"sample": np.concatenate(samples), "mean": np.concatenate(means)}


def mean_image(mean: np.ndarray, levels: int) -> np.ndarray:
    """Decoder mean (level units) -> uint8 image for a grid."""
    return np.clip(np.rint(mean), 0, levels - 1).astype(np.uint8)


def sample_vae(decoder, image: ImageSpec, latent: int, n: int, seed: int = 0, use_mean: bool = False,
               batch_size: int = 1024) -> np.ndarray:
    """n images: z ~ N(0, I) and the decoder's sampling noise both from ``seed``; the decoder mean with ``use_mean``."""
    if n < 1:
        raise PixelrtError(f"number of images must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent), dtype=np.float32)
    noise = rng.random((n, *image.shape), dtype=np.float32)
    out = decode(decoder, image, z, noise, batch_size)
    return mean_image(out["mean"], image.levels) if use_mean else out["sample"]


def interpolate(encoder, decoder, image: ImageSpec, pair: np.ndarray, steps: int) -> np.ndarray:
    """Decoder means along the straight line between the posterior means of two images.

    pair: uint8 (2, C, H, W). Returns uint8 (steps + 2, C, H, W): the first image, ``steps``
    decoded points from mu(a) to mu(b) inclusive, the second image.
    """
    if steps < 2:
        raise PixelrtError(f"--steps must be at least 2 (both end points), got {steps}")
    pair = image.check_images(pair, "interpolation pair", "interpolation images are {got} but the bundle was exported "
                                                          "for {want}")
    if len(pair) != 2:
        raise DataError(f"interpolation needs exactly 2 images, got {len(pair)}")
    mu, _ = encode(encoder, pair)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    z = (1.0 - t) * mu[0] + t * mu[1]
    out = decode(decoder, image, z, np.full((steps, *image.shape), 0.5, np.float32))
    return np.concatenate([pair[:1], mean_image(out["mean"], image.levels), pair[1:]])
