"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

Reads top-down: the config, one gated layer (both stacks), the full model. The
step path (per-pixel step module + per-row vertical-stack module) is in
``models/gated_step.py``; the stacks' convolutions in ``models/gated_layers.py``.

    v_0 = x, h_0 = x (normalised to [-1, 1])
    layer l:  v' = gate(Vconv_l(v) + cv_l)                       vertical: rows r-p..r
              h' = gate(Hconv_l(h) + link_l(shift_down(v')) + ch_l)   horizontal: current row, left
              h  = h + out_l(h')   (residual; layer 0 has none: its input is the image)
    head:     ReLU -> 1x1 Mask B -> ReLU -> 1x1 Mask B (C * levels) -> categorical (models/heads.py)

gate(a) = tanh(a_f) * sigmoid(a_g); cv_l, ch_l are the conditioning biases
(label embedding + 1x1 conv of a spatial map), zero for an unconditional model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle import ConditioningSpec
from pixelrt.models.gated_layers import ConditionBias, HorizontalConv, VerticalConv, check_context, gate, shift_down
from pixelrt.models.heads import gather_logp, log_softmax
from pixelrt.models.layers import MaskedConv2d
from pixelrt.models.gated_step import GatedPixelCNNRow, GatedPixelCNNStep
from pixelrt.models.pixelcnn import normalize


@dataclass
class GatedPixelCNNConfig:
    channels: int = 1               # image channels C: 1 grey, 3 RGB
    levels: int = 256               # values per sub-pixel
    hidden: int | None = None       # gate width F per stack, divisible by channels (default 64 rounded)
    layers: int = 5                 # gated layers (vertical + horizontal), >= 2; reach k0//2 + (layers-1)*(k//2) = 7
    input_kernel: int = 7           # first layer's kernel k0: vertical (k0//2+1) x k0, horizontal 1 x (k0//2+1)
    kernel: int = 3                 # later layers' kernel k (odd, >= 3)
    head_hidden: int | None = None  # first 1x1 Mask-B output conv, divisible by channels (default 64 rounded)
    num_classes: int = 0            # label conditioning: number of classes (0 = no label)
    cond_shape: list | None = None  # spatial conditioning map (Cc, H, W), H x W = the image's; None = no map

    def __post_init__(self) -> None:
        if self.hidden is None:
            self.hidden = 64 // self.channels * self.channels
        if self.head_hidden is None:
            self.head_hidden = 64 // self.channels * self.channels
        if self.cond_shape is not None:
            self.cond_shape = [int(v) for v in self.cond_shape]

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {self.levels}")
        for name in ("hidden", "head_hidden"):
            if getattr(self, name) < self.channels or getattr(self, name) % self.channels:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive multiple of channels={self.channels}")
        for name in ("input_kernel", "kernel"):
            k = getattr(self, name)
            if k < 3 or k % 2 == 0:
                raise ValueError(f"{name}={k} must be an odd number >= 3")
        if self.layers < 2:
            raise ValueError(f"layers={self.layers} must be at least 2")
        if self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes} must be >= 0 (0: no label conditioning)")
        if self.cond_shape is not None and (len(self.cond_shape) != 3 or min(self.cond_shape) < 1):
            raise ValueError(f"cond_shape={self.cond_shape} must be three positive sizes (Cc, H, W)")

    @property
    def context_names(self) -> list[str]:
        """Per-image conditioning inputs, in the order the graphs take them."""
        return (["label"] if self.num_classes else []) + (["cond"] if self.cond_shape else [])


class GatedLayer(nn.Module):
    """One vertical + one horizontal gated conv, the link between them and the horizontal output 1x1."""

    def __init__(self, v_in: int, h_in: int, width: int, kernel: int, mask_type: str, groups: int):
        super().__init__()
        self.groups = groups
        self.vconv = VerticalConv(v_in, 2 * width, kernel)
        self.hconv = HorizontalConv(h_in, 2 * width, kernel, mask_type, groups)
        self.link = nn.Conv2d(width, 2 * width, 1, bias=False)  # vertical (row above) -> horizontal gates
        self.out = MaskedConv2d(width, width, 1, "B", groups)
        self.residual = h_in == width and mask_type == "B"

    def forward(self, v, h, cv=None, ch=None):  # (B, *, H, W) each; cv, ch: gate biases or None
        a = self.vconv(v)
        v = gate(a if cv is None else a + cv)
        b = self.hconv(h) + self.link(shift_down(v))
        g = self.out(gate(b if ch is None else b + ch, self.groups))
        return v, (h + g if self.residual else g)


