"""The shared tail of every categorical autoregressive model (PixelCNN, Row LSTM, Diagonal BiLSTM).

A model supplies ``config`` (with ``channels`` and ``levels``), ``family`` and
``features(xf)``: its (B, hidden, H, W) causal feature map from the normalised
image. This mixin adds the two 1x1 Mask-B output convolutions and everything
after them: logits, the levels-way log-softmax, per-sub-pixel log-probs and
the per-image log-likelihood, so those numbers come from one piece of code.
"""
from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from pixelrt.models.heads import gather_logp, log_softmax
from pixelrt.models.layers import MaskedConv2d


def normalize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer levels -> floats in [-1, 1]; zero is also the conv padding value. Shared by both paths."""
    return x.to(torch.float32) * (2.0 / (levels - 1)) - 1.0


class CategoricalHead:
    """Mixin for nn.Modules: output convs, logits and likelihoods from ``features(xf)``."""

    def _build_head(self, hidden: int, head_hidden: int) -> None:
        C = self.config.channels
        self.head_hidden = MaskedConv2d(hidden, head_hidden, 1, "B", C)
        self.head_out = MaskedConv2d(head_hidden, C * self.config.levels, 1, "B", C)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.config.levels)

    def logits_from_features(self, h: torch.Tensor) -> torch.Tensor:
        """(B, hidden, H, W) features -> (B, C, levels, H, W) logits."""
        out = self.head_out(F.relu(self.head_hidden(F.relu(h))))
        B, _, H, W = out.shape
        return out.reshape(B, self.config.channels, self.config.levels, H, W)

    def logits_from_float(self, xf: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised input -> (B, C, levels, H, W) logits."""
        return self.logits_from_features(self.features(xf))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) integer image -> (B, C, H, W) log p of each sub-pixel given its past, nats."""
        logp = log_softmax(self.logits_from_float(self.normalize(x)), dim=2)
        return gather_logp(logp, x.long(), dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image log-likelihood in nats, (B,)."""
        return self.log_prob(x).flatten(1).sum(1)

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}
