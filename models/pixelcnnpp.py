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

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle import HeadSpec
from pixelrt.models import logistic
from pixelrt.models.pixelcnnpp_layers import (GatedResnet, PixelCNNPPConfig, ShiftedConv2d, ShiftedDeconv2d,
                                              block_counts, down_shift, right_shift)
from pixelrt.models.pixelcnnpp_row import PixelCNNPPRow, tracing_for_export
from pixelrt.models.pixelcnnpp_step import SAMPLER, PixelCNNPPStep


class PixelCNNPP(nn.Module):
    family = "pixelcnnpp"

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
        self.config.check_image(image.height, image.width)
        return PixelCNNPPStep(self, image.width)

    def row_module(self, image):
        """The u stream, one finished row per run."""
        return PixelCNNPPRow(self, image.width)

    @property
    def head(self):
        return HeadSpec("discretized-logistic-mixture", self.config.levels, SAMPLER, mixtures=self.config.mixtures)

    @staticmethod
    def trace_context():
        """Resolution branches trace as torch.cond (ONNX If nodes): a coarse level runs only on its grid."""
        return tracing_for_export()

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}
