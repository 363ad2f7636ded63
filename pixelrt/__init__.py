"""pixelrt: autoregressive image models and VAEs from PyTorch to ONNX Runtime and TensorRT.

The root package imports numpy only, so that a deployed runtime
(``pip install pixelrt[runtime]``) never pulls in torch. The public API below
is resolved lazily: each function imports the runtime on first use. One call
samples or scores any bundle kind (docs/python-api.md):

    import pixelrt
    bundle = pixelrt.load("bundles/pixelcnn")
    s = pixelrt.sample(bundle, 16, seed=0)          # s.images uint8 (16, C, H, W), s.bits_per_dim
    scores = pixelrt.evaluate(bundle, s.images)     # scores.bits_per_dim, scores.nats per image
    pixelrt.check_reference(bundle)                 # ParityError if the graphs drift from the export

The lower layers stay available (``load_bundle``, ``OrtBackend``, ``open_backend``,
``make_noise``, ``step_loop``, ``save_grid``; ``pixelrt.evaluate(backend, bundle, x)`` still
runs a bundle's full graph on an open backend).
"""
from __future__ import annotations

import importlib
import os

from pixelrt.errors import BundleError, CheckpointError, DataError, ParityError, PixelrtError

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "pixelrt.data", "load_dataset": "pixelrt.data", "split": "pixelrt.data",
    "Bundle": "pixelrt.bundle", "ImageSpec": "pixelrt.bundle", "load_bundle": "pixelrt.bundle",
    "OrtBackend": "pixelrt.runtime.ort_backend", "open_backend": "pixelrt.runtime.backends",
    "make_noise": "pixelrt.runtime.sampler", "step_loop": "pixelrt.runtime.sampler",
    "save_grid": "pixelrt.runtime.grid",
    "export_model": "pixelrt.export.api",  # these two need the export extra (torch); the rest is torch-free
    "check_parity": "pixelrt.parity.api",
    "Adapter": "pixelrt.models.derive", "derive": "pixelrt.models.derive",  # plain modules: docs/convert.md
    "PIPELINES": "pixelrt.runtime.pipelines", "pipeline": "pixelrt.runtime.pipelines",
    "Samples": "pixelrt.runtime.pipelines", "Scores": "pixelrt.runtime.pipelines",
    "Interpolation": "pixelrt.runtime.pipelines", "ReferenceCheck": "pixelrt.runtime.pipelines",
    "connect": "pixelrt.serving.client",  # a Triton server's pixelrt models (docs/serving.md; the serve extra)
}

