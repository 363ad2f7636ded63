"""Step graphs derived from a plain PyTorch PixelCNN: ``derive(module, Adapter(...), height, width)``.

See docs/convert.md: which models convert, the adapter, and what is refused.
"""
from pixelrt.models.derive.adapter import Adapter
from pixelrt.models.derive.analysis import DeriveError
from pixelrt.models.derive.model import DerivedModel, derive

__all__ = ["Adapter", "DerivedModel", "DeriveError", "derive"]
