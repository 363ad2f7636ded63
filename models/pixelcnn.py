"""PixelCNN (van den Oord et al. 2016) as in the seed lecture, with a cached step path.

Reads top-down: the residual block and the full model; the step module (few, large graph operations
for ONNX Runtime) is in ``models/pixelcnn_step.py``.

    x -> 7x7 Mask-A conv (2h) -> [residual block] x n -> ReLU -> 1x1 Mask-B (head)
      -> ReLU -> 1x1 Mask-B (C * levels logits) -> levels-way softmax per sub-pixel

Residual block: ReLU -> 1x1 to h -> ReLU -> kxk Mask B -> ReLU -> 1x1 back to 2h, + input.
Every conv carries the R->G->B channel groups, so sub-pixel c is conditioned on
all earlier pixels and on channels < c of its own pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.models.categorical import CategoricalHead, normalize  # noqa: F401 - normalize re-exported
from pixelrt.models.layers import MaskedConv2d
from pixelrt.models.pixelcnn_step import PixelCNNStep
from pixelrt.models.pixelcnn_wave import PixelCNNWave


@dataclass
class PixelCNNConfig:
    channels: int = 1              # image channels C: 1 grey, 3 RGB
    levels: int = 256              # values per sub-pixel; the head has this many logits
    hidden: int | None = None      # backbone width 2h, divisible by 2*channels (default: 128 rounded to fit)
    blocks: int = 4                # residual blocks
    input_kernel: int = 7          # Mask-A input conv size (odd)
    block_kernel: int = 3          # Mask-B conv size inside each block (odd)
    head_hidden: int | None = None  # first 1x1 Mask-B output conv, divisible by channels (default: 64 rounded)

    def __post_init__(self) -> None:
        # Defaults adapt to the colour groups (RGB needs widths divisible by 3); explicit values are checked.
        if self.hidden is None:
            self.hidden = 128 // (2 * self.channels) * (2 * self.channels)
        if self.head_hidden is None:
            self.head_hidden = 64 // self.channels * self.channels

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {self.levels}")
        if self.hidden % (2 * self.channels):
            raise ValueError(f"hidden={self.hidden} must be divisible by 2*channels={2 * self.channels}")
        if self.head_hidden % self.channels:
            raise ValueError(f"head_hidden={self.head_hidden} must be divisible by channels={self.channels}")
        for name in ("input_kernel", "block_kernel"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise ValueError(f"{name}={k} must be an odd number of at least 3: the step path caches the "
                                 f"k//2 rows above and the columns left of each position, which a 1x1 conv does not have")
        if self.blocks < 1:
            raise ValueError(f"blocks={self.blocks} must be at least 1")


class ResidualBlock(nn.Module):
    def __init__(self, width: int, kernel: int, groups: int):
        super().__init__()
        half = width // 2
        self.reduce = MaskedConv2d(width, half, 1, "B", groups)
        self.conv = MaskedConv2d(half, half, kernel, "B", groups)
        self.expand = MaskedConv2d(half, width, 1, "B", groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2h, H, W)
        a = F.relu(self.reduce(F.relu(x)))
        return x + self.expand(F.relu(self.conv(a)))


class PixelCNN(CategoricalHead, nn.Module):
    family = "pixelcnn"

    def __init__(self, config: PixelCNNConfig):
        super().__init__()
        config.validate()
        self.config = config
        C, w = config.channels, config.hidden
        self.input_conv = MaskedConv2d(C, w, config.input_kernel, "A", C)
        self.blocks = nn.ModuleList(ResidualBlock(w, config.block_kernel, C) for _ in range(config.blocks))
        self._build_head(w, config.head_hidden)

    # -- full path (logits, log p and loglik: CategoricalHead) ------------------------
    def features(self, xf: torch.Tensor) -> torch.Tensor:
        h = self.input_conv(xf)
        for block in self.blocks:
            h = block(h)
        return h

    # -- step path ---------------------------------------------------------------
    def step_module(self, image) -> "PixelCNNStep":
        return PixelCNNStep(self, image.width)

    def wave_module(self, image) -> "PixelCNNWave | None":
        """Several pixels of each image per call (models/pixelcnn_wave.py): what the runtime samples with;
        None where rows cannot overlap (the image is no wider than the lag: no call would be saved)."""
        wave = PixelCNNWave(self.step_module(image))
        return wave if wave.lag < image.width else None