__all__ = ["__version__", "PixelrtError", "DataError", "BundleError", "CheckpointError", "ParityError",
           "load", "sample", "evaluate", "interpolate", "check_reference", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixelrt' has no attribute {name!r}")


def load(path: str | os.PathLike):
    """Read and verify the bundle directory at ``path`` (manifest, containment, every file's sha256, its parts).

    Returns a :class:`pixelrt.bundle.Bundle`; raises :class:`BundleError` naming the problem and the fix.
    Every other function here also takes the path itself and loads it.
    """
    from pixelrt.bundle import load_bundle

    return load_bundle(path)


def sample(bundle, n: int, seed: int = 0, label=None, context: dict | None = None, runtime: str = "ort",
           batch_size: int = 64, progress: bool = False, mean: bool = False):
    """Draw ``n`` images from a bundle (a :class:`Bundle` or its path), whatever its kind.

    Everything random comes from ``seed`` (the step loop's uniforms, a VAE's latents), so a seed gives the
    same images on every runtime and the same ones as the lower-level calls. ``label``: for a
    label-conditional bundle, one class for every image (``3``), one per image (a sequence of ``n``), or the
    CLI's text (``"0-9"``: equal blocks per label). ``context``: other per-image conditioning inputs by name
    (arrays with ``n`` rows). ``runtime``: ``ort`` (CPU), ``ort-cuda``, ``ort-cuda-graph``, ``ort-trt`` or
    ``trt``. ``mean``: VAE bundles, the decoder mean of each z instead of a sample.

    Returns :class:`pixelrt.runtime.pipelines.Samples`: ``images`` uint8 (n, C, H, W), ``logp`` per
    sub-pixel, ``loglik`` (nats) and ``bits_per_dim`` per image where the kind has them, and the kind's
    other arrays in ``extra`` (``z``, ``coarse``, ``label``, ...).
    """
    from pixelrt.runtime.pipelines import pipeline

    b = _bundle(bundle)
    return pipeline(b).sample(b, n, seed, context=_context(b, label, context, n), runtime=runtime,
                              batch_size=batch_size, progress=progress, mean=mean)


def evaluate(bundle, x, *legacy, label=None, context: dict | None = None, runtime: str = "ort",
             batch_size: int = 256, progress: bool = False, iwae: int | None = None, seed: int = 0,
             source: str = "images"):
    """Score images ``x`` (uint8 (N, C, H, W)) under a bundle (a :class:`Bundle` or its path), whatever its kind.

    ``label`` / ``context``: the images' conditioning inputs, as for :func:`sample`. ``iwae``: VAE and
    PixelVAE bundles, the largest K of the IWAE-1, 10, ... K ladder (default 100), with latent noise from
    ``seed``. Returns :class:`pixelrt.runtime.pipelines.Scores`: per-image ``nats`` and ``bits_per_dim``
    (exact for autoregressive bundles, the two-stage bound for multi-scale ones, the ELBO for latent-variable
    ones, whose ``elbo``, ``kl``, ``recon`` and ``iwae`` {K: per-image nats} come with it); ``rows()`` is the
    report ``pixelrt eval`` prints.

    The older form ``evaluate(backend, bundle, x, batch_size=256, source=..., progress=..., context=...)``,
    with an open backend on the bundle's full graph, still runs ``runtime.evaluate.evaluate`` and returns
    its ``EvalResult``.
    """
    if hasattr(bundle, "infer"):  # evaluate(backend, bundle, x, ...): the full graph on an open backend
        from pixelrt.runtime.evaluate import evaluate as full_graph

        names, values = ("batch_size", "source", "progress", "context"), (batch_size, source, progress, context)
        given = max(len(legacy) - 1, 0)  # of batch_size, source, progress, context, passed by position
        return full_graph(bundle, x, *legacy, **dict(zip(names[given:], values[given:])))
    if legacy:
        raise TypeError(f"evaluate(bundle, x, ...) takes its options by keyword; got {len(legacy)} more positional "
                        "arguments")
    from pixelrt.runtime.pipelines import pipeline

    b = _bundle(bundle)
    n = len(x) if hasattr(x, "__len__") else 0
    return pipeline(b).evaluate(b, x, context=_context(b, label, context, n), runtime=runtime, batch_size=batch_size,
                                progress=progress, iwae=iwae, seed=seed, source=source)


def interpolate(bundle, pair, steps: int = 10, seed: int = 0, runtime: str = "ort"):
    """Decode the straight line between two images' posterior means (VAE and PixelVAE bundles).

    ``pair``: uint8 (2, C, H, W). Returns :class:`pixelrt.runtime.pipelines.Interpolation` whose ``images``
    are uint8 (steps + 2, C, H, W): the first image, ``steps`` decoded points (end points included), the
    second image. A VAE decodes each point's mean; a PixelVAE samples each point given its z, all with the
    same step-loop noise from ``seed``. Other kinds raise a PixelrtError naming the kinds that interpolate.
    """
    from pixelrt.runtime.pipelines import pipeline

    b = _bundle(bundle)
    return pipeline(b).interpolate(b, pair, steps, seed, runtime=runtime)


def check_reference(bundle, runtime: str = "ort"):
    """Re-score the bundle's stored reference batch on ``runtime`` and compare with what PyTorch measured at
    export (its reference.npz and manifest): :class:`ParityError` beyond the precision's budget (FP32: 1e-5
    bits/dim per image), else a :class:`pixelrt.runtime.pipelines.ReferenceCheck` with the drift. This is
    what catches a graph swapped for another model's with the same shapes."""
    from pixelrt.runtime.pipelines import pipeline

    b = _bundle(bundle)
    return pipeline(b).check_reference(b, runtime)


def _bundle(bundle):
    from pixelrt.bundle import Bundle, load_bundle

    return bundle if isinstance(bundle, Bundle) else load_bundle(bundle)


def _context(bundle, label, context: dict | None, n: int) -> dict | None:
    """``context`` with ``label`` (an int, a sequence of n, or the CLI's "0-9" text) added as the "label" input."""
    if label is None:
        return context
    import numpy as np

    if "label" not in bundle.context:
        raise PixelrtError(f"label=: the bundle {bundle.root} is not label-conditional "
                           + (f"(its conditioning inputs: {', '.join(bundle.context)})" if bundle.context
                              else "(it is unconditional)") + "; drop label=")
    if context and "label" in context:
        raise PixelrtError("give the labels once: label= or context['label'], not both")
    if isinstance(label, str):
        from pixelrt.runtime.conditioning import parse_labels

        labels = parse_labels(label, n)
    else:
        arr = np.asarray(label)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer) or arr.ndim > 1 \
                or (arr.ndim == 1 and len(arr) != n):
            raise PixelrtError(f"label= must be a class index, {n} class indices (one per image) or text like "
                               f"'0-9', got {arr.dtype} of shape {arr.shape}")
        labels = np.full(n, int(arr), np.int64) if arr.ndim == 0 else arr.astype(np.int64)
    return {**(context or {}), "label": labels}