class GatedPixelCNN(nn.Module):
    family = "gated"
    train_defaults = {"epochs": 10}  # `pixelrt train`: about PixelCNN's 15-epoch CPU time (docs/gated.md)

    def __init__(self, config: GatedPixelCNNConfig):
        super().__init__()
        config.validate()
        self.config = config
        C, Fw, L = config.channels, config.hidden, config.layers
        self.layers = nn.ModuleList(
            [GatedLayer(C, C, Fw, config.input_kernel, "A", C)]
            + [GatedLayer(Fw, Fw, Fw, config.kernel, "B", C) for _ in range(L - 1)])
        cc = config.cond_shape[0] if config.cond_shape else 0
        self.cond_v = ConditionBias(L, 2 * Fw, config.num_classes, cc)
        self.cond_h = ConditionBias(L, 2 * Fw, config.num_classes, cc)
        self.head_hidden = MaskedConv2d(Fw, config.head_hidden, 1, "B", C)
        self.head_out = MaskedConv2d(config.head_hidden, C * config.levels, 1, "B", C)

    @property
    def context_names(self) -> list[str]:
        return self.config.context_names

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.config.levels)

    def example_context(self, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """Valid random conditioning (labels, a standard-normal map) for tracing, validation and audits."""
        g = torch.Generator().manual_seed(seed)
        cfg, out = self.config, {}
        if cfg.num_classes:
            out["label"] = torch.randint(0, cfg.num_classes, (batch,), generator=g)
        if cfg.cond_shape:
            out["cond"] = torch.randn(batch, *cfg.cond_shape, generator=g)
        return out

    def check_context(self, batch: int, label=None, cond=None) -> None:
        check_context(label, cond, self.config.num_classes, self.config.cond_shape, batch)

    def features(self, xf: torch.Tensor, label=None, cond=None, upto: int | None = None) -> torch.Tensor:
        """Horizontal-stack output after ``upto`` layers (default all): (B, F, H, W). For layer audits."""
        B, _, H, W = xf.shape
        self.check_context(B, label, cond)
        if cond is not None and not torch.compiler.is_exporting() and tuple(cond.shape[2:]) != (H, W):
            from pixelrt.errors import PixelrtError

            raise PixelrtError(f"cond map is {tuple(cond.shape[2:])} but images are {(H, W)}; they must match")
        cv, ch = self.cond_v.full(label, cond, H, W), self.cond_h.full(label, cond, H, W)
        v = h = xf
        for k, layer in enumerate(self.layers[:upto]):
            v, h = layer(v, h, None if cv is None else cv[:, k], None if ch is None else ch[:, k])
        return h

    def logits_from_float(self, xf: torch.Tensor, label=None, cond=None) -> torch.Tensor:
        """(B, C, H, W) normalised input -> (B, C, levels, H, W) logits."""
        h = self.features(xf, label, cond)
        out = self.head_out(F.relu(self.head_hidden(F.relu(h))))
        B, _, H, W = out.shape
        return out.reshape(B, self.config.channels, self.config.levels, H, W)

    def log_prob(self, x: torch.Tensor, label=None, cond=None) -> torch.Tensor:
        """(B, C, H, W) integer image -> (B, C, H, W) log p of each sub-pixel given its past, nats."""
        logp = log_softmax(self.logits_from_float(self.normalize(x), label, cond), dim=2)
        return gather_logp(logp, x.long(), dim=2)

    def forward(self, x: torch.Tensor, label=None, cond=None) -> torch.Tensor:
        """Per-image log-likelihood in nats, (B,)."""
        return self.log_prob(x, label, cond).flatten(1).sum(1)

    @property
    def conditioning(self) -> tuple[ConditioningSpec, ...]:
        """The step protocol's context records: ``label`` with its class count, ``cond`` with its map shape."""
        cfg, out = self.config, []
        if cfg.num_classes:
            out.append(ConditioningSpec("label", "int64", (), "class", cfg.num_classes))
        if cfg.cond_shape:
            out.append(ConditioningSpec("cond", "float32", tuple(cfg.cond_shape), "map"))
        return tuple(out)

    def step_module(self, image):
        self.check_image(image)
        return GatedPixelCNNStep(self, image.width)

    def row_module(self, image):
        return GatedPixelCNNRow(self, image.width)

    def check_image(self, image) -> None:
        cond = self.config.cond_shape
        if cond and tuple(cond[1:]) != tuple(image.shape[1:]):
            raise ValueError(f"the model's conditioning map is {tuple(cond)} but images are {image.shape}; "
                             "the map's H x W must be the image's")

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}
