"""The latent-variable kinds: ``kind: "vae"`` (``runtime/vae.py``: encoder and decoder graphs) and
``kind: "pixelvae"`` (``runtime/pixelvae.py``: encoder, features graph, a conditioned Gated PixelCNN).
Both score with the same host estimators: the ELBO and the IWAE-K ladder, and warn when the KL shows a
collapsed posterior (``pixelrt.diagnostics``). Torch-free."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from pixelrt.diagnostics import warn_kl_collapse
from pixelrt.runtime.pipelines.base import Interpolation, Pipeline, Samples, Scores, timing

DEFAULT_IWAE = 100


class LatentPipeline(Pipeline):
    """What VAE and PixelVAE share: the bounds' ladder, their report, the reference check on the stored noise."""

    supports = frozenset({"iwae", "interpolate"})
    reference_template = ("reference batch |d ELBO|, |d IWAE| vs export time: {drift:.1e} bits/dim "
                          "(budget {budget:.0e})")
    eval_note = ""

    @contextmanager
    def _bounds(self, bundle, runtime: str):
        """Yields ``f(x, ks, **kw) -> VaeBounds`` on open backends."""
        raise NotImplementedError
        yield

    def _evaluate(self, bundle, x, *, context, runtime, batch_size, progress, iwae, seed, source) -> Scores:
        from pixelrt.runtime.vae import iwae_ladder

        k = DEFAULT_IWAE if iwae is None else int(iwae)
        ks = iwae_ladder(k) if k >= 1 else [k]  # k < 1: the estimator names the problem
        with self._bounds(bundle, runtime) as f:
            res = f(x, ks, seed=seed, batch_size=batch_size, progress=progress, source=source)
        warn_kl_collapse(float(np.mean(res.kl)), bundle.family, where=source)  # the `pixelrt` logger: stderr
        return Scores(bundle.image, res.elbo, bundle.image.bits_per_dim(res.elbo), elbo=res.elbo, kl=res.kl,
                      recon=res.recon, iwae=dict(res.iwae))

    def _describe_scores(self, bundle, s: Scores, seed: int) -> list[str]:
        bpd = lambda a: float(np.mean(bundle.image.bits_per_dim(a)))  # noqa: E731
        ks = sorted(s.iwae)
        lines = [f"{s.source}: {len(s)} images, {s.runtime}, noise seed {seed}, {s.seconds:.1f} s{self.eval_note}",
                 f"  ELBO     {bpd(s.elbo):.4f} bits/dim  (KL {s.kl.mean():.2f} nats, "
                 f"reconstruction {-s.recon.mean():.2f} nats, averaged over {ks[-1]} samples)"]
        lines += [f"  IWAE-{k:<5d} {bpd(s.iwae[k]):.4f} bits/dim" for k in ks]
        return lines

    def _rescore_reference(self, bundle, ref: dict, runtime: str) -> dict[str, np.ndarray]:
        K = ref["eps"].shape[1]
        with self._bounds(bundle, runtime) as f:
            again = f(ref["x"], [K], eps=ref["eps"], source="bundle reference batch")
        return {"elbo": again.elbo, "iwae": again.iwae[K]}


class VaePipeline(LatentPipeline):
    kind = "vae"
    title = "VAE"
    supports = frozenset({"mean", "iwae", "interpolate"})

    @contextmanager
    def _bounds(self, bundle, runtime: str):
        from pixelrt.runtime.backends import open_backend
        from pixelrt.runtime.vae import vae_bounds

        with open_backend(runtime, bundle.graph_path("encoder")) as enc, \
                open_backend(runtime, bundle.graph_path("decoder")) as dec:
            yield lambda xs, ks, **kw: vae_bounds(enc, dec, bundle.image, xs, ks, **kw)

    def _sample(self, bundle, n, seed, *, context, runtime, batch_size, progress, mean) -> Samples:
        from pixelrt.runtime.backends import open_backend
        from pixelrt.runtime.vae import latent_size, sample_vae

        with open_backend(runtime, bundle.graph_path("decoder")) as dec:
            images = sample_vae(dec, bundle.image, latent_size(bundle), n, seed, use_mean=mean, batch_size=batch_size)
        return Samples(images)

    def _describe_samples(self, bundle, s: Samples, mean: bool) -> str:
        what = "decoder means" if mean else "samples of p(x|z)"
        return (f"decoded {len(s)} images ({what}, z ~ N(0, I), seed {s.seed}) with {s.runtime} "
                f"{timing(len(s), s.seconds, 2)}")

    def _interpolate(self, bundle, pair, steps, seed, runtime) -> Interpolation:
        from pixelrt.runtime.backends import open_backend
        from pixelrt.runtime.vae import interpolate

        with open_backend(runtime, bundle.graph_path("encoder")) as enc, \
                open_backend(runtime, bundle.graph_path("decoder")) as dec:
            row = interpolate(enc, dec, bundle.image, pair, steps)
        return Interpolation(row, steps, seed,
                             "decoder means between the posterior means; the real images at both ends")


class PixelVaePipeline(LatentPipeline):
    kind = "pixelvae"
    title = "PixelVAE"
    why_not = {"mean": ": its p(x|z) is autoregressive and has no closed-form mean; drop {flag} (each image is an "
                       "exact sample given its z)"}
    eval_note = " (PixelVAE: p(x|z) by the conditioned Gated PixelCNN)"

    @contextmanager
    def _bounds(self, bundle, runtime: str):
        from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, pixelvae_bounds

        pv = open_pixelvae(bundle)
        with pixelvae_backends(pv, runtime) as b:
            yield lambda xs, ks, **kw: pixelvae_bounds(pv, b, xs, ks, **kw)

    def _sample(self, bundle, n, seed, *, context, runtime, batch_size, progress, mean) -> Samples:
        from pixelrt.runtime.pixelvae import open_pixelvae, pixelvae_backends, sample_pixelvae

        pv = open_pixelvae(bundle)
        with pixelvae_backends(pv, runtime, step=True) as b:
            res = sample_pixelvae(pv, b, n, seed, batch_size, progress=progress)
        return Samples(res.images, res.logp, res.log_px, bundle.image.bits_per_dim(res.log_px), {"z": res.z})

    def _describe_samples(self, bundle, s: Samples, mean: bool) -> str:
        return (f"sampled {len(s)} images (z ~ N(0, I), features graph, then the PixelCNN step loop) with "
                f"{s.runtime} {timing(len(s), s.seconds)}; -log p(x|z) of the samples: "
                f"mean {s.bits_per_dim.mean():.4f} bits/dim")

    def _interpolate(self, bundle, pair, steps, seed, runtime) -> Interpolation:
        from pixelrt.runtime.pixelvae import interpolate_pixelvae, open_pixelvae, pixelvae_backends

        pv = open_pixelvae(bundle)
        with pixelvae_backends(pv, runtime, step=True) as backends:
            row = interpolate_pixelvae(pv, backends, pair, steps, seed=seed)
        return Interpolation(row, steps, seed, f"samples given z along the line between the posterior means, one "
                                               f"shared step-loop noise, seed {seed}; the real images at both ends")
