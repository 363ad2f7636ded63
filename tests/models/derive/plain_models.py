"""Plain-PyTorch PixelCNNs as their authors write them (torch.nn only, no pixelrt layers): the models that
pixelrt derives step graphs for in these tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_mask(mask_type: str, cin: int, cout: int, k: int, colours: int) -> torch.Tensor:
    """Mask A / B with R->G->B groups: channel i of n belongs to group i * colours // n."""
    mask = torch.ones(cout, cin, k, k)
    c = k // 2
    mask[:, :, c, c + 1:] = 0
    mask[:, :, c + 1:] = 0
    gin = torch.arange(cin) * colours // cin
    gout = torch.arange(cout) * colours // cout
    allowed = gout[:, None] > gin[None, :] if mask_type == "A" else gout[:, None] >= gin[None, :]
    mask[:, :, c, c] = allowed.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """The tutorial's masked conv: the weight is multiplied by the mask buffer in place, every forward."""

    def __init__(self, mask_type: str, cin: int, cout: int, k: int, colours: int = 1):
        super().__init__(cin, cout, k, padding=k // 2)
        self.register_buffer("mask", channel_mask(mask_type, cin, cout, k, colours))

    def forward(self, x):
        self.weight.data *= self.mask
        return super().forward(x)


class FunctionalMaskedConv2d(nn.Module):
    """The other common style: F.conv2d(x, weight * mask)."""

    def __init__(self, mask_type: str, cin: int, cout: int, k: int, colours: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / (cin * k * k) ** 0.5)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)
        self.register_buffer("mask", channel_mask(mask_type, cin, cout, k, colours))
        self.pad = k // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.pad)


class PixelCNN(nn.Module):
    """van den Oord et al. 2016's PixelCNN: a 7x7 Mask A conv, 3x3 Mask B blocks, a 1x1 head."""

    def __init__(self, colours: int = 1, levels: int = 256, hidden: int = 64, blocks: int = 8):
        super().__init__()
        layers = [MaskedConv2d("A", colours, hidden, 7, colours), nn.ReLU()]
        for _ in range(blocks):
            layers += [MaskedConv2d("B", hidden, hidden, 3, colours), nn.ReLU()]
        layers += [MaskedConv2d("B", hidden, colours * levels, 1, colours)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):  # (B, C, H, W) in [-1, 1] -> (B, C * levels, H, W)
        return self.net(x)


class ResidualBlock(nn.Module):
    def __init__(self, h: int, colours: int):
        super().__init__()
        self.a = FunctionalMaskedConv2d("B", 2 * h, h, 1, colours)
        self.b = FunctionalMaskedConv2d("B", h, h, 3, colours)
        self.c = FunctionalMaskedConv2d("B", h, 2 * h, 1, colours)

    def forward(self, x):
        return x + self.c(F.relu(self.b(F.relu(self.a(F.relu(x))))))


class ResidualPixelCNN(nn.Module):
    """The PixelCNN paper's residual blocks (1x1 -> 3x3 -> 1x1) and a two-layer 1x1 head; one-hot input."""

    def __init__(self, colours: int, levels: int, hidden: int = 8, blocks: int = 2):
        super().__init__()
        self.inp = FunctionalMaskedConv2d("A", colours * levels, 2 * hidden, 5, colours)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, colours) for _ in range(blocks))
        self.head1 = FunctionalMaskedConv2d("B", 2 * hidden, 2 * hidden, 1, colours)
        self.head2 = FunctionalMaskedConv2d("B", 2 * hidden, colours * levels, 1, colours)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.head2(F.relu(self.head1(F.relu(h))))


def down_shift(x):
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x):
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(x):
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """A Gated PixelCNN layer with plain convs and shifts: vertical stack (k//2+1) x k over the rows up to
    this one, horizontal stack 1 x (k//2+1) over the columns up to this one, the shifted link, a label bias."""

    def __init__(self, cin: int, h: int, k: int, first: bool, classes: int):
        super().__init__()
        p = k // 2
        self.p, self.first = p, first
        self.v = nn.Conv2d(cin, 2 * h, (p + 1, k))
        self.h = nn.Conv2d(cin, 2 * h, (1, p + 1))
        self.link = nn.Conv2d(2 * h, 2 * h, 1)
        self.out = nn.Conv2d(h, h, 1)
        self.embed = nn.Embedding(classes, 4 * h)

    def forward(self, v, h, label):
        p = self.p
        bv, bh = self.embed(label)[:, :, None, None].chunk(2, dim=1)
        v_pre = self.v(F.pad(v, (p, p, p, 0)))               # rows r-p..r, columns c-p..c+p
        hin = right_shift(h) if self.first else h           # the first layer must not see the current pixel
        h_pre = self.h(F.pad(hin, (p, 0, 0, 0))) + self.link(down_shift(v_pre))
        v_new = gate(v_pre + bv)
        h_new = self.out(gate(h_pre + bh))
        return v_new, (h_new if self.first else h + h_new)


class GatedPixelCNN(nn.Module):
    def __init__(self, levels: int, classes: int, hidden: int = 8, layers: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(GatedLayer(1 if k == 0 else hidden, hidden, 5 if k == 0 else 3, k == 0, classes)
                                    for k in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, levels, 1))

    def forward(self, x, label):
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h, label)
        return self.head(h)


class GlobalContext(nn.Module):
    """Not convertible: adds the image mean (a global op) to a masked PixelCNN's features."""

    def __init__(self, levels: int):
        super().__init__()
        self.conv = MaskedConv2d("A", 1, 8, 3)
        self.head = nn.Conv2d(8, levels, 1)

    def forward(self, x):
        h = self.conv(x)
        return self.head(F.relu(h + h.mean(dim=(2, 3), keepdim=True)))


class Unmasked(nn.Module):
    """Not causal: a plain 3x3 conv reads the rows below."""

    def __init__(self, levels: int):
        super().__init__()
        self.conv = nn.Conv2d(1, levels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class PreShiftedGated(nn.Module):
    """A Gated PixelCNN in the style of several public implementations: each vertical conv is padded above
    and below and cropped with ``x.size()``, so the vertical stack is shifted down *before* the next vertical
    conv. Causal, but beyond the per-layer derivation (docs/convert.md, Limits): the window fallback's case."""

    def __init__(self, levels: int, h: int = 6, k: int = 3):
        super().__init__()
        p = k // 2
        self.v = nn.Conv2d(1, 2 * h, (p + 1, k), padding=(p + 1, p))
        self.h = nn.Conv2d(1, 2 * h, (1, p + 1), padding=(0, p + 1))
        self.v2h = nn.Conv2d(2 * h, 2 * h, 1)
        self.v2 = nn.Conv2d(h, 2 * h, (p + 1, k), padding=(p, p))
        self.h2 = nn.Conv2d(h, 2 * h, (1, p + 1), padding=(0, p))
        self.v2h2 = nn.Conv2d(2 * h, 2 * h, 1)
        self.out = nn.Conv2d(h, levels, 1)

    def forward(self, x):
        H, W = x.size(-2), x.size(-1)
        v = self.v(x)[:, :, :H, :]                       # image rows r-p-1 .. r-1
        h1 = gate(self.h(x)[:, :, :, :W] + self.v2h(v))  # image columns c-p-1 .. c-1
        v2 = self.v2(gate(v))[:, :, :H, :]               # rows r-p .. r of a value that reads rows above only
        h2 = gate(self.h2(h1)[:, :, :, :W] + self.v2h2(v2))
        return self.out(F.elu(h1 + h2))
