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

from torch import nn

from pixelrt.models.heads import gather_logp, log_softmax, sample_categorical
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


class CategoricalStepHead(nn.Module):
    """The categorical head's one step form: ReLU -> 1x1 Mask B -> ReLU -> 1x1 Mask B -> the sub-pixel's
    levels-way softmax, sampled in the graph by inverse CDF (or forced). Every categorical step module
    (PixelCNN, Gated PixelCNN, the PixelRNNs, CausalSequential) ends in it.
    """

    def __init__(self, head_hidden: MaskedConv2d, head_out: MaskedConv2d, channels: int, levels: int):
        super().__init__()
        self.hidden, self.out = head_hidden.stepper(), head_out.stepper()
        self.channels, self.levels = channels, levels
        self.register_buffer("channel_ids", torch.arange(channels))

    def forward(self, h, pixel, channel, force, noise):
        out = self.out(F.relu(self.hidden(F.relu(h))))  # (B, C*levels)
        return categorical_step(out, pixel, channel, force, noise, self.channels, self.levels)


def categorical_step(out: torch.Tensor, pixel, channel, force, noise, channels: int, levels: int):
    """The categorical step from (B, C*levels) logits: the sub-pixel ``channel``'s levels-way softmax,
    sampled by inverse CDF from ``noise`` unless ``force`` >= 0 (``heads.sample_categorical``). Returns
    (value, log p(value), the pixel with the new value in place). With one channel there is no channel to
    pick and no pixel to merge: fewer graph nodes, the same arithmetic, so the same samples."""
    if channels == 1:
        return sample_categorical(out, noise, force)  # the pixel is the value's (B, 1) column
    logits = out.reshape(out.shape[0], channels, levels).index_select(1, channel.reshape(1))
    value, logp, _ = sample_categorical(logits.squeeze(1), noise, force)
    ids = torch.arange(channels, device=pixel.device)
    full = torch.where(ids == channel, value.unsqueeze(1), pixel)  # this pixel incl. the new value
    return value, logp, full
