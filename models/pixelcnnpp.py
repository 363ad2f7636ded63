"""PixelCNN++ (Salimans et al. 2017): shifted convolutions, two streams, three resolutions,
discretized logistic mixture head. Full path here; the cached row/step paths in
``pixelcnnpp_step.py``.

Reads top-down: shifted convolutions, the gated resnet block, the model.

    x_pad = [x normalised, 1]  (the ones channel tells image from zero padding)
    u  = down_shift(down_shifted_conv_2x3(x_pad))                         # sees rows above
    ul = down_shift(down_shifted_conv_1x3(x_pad)) + right_shift(down_right_shifted_conv_2x1(x_pad))
    encoder, per resolution: [stride-2 shifted conv down] + `resnets` gated resnet blocks
        u  <- gres(u,  conv = down-shifted 2x3)
        ul <- gres(ul, u,  conv = down-right-shifted 2x2)
    decoder, coarse to fine: [stride-2 transposed shifted conv up] + blocks that pop the
        encoder outputs of the same resolution as short-cuts:
        u  <- gres(u,  u_skip)
        ul <- gres(ul, [u, ul_skip])
    params = 1x1 conv(elu(ul)) -> discretized logistic mixture (models/logistic.py)

gres(x, a) = x + A * sigmoid(B), [A, B] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(a))))).
Weight normalisation of the reference is left out (it is a training aid; the graphs are the same).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle import HeadSpec
from pixelrt.models import logistic


def concat_elu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return F.elu(torch.cat([x, -x], dim=dim))


def down_shift(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W): row i <- row i-1, zeros on top
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:  # col j <- col j-1, zeros on the left
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


@dataclass
class PixelCNNPPConfig:
    channels: int = 1       # image channels C: 1 grey, 3 RGB
    levels: int = 256       # values per sub-pixel
    filters: int = 32       # stream width F
    resnets: int = 1        # gated resnet blocks per resolution (encoder; the decoder has one more below the top)
    resolutions: int = 3    # 8x8 -> 8, 4, 2; H and W must be divisible by 2**(resolutions-1)
    mixtures: int = 5       # logistic mixture components K
    dropout: float = 0.1    # inside each gated resnet, training only

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {self.levels}")
        if self.channels < 1:
            raise ValueError(f"channels={self.channels} must be at least 1")
        for name in ("filters", "resnets", "resolutions", "mixtures"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    def check_image(self, height: int, width: int) -> None:
        s = 2 ** (self.resolutions - 1)
        if height % s or width % s:
            raise ValueError(f"PixelCNN++ with {self.resolutions} resolutions needs H and W divisible by {s}, "
                             f"got {height}x{width}; lower --resolutions or pad the images")


class ShiftedConv2d(nn.Module):
    """Convolution padded so output (i, j) sees only rows <= i: down-shifted (kernel kh x kw, centred
    columns) or down-right-shifted (columns <= j). ``stride`` 2 downsamples."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], right: bool, stride: int = 1):
        super().__init__()
        self.kernel, self.right, self.stride = kernel, right, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)

    def pads(self) -> tuple[int, int, int, int]:  # left, right, top, bottom
        kh, kw = self.kernel
        return (kw - 1, 0, kh - 1, 0) if self.right else ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pads()))


