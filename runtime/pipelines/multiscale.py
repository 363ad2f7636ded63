"""``kind: "multiscale"``: the Multi-Scale PixelRNN (``runtime/multiscale.py``): stage 1's step loop on the
coarse image, the cond graph, stage 2's step loop given the bias field; scores are the paper's bound
log p1(c(x)) + log p2(x | c(x)). Torch-free."""
from __future__ import annotations

import numpy as np

from pixelrt.runtime.pipelines.base import Pipeline, Samples, Scores, timing


class MultiScalePipeline(Pipeline):
    kind = "multiscale"
    title = "Multi-Scale PixelRNN"
    supports = frozenset()
    why_not = {"iwae": ", whose log-likelihood bound log p1(c) + log p2(x|c) is computed exactly (no latent to "
                       "sample)",
               "mean": " (sampled autoregressively: it has no closed-form mean)"}

    def _sample(self, bundle, n, seed, *, context, runtime, batch_size, progress, mean) -> Samples:
        from pixelrt.runtime.multiscale import open_multiscale, sample_multiscale

        ms = open_multiscale(bundle)
        res = sample_multiscale(ms, n, seed, runtime, batch_size, progress=progress)
        loglik = res.loglik
        return Samples(res.images, None, loglik, bundle.image.bits_per_dim(loglik),
                       {"coarse": res.coarse, "logp1": res.logp1, "logp2": res.logp2})

    def _describe_samples(self, bundle, s: Samples, mean: bool) -> str:
        coarse = "x".join(map(str, bundle.parts["stage1"].image.shape))
        return (f"sampled {len(s)} images (stage 1 {coarse}, then stage 2) with {s.runtime} "
                f"{timing(len(s), s.seconds)}; bits/dim of (coarse, image) under the model: "
                f"mean {s.bits_per_dim.mean():.4f}")

    def _evaluate(self, bundle, x, *, context, runtime, batch_size, progress, iwae, seed, source) -> Scores:
        from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale

        res = evaluate_multiscale(open_multiscale(bundle), x, runtime, batch_size, source=source)
        return Scores(bundle.image, res.loglik, res.bits_per_dim, extra={"loglik1": res.loglik1,
                                                                         "loglik2": res.loglik2})

    def _describe_scores(self, bundle, s: Scores, seed: int) -> list[str]:
        d = bundle.image.dims * np.log(2.0)
        return [f"{s.source}: {len(s)} images, {s.mean_bits_per_dim:.4f} bits/dim ({s.runtime}; bound "
                f"log p1(c) + log p2(x|c): stage 1 {-s.loglik1.mean() / d:.4f} + stage 2 {-s.loglik2.mean() / d:.4f})"]

    def _rescore_reference(self, bundle, ref: dict, runtime: str) -> dict[str, np.ndarray]:
        from pixelrt.runtime.multiscale import evaluate_multiscale, open_multiscale

        again = evaluate_multiscale(open_multiscale(bundle), ref["x"], runtime, source="bundle reference batch")
        return {"loglik": again.loglik}
