"""The adapter: how uint8 pixels become a plain module's input and how its output reads as logits.

    Adapter(channels=3, levels=256, input="symmetric", output="levels,channels")

``input`` (applied to the integer image as float, elementwise per sub-pixel or one-hot):

    symmetric   v / (levels - 1) * 2 - 1     in [-1, 1] (pixelrt's own normalisation)
    unit        v / (levels - 1)             in [0, 1] (torchvision's ToTensor)
    raw         v                            the integer values as floats
    onehot      (B, C * levels, H, W): channel c * levels + v is 1

``output`` (the module's output tensor, read as logits of a categorical over the levels per sub-pixel):

    channels,levels    (B, C, levels, H, W)
    levels,channels    (B, levels, C, H, W)   (nn.CrossEntropyLoss's layout)
    channels*levels    (B, C * levels, H, W), channel c's logits at c * levels + v
    levels*channels    (B, levels * C, H, W), at v * C + c

``context``: names of per-image class labels the module's ``forward`` takes after the image, with
their class counts, e.g. ``{"label": 10}`` (passed as int64 (B,) tensors).

``step``: ``cached`` (default: per-layer caches derived from the traced graph) or ``window`` (the fallback:
the module itself on its receptive-field window around each position, models/derive/window.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pixelrt.errors import PixelrtError

INPUTS = ("symmetric", "unit", "raw", "onehot")
OUTPUTS = ("channels,levels", "levels,channels", "channels*levels", "levels*channels")
STEPS = ("cached", "window")


@dataclass(frozen=True)
class Adapter:
    channels: int
    levels: int
    input: str = "symmetric"
    output: str = "channels,levels"
    context: dict = field(default_factory=dict)
    step: str = "cached"

    def __post_init__(self):
        if self.step not in STEPS:
            raise PixelrtError(f"adapter step {self.step!r} is not one of {', '.join(STEPS)}")
        if self.input not in INPUTS:
            raise PixelrtError(f"adapter input {self.input!r} is not one of {', '.join(INPUTS)}")
        if self.output not in OUTPUTS:
            raise PixelrtError(f"adapter output {self.output!r} is not one of {', '.join(OUTPUTS)}")
        if not 2 <= self.levels <= 256 or self.channels < 1:
            raise PixelrtError(f"adapter needs channels >= 1 and levels in 2..256, got {self.channels}, {self.levels}")
        for name, classes in self.context.items():
            if not isinstance(name, str) or not name.isidentifier() or not isinstance(classes, int) or classes < 1:
                raise PixelrtError(f"adapter context {name!r}: {classes!r} must be a class count (int >= 1)")

    @classmethod
    def from_json(cls, doc: dict) -> "Adapter":
        known = {"channels", "levels", "input", "output", "context", "step"}
        extra = sorted(set(doc) - known)
        if extra or not {"channels", "levels"} <= set(doc):
            raise PixelrtError(f"an adapter is a JSON object with channels, levels and optionally input, output, "
                               f"context, step; got keys {sorted(doc)}")
        return cls(**{k: doc[k] for k in known if k in doc})

    def to_json(self) -> dict:
        return {"channels": self.channels, "levels": self.levels, "input": self.input, "output": self.output,
                "context": dict(self.context), "step": self.step}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, ...) integer image (or pixel) -> the module's input."""
        v = x.to(torch.float32)
        L = self.levels
        if self.input == "symmetric":
            return v * (2.0 / (L - 1)) - 1.0
        if self.input == "unit":
            return v * (1.0 / (L - 1))
        if self.input == "raw":
            return v
        ids = torch.arange(L, device=x.device, dtype=torch.float32).reshape(1, 1, L, *([1] * (x.dim() - 2)))
        hot = (v.unsqueeze(2) == ids).to(torch.float32)  # (B, C, L, ...)
        return hot.reshape(x.shape[0], self.channels * L, *x.shape[2:])

    def logits(self, out: torch.Tensor) -> torch.Tensor:
        """The module's output (B, ..., *spatial) -> (B, C, levels, *spatial) logits."""
        C, L = self.channels, self.levels
        B, spatial = out.shape[0], out.shape[-2:]
        if self.output == "channels,levels":
            return out.reshape(B, C, L, *spatial)
        if self.output == "levels,channels":
            return out.reshape(B, L, C, *spatial).transpose(1, 2)
        if self.output == "channels*levels":
            return out.reshape(B, C, L, *spatial)
        return out.reshape(B, L, C, *spatial).transpose(1, 2)

    def out_channels(self) -> int:
        return self.channels * self.levels
