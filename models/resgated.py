"""PixelCNN with gated residual blocks, composed from pixelrt's layers (``models/causal.py``).

    x -> k x k Mask-A conv (h) -> [ELU -> k x k Mask B (2h) -> tanh * sigmoid gate (h), + input] x n
      -> ELU -> 1x1 Mask B (C * levels logits) -> levels-way softmax per sub-pixel

The family is one file and one registration line: its step module, export, runtime, parity and CLI
all come from the model contract (docs/architecture.md, "Add a model family").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from pixelrt.models.causal import CausalSequential, GatedActivation, Residual
from pixelrt.models.layers import MaskedConv2d


@dataclass
class ResGatedConfig:
    channels: int = 1       # image channels C
    levels: int = 256       # values per sub-pixel
    hidden: int = 64        # backbone width h, divisible by channels
    blocks: int = 4         # gated residual blocks
    input_kernel: int = 7   # Mask-A input conv (odd, >= 3)
    block_kernel: int = 3   # Mask-B conv inside each block (odd, >= 3)

    def validate(self) -> None:
        if self.hidden < self.channels or self.hidden % self.channels:
            raise ValueError(f"hidden={self.hidden} must be a positive multiple of channels={self.channels}")
        if self.blocks < 1:
            raise ValueError(f"blocks={self.blocks} must be at least 1")
        for name in ("input_kernel", "block_kernel"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise ValueError(f"{name}={k} must be an odd number of at least 3")


class ResGatedPixelCNN(CausalSequential):
    family = "resgated"

    def __init__(self, config: ResGatedConfig):
        config.validate()
        C, h = config.channels, config.hidden
        layers = [MaskedConv2d(C, h, config.input_kernel, "A", C)]
        layers += [Residual(nn.ELU(), MaskedConv2d(h, 2 * h, config.block_kernel, "B", C), GatedActivation(C))
                   for _ in range(config.blocks)]
        layers += [nn.ELU(), MaskedConv2d(h, C * config.levels, 1, "B", C)]
        super().__init__(C, config.levels, layers)
        self.config = config

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}
