"""One table of bundle kinds -> pipelines: sample, evaluate, interpolate and check the reference batch of
any bundle with one call each, torch-free (docs/python-api.md).

    from pixelrt.runtime.pipelines import pipeline
    p = pipeline(bundle)                     # PIPELINES[bundle.kind]
    s = p.sample(bundle, 16, seed=0)         # Samples: images, logp, loglik, bits_per_dim, extra
    r = p.evaluate(bundle, x)                # Scores: nats, bits_per_dim (+ elbo, iwae for latent kinds)
    p.check_reference(bundle, "ort")         # ParityError if the graphs drift from the export-time numbers

Each pipeline is a thin layer over its kind's runtime module (``runtime/sampler.py`` and
``runtime/evaluate.py``, ``runtime/vae.py``, ``runtime/pixelvae.py``, ``runtime/multiscale.py``), which
stay the implementations: the same seed gives the same images through either.
"""
from __future__ import annotations

from pixelrt.errors import BundleError
from pixelrt.runtime.pipelines.autoregressive import AutoregressivePipeline
from pixelrt.runtime.pipelines.base import (EVAL_BATCH, FEATURES, PIPELINES, SAMPLE_BATCH, Interpolation, Pipeline,
                                            ReferenceCheck, Samples, Scores)
from pixelrt.runtime.pipelines.latent import PixelVaePipeline, VaePipeline
from pixelrt.runtime.pipelines.multiscale import MultiScalePipeline

PIPELINES.update({  # the one table, keyed by bundle kind (defined in base.py, where refusals read it)
    "autoregressive": AutoregressivePipeline(),
    "vae": VaePipeline(),
    "multiscale": MultiScalePipeline(),
    "pixelvae": PixelVaePipeline(),
})


def pipeline(bundle) -> Pipeline:
    """The pipeline of a bundle's kind (``bundle`` a Bundle or a kind name); BundleError naming the known
    kinds for any other."""
    kind = bundle if isinstance(bundle, str) else bundle.kind
    try:
        return PIPELINES[kind]
    except KeyError:
        where = "" if isinstance(bundle, str) else f"{bundle.root}: "
        raise BundleError(f"{where}no pipeline for bundle kind {kind!r}; known kinds: {', '.join(PIPELINES)}") from None


__all__ = ["EVAL_BATCH", "FEATURES", "PIPELINES", "SAMPLE_BATCH", "Interpolation", "Pipeline", "ReferenceCheck",
           "Samples", "Scores", "pipeline"]
