"""A plain-PyTorch PixelCNN as a tutorial writes it (torch.nn only), of pixelrt's ref28 shape: the model
``pixelrt bench --model plain28`` derives step graphs for, next to pixelrt's own PixelCNN (``ref28``).

    x (1x28x28, [-1, 1]) -> 7x7 Mask A (2h = 64) -> 8 x [ReLU, 1x1 -> h, ReLU, 3x3 Mask B, ReLU, 1x1 -> 2h, + x]
      -> ReLU -> 1x1 (64) -> ReLU -> 1x1 (256 logits)

Its masked conv is the tutorial's: an ``nn.Conv2d`` subclass that multiplies its weight by a mask buffer in
place in every forward. Nothing in it knows about pixelrt.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv2d(nn.Conv2d):
    def __init__(self, mask_type: str, cin: int, cout: int, k: int):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[:, :, k // 2 + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        self.weight.data *= self.mask
        return super().forward(x)


class ResidualBlock(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(2 * h, h, 1), MaskedConv2d("B", h, h, 3), nn.Conv2d(h, 2 * h, 1)

    def forward(self, x):
        return x + self.c(F.relu(self.b(F.relu(self.a(F.relu(x))))))


class PlainPixelCNN(nn.Module):
    def __init__(self, levels: int = 256, hidden: int = 64, blocks: int = 8, head_hidden: int = 64):
        super().__init__()
        self.inp = MaskedConv2d("A", 1, hidden, 7)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden // 2) for _ in range(blocks)))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, head_hidden, 1), nn.ReLU(),
                                  nn.Conv2d(head_hidden, levels, 1))

    def forward(self, x):  # (B, 1, H, W) -> (B, levels, H, W)
        return self.head(self.blocks(self.inp(x)))


def build_bench_model(spec):
    """The bench row's model: PlainPixelCNN with random weights from the row's seed, derived for its image."""
    from pixelrt.models.derive import Adapter, derive

    cfg = dict(spec.config)
    torch.manual_seed(spec.seed)
    module = PlainPixelCNN(cfg["levels"], cfg["hidden"], cfg["blocks"], cfg["head_hidden"]).eval()
    image = spec.image
    return derive(module, Adapter(image.channels, image.levels, output="channels*levels"), image.height, image.width)
