"""``kind: "autoregressive"``: every single-stage family (PixelCNN, Gated PixelCNN, PixelCNN++, the PixelRNNs)
through the one step loop (``runtime/sampler.py``) and the full graph (``runtime/evaluate.py``). Torch-free."""
from __future__ import annotations

import numpy as np

from pixelrt.runtime.pipelines.base import Pipeline, Samples, Scores, timing


class AutoregressivePipeline(Pipeline):
    kind = "autoregressive"
    title = "autoregressive"
    supports = frozenset()
    why_not = {"iwae": ", whose log-likelihood is exact",
               "mean": " (sampled autoregressively: it has no closed-form mean)"}

    def _sample(self, bundle, n, seed, *, context, runtime, batch_size, progress, mean, loop="auto") -> Samples:
        from pixelrt.runtime.backends import step_backends
        from pixelrt.runtime.sampler import bundle_loop, make_noise

        noise = make_noise(n, bundle.image, seed, bundle.step_schedule)
        with step_backends(runtime, bundle, loop) as (step, row):
            res = bundle_loop(step, row, bundle, noise, batch_size=batch_size, progress=progress,
                              context=context or None)
        loglik = res.loglik
        return Samples(res.images, res.logp, loglik, bundle.image.bits_per_dim(loglik), dict(context or {}))

    def _describe_samples(self, bundle, s: Samples, mean: bool) -> str:
        return (f"sampled {len(s)} images with {s.runtime} {timing(len(s), s.seconds)}; "
                f"their bits/dim under the model: mean {s.bits_per_dim.mean():.4f}")

    def _evaluate(self, bundle, x, *, context, runtime, batch_size, progress, iwae, seed, source) -> Scores:
        from pixelrt.runtime.backends import open_backend
        from pixelrt.runtime.evaluate import evaluate

        with open_backend(runtime, bundle.graph_path("full")) as full:
            res = evaluate(full, bundle, x, batch_size, source=source, progress=progress, context=context)
        return Scores(bundle.image, res.loglik, res.bits_per_dim, logp=res.logp)

    def _describe_scores(self, bundle, s: Scores, seed: int) -> list[str]:
        return [f"{s.source}: {len(s)} images, {s.mean_bits_per_dim:.4f} bits/dim ({s.runtime})"]

    def _rescore_reference(self, bundle, ref: dict, runtime: str) -> dict[str, np.ndarray]:
        from pixelrt.runtime.backends import open_backend
        from pixelrt.runtime.evaluate import evaluate

        with open_backend(runtime, bundle.graph_path("full")) as full:
            again = evaluate(full, bundle, ref["x"], source="bundle reference batch",
                             context={k: ref[k] for k in bundle.context})
        return {"loglik": again.loglik}