class ShiftedDeconv2d(nn.Module):
    """Stride-2 transposed shifted convolution (2x upsampling). Fine (q, p) reads coarse row q // 2
    only; down-right (2x2): coarse column p // 2, tap (q % 2, p % 2); down (2x3): columns (p+1)//2 - {0,1}."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], right: bool):
        super().__init__()
        self.kernel, self.right = kernel, right
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        y = self.deconv(x)  # (B, Cout, 2H + kh - 2, 2W + kw - 2)
        c0 = 0 if self.right else (self.kernel[1] - 1) // 2
        return y[:, :, : 2 * H, c0: c0 + 2 * W]


class GatedResnet(nn.Module):
    def __init__(self, filters: int, right: bool, skip: int, dropout: float):
        super().__init__()
        kernel = (2, 2) if right else (2, 3)
        self.conv1 = ShiftedConv2d(2 * filters, filters, kernel, right)
        self.nin = nn.Conv2d(2 * skip, filters, 1) if skip else None
        self.conv2 = ShiftedConv2d(2 * filters, 2 * filters, kernel, right)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        c1 = self.conv1(concat_elu(x))
        if a is not None:
            c1 = c1 + self.nin(concat_elu(a))
        c2 = self.conv2(self.dropout(concat_elu(c1)))
        gate_a, gate_b = c2.chunk(2, dim=1)
        return x + gate_a * torch.sigmoid(gate_b)


def block_counts(cfg: PixelCNNPPConfig) -> tuple[list[int], list[int]]:
    """Gated resnets per resolution level (0 = finest): encoder and decoder."""
    R, n = cfg.resolutions, cfg.resnets
    return [n] * R, [n if lvl == R - 1 else n + 1 for lvl in range(R)]


class PixelCNNPP(nn.Module):
    family = "pixelcnnpp"
    step_needs_width = True  # its step modules carry width-dependent constants (see pixelcnnpp_step)

    def __init__(self, config: PixelCNNPPConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        C, Fw, R = cfg.channels, cfg.filters, cfg.resolutions
        enc, dec = block_counts(cfg)
        self.u_in = ShiftedConv2d(C + 1, Fw, (2, 3), right=False)
        self.ul_in_up = ShiftedConv2d(C + 1, Fw, (1, 3), right=False)
        self.ul_in_left = ShiftedConv2d(C + 1, Fw, (2, 1), right=True)
        self.u_enc = nn.ModuleList(nn.ModuleList(GatedResnet(Fw, False, 0, cfg.dropout) for _ in range(enc[r]))
                                   for r in range(R))
        self.ul_enc = nn.ModuleList(nn.ModuleList(GatedResnet(Fw, True, Fw, cfg.dropout) for _ in range(enc[r]))
                                    for r in range(R))
        self.u_down = nn.ModuleList(ShiftedConv2d(Fw, Fw, (2, 3), False, stride=2) for _ in range(R - 1))
        self.ul_down = nn.ModuleList(ShiftedConv2d(Fw, Fw, (2, 2), True, stride=2) for _ in range(R - 1))
        self.u_dec = nn.ModuleList(nn.ModuleList(GatedResnet(Fw, False, Fw, cfg.dropout) for _ in range(dec[r]))
                                   for r in range(R))
        self.ul_dec = nn.ModuleList(nn.ModuleList(GatedResnet(Fw, True, 2 * Fw, cfg.dropout) for _ in range(dec[r]))
                                    for r in range(R))
        self.u_up = nn.ModuleList(ShiftedDeconv2d(Fw, Fw, (2, 3), False) for _ in range(R - 1))
        self.ul_up = nn.ModuleList(ShiftedDeconv2d(Fw, Fw, (2, 2), True) for _ in range(R - 1))
        self.out = nn.Conv2d(Fw, logistic.n_params(C, cfg.mixtures), 1)

    # -- full path ---------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return logistic.normalize(x, self.config.levels)

    def params_from_float(self, xf: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised input -> (B, P, H, W) mixture parameters of each pixel given its past."""
        cfg = self.config
        cfg.check_image(*xf.shape[-2:])
        x_pad = torch.cat([xf, torch.ones_like(xf[:, :1])], dim=1)
        u_list = [down_shift(self.u_in(x_pad))]
        ul_list = [down_shift(self.ul_in_up(x_pad)) + right_shift(self.ul_in_left(x_pad))]
        for r in range(cfg.resolutions):
            if r > 0:
                u_list.append(self.u_down[r - 1](u_list[-1]))
                ul_list.append(self.ul_down[r - 1](ul_list[-1]))
            for u_block, ul_block in zip(self.u_enc[r], self.ul_enc[r]):
                u_list.append(u_block(u_list[-1]))
                ul_list.append(ul_block(ul_list[-1], u_list[-1]))
        u, ul = u_list.pop(), ul_list.pop()
        for r in reversed(range(cfg.resolutions)):
            if r < cfg.resolutions - 1:
                u, ul = self.u_up[r](u), self.ul_up[r](ul)
            for u_block, ul_block in zip(self.u_dec[r], self.ul_dec[r]):
                u = u_block(u, u_list.pop())
                ul = ul_block(ul, torch.cat([u, ul_list.pop()], dim=1))
        return self.out(F.elu(ul))

    def logits_from_float(self, xf: torch.Tensor) -> torch.Tensor:
        """The parameters once per channel group, (B, C, P, H, W), for the causality audit.

        A PixelCNN++ predicts a whole pixel's parameters from strictly earlier pixels (the R->G->B
        coupling happens in the head, on the true values), so every group gets the same outputs
        and the audit must find no dependency on the current pixel at all.
        """
        p = self.params_from_float(xf)
        return p.unsqueeze(1).expand(-1, self.config.channels, -1, -1, -1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) integer image -> (B, C, H, W) log p of each sub-pixel given its past, nats."""
        cfg = self.config
        params = self.params_from_float(self.normalize(x)).permute(0, 2, 3, 1)  # (B, H, W, P)
        v = x.long().permute(0, 2, 3, 1)  # (B, H, W, C)
        lp = logistic.subpixel_logp(v, params, cfg.channels, cfg.mixtures, cfg.levels)
        return lp.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image log-likelihood in nats, (B,)."""
        return self.log_prob(x).flatten(1).sum(1)

    # -- step path (the step protocol: models/contract.py) -----------------------------
    def step_module(self, image):
        """The ul stream, one whole pixel per step; needs the image to be a multiple of 2^(R-1)."""
        from pixelrt.models.pixelcnnpp_step import PixelCNNPPStep  # it subclasses this module's layers

        self.config.check_image(image.height, image.width)
        return PixelCNNPPStep(self, image.width)

    def row_module(self, image):
        """The u stream, one finished row per run."""
        from pixelrt.models.pixelcnnpp_row import PixelCNNPPRow

        return PixelCNNPPRow(self, image.width)

    @property
    def head(self):
        from pixelrt.models.pixelcnnpp_step import SAMPLER

        return HeadSpec("discretized-logistic-mixture", self.config.levels, SAMPLER, mixtures=self.config.mixtures)

    @staticmethod
    def trace_context():
        """Resolution branches trace as torch.cond (ONNX If nodes): a coarse level runs only on its grid."""
        from pixelrt.models.pixelcnnpp_row import tracing_for_export

        return tracing_for_export()

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}
