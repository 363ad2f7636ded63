"""pixelrt: autoregressive image models and VAEs from PyTorch to ONNX Runtime and TensorRT.

The root package imports numpy only, so that a deployed runtime
(``pip install pixelrt[runtime]``) never pulls in torch.
"""
from pixelrt.errors import BundleError, CheckpointError, DataError, ParityError, PixelrtError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PixelrtError",
    "DataError",
    "BundleError",
    "CheckpointError",
    "ParityError",
]
