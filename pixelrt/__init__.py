"""pixelrt: autoregressive image models and VAEs from PyTorch to ONNX Runtime and TensorRT.

The root package imports numpy only, so that a deployed runtime
(``pip install pixelrt[runtime]``) never pulls in torch. The public API below
is resolved lazily: ``pixelrt.load_bundle`` imports the runtime on first use.

    import pixelrt
    bundle = pixelrt.load_bundle("bundles/pixelcnn")
    with pixelrt.OrtBackend(bundle.graph_path("step")) as step:
        result = pixelrt.step_loop(step, bundle.image, bundle.state, pixelrt.make_noise(16, bundle.image, seed=0))
"""
from __future__ import annotations

import importlib

from pixelrt.errors import BundleError, CheckpointError, DataError, ParityError, PixelrtError

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "pixelrt.data", "load_dataset": "pixelrt.data", "split": "pixelrt.data",
    "Bundle": "pixelrt.bundle", "ImageSpec": "pixelrt.bundle", "load_bundle": "pixelrt.bundle",
    "OrtBackend": "pixelrt.runtime.ort_backend", "open_backend": "pixelrt.runtime.backends",
    "make_noise": "pixelrt.runtime.sampler", "step_loop": "pixelrt.runtime.sampler",
    "evaluate": "pixelrt.runtime.evaluate", "save_grid": "pixelrt.runtime.grid",
}

__all__ = ["__version__", "PixelrtError", "DataError", "BundleError", "CheckpointError", "ParityError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixelrt' has no attribute {name!r}")
