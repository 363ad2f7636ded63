"""Multi-Scale PixelRNN (van den Oord et al. 2016, sec. 3.5; the seed's eq. 19.15) on Row LSTMs.

    x (n x n) --coarsen--> c (s x s, s = n/2, same levels)
    stage 1: an unconditional Row LSTM on c                      -> log p1(c)
    conditioning network: c -> deconvolutions -> C_up (u, n, n) -> K^cond (1x1, unmasked)
        -> bias field (L * 4 * state, n, n): layer l's gate biases at every position
    stage 2: a Row LSTM on x whose layer l adds bias[l] to its gate pre-activations -> log p2(x | c)
    log-likelihood reported: log p1(c(x)) + log p2(x | c(x)).

Coarsening (``coarsen``): the mean of each 2 x 2 block of integer values in [0, levels-1],
rounded half-down back to an integer of the same levels: c = floor((S + 1) / 4) with S the
block's sum (S/4 = k + 0.5 rounds to k). Exact in integers, so the torch-free runtime
(runtime/multiscale.py) reproduces it bit for bit.

Because c is a deterministic function of x, the model's probability of x is
sum_c p1(c) p2(x | c) >= p1(c(x)) p2(x | c(x)): the reported log-likelihood is a lower
bound on log p(x) (the quantity the paper reports), and it is the exact log-probability of
the pair (c(x), x) under "sample c, then x given c". Sampling draws that pair.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

import numpy as np

from pixelrt.bundle import BATCH, ConditioningSpec, GraphSpec, HeadSpec, ImageSpec, TensorSpec
from pixelrt.models.contract import ExportSpec, Graph, Part, autoregressive_spec
from pixelrt.models.heads import gather_logp, log_softmax
from pixelrt.models.lstm_layers import lstm_update
from pixelrt.models.pixelcnn import normalize
from pixelrt.models.rowlstm import RowLSTM, RowLSTMConfig, RowLSTMStep


def coarsen(x: torch.Tensor) -> torch.Tensor:
    """(B, C, n, n) integer image -> (B, C, n/2, n/2) of the same dtype: 2 x 2 mean, rounded half-down."""
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"multi-scale needs even image sides, got {tuple(x.shape[-2:])}")
    B, C, H, W = x.shape
    s = x.long().reshape(B, C, H // 2, 2, W // 2, 2).sum((3, 5))
    return torch.div(s + 1, 4, rounding_mode="floor").to(x.dtype)


@dataclass
class MultiScaleConfig:
    channels: int = 1
    levels: int = 256
    hidden: int | None = None       # both stages' backbone width 2h (RowLSTMConfig's default)
    state: int | None = None        # LSTM state channels (RowLSTMConfig's default)
    layers: int = 2                 # Row LSTM layers per stage
    input_kernel: int = 7
    row_kernel: int = 3
    head_hidden: int | None = None
    up_channels: int = 16           # C_up: channels of the upsampled coarse image

    def stage(self) -> RowLSTMConfig:
        return RowLSTMConfig(channels=self.channels, levels=self.levels, hidden=self.hidden, state=self.state,
                             layers=self.layers, input_kernel=self.input_kernel, row_kernel=self.row_kernel,
                             head_hidden=self.head_hidden)

    def __post_init__(self) -> None:
        cfg = self.stage()  # fills the width defaults once, so the checkpoint records them
        self.hidden, self.state, self.head_hidden = cfg.hidden, cfg.state, cfg.head_hidden

    def validate(self) -> None:
        self.stage().validate()
        if self.up_channels < 1:
            raise ValueError(f"up_channels={self.up_channels} must be at least 1")


class CondNet(nn.Module):
    """Coarse integer image (B, C, s, s) -> bias field (B, L * 4 * state, 2s, 2s).

    3x3 conv, a stride-2 2x2 deconvolution (exact 2x upsampling), 3x3 conv -> C_up, then the
    layers' K^cond stacked into one unmasked 1x1 conv. Unmasked: the whole coarse image is given.
    """

    def __init__(self, channels: int, levels: int, up: int, gates: int):
        super().__init__()
        self.levels = levels
        self.inp = nn.Conv2d(channels, up, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(up, up, 2, stride=2)
        self.out = nn.Conv2d(up, up, 3, padding=1)
        self.k_cond = nn.Conv2d(up, gates, 1)
        nn.init.zeros_(self.k_cond.bias)

    def upsample(self, coarse: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(normalize(coarse, self.levels)))
        return self.out(F.relu(self.deconv(h)))  # C_up

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        return self.k_cond(self.upsample(coarse))


def conditional_logits(model: RowLSTM, xf: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A Row LSTM's logits with bias[:, l*4s:(l+1)*4s] added to layer l's gate pre-activations."""
    h = model.input_conv(xf)
    g = 4 * model.config.state
    for l, layer in enumerate(model.layers):
        pre = layer.input_to_state(h) + bias[:, l * g:(l + 1) * g]
        B, _, H, W = h.shape
        hs = cs = h.new_zeros(B, layer.state, W)
        rows = []
        for i in range(H):
            hs, cs = lstm_update(pre[:, :, i] + layer.state_to_state(hs), cs)
            rows.append(hs)
        h = h + layer.project(torch.stack(rows, dim=2))
    out = model.head_out(F.relu(model.head_hidden(F.relu(h))))
    B, _, H, W = out.shape
    return out.reshape(B, model.config.channels, model.config.levels, H, W)


CONTEXT = "bias"  # stage 2's context input: the bias field


class ConditionalRowLSTM(nn.Module):
    """Stage 2 seen as a model of x given the bias field: log_prob(x, bias), logits_from_float(xf, bias)."""

    def __init__(self, model: RowLSTM, size: tuple[int, int] | None = None):
        super().__init__()
        self.model = model
        self.config = model.config
        self.size = size  # (H, W) of the bias field: needed to declare it as a context record

    def logits_from_float(self, xf, bias):
        return conditional_logits(self.model, xf, bias)

    def log_prob(self, x, bias):
        logp = log_softmax(conditional_logits(self.model, normalize(x, self.config.levels), bias), dim=2)
        return gather_logp(logp, x.long(), dim=2)

    def forward(self, x, bias):
        logp = self.log_prob(x, bias)
        return logp.flatten(1).sum(1), logp

    @property
    def conditioning(self) -> tuple:
        cfg = self.model.config
        if self.size is None:
            raise ValueError("ConditionalRowLSTM(model, size=(H, W)) declares its bias field; pass the image size")
        return (ConditioningSpec(CONTEXT, "float32", (cfg.layers * 4 * cfg.state, *self.size), "map"),)

    def step_module(self, image) -> RowLSTMStep:
        cfg = self.model.config
        bias = ConditioningSpec(CONTEXT, "float32", (cfg.layers * 4 * cfg.state, image.height, image.width), "map")
        return RowLSTMStep(self.model, image.width, bias=bias)

    def describe(self) -> dict:
        return self.model.describe()


class MultiScale(nn.Module):
    family = "multiscale"
    kind = "multiscale"

    def __init__(self, config: MultiScaleConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.stage1 = RowLSTM(config.stage())
        self.stage2 = RowLSTM(config.stage())
        self.cond = CondNet(config.channels, config.levels, config.up_channels, config.layers * 4 * config.state)

    def conditional(self, size: tuple[int, int] | None = None) -> ConditionalRowLSTM:
        return ConditionalRowLSTM(self.stage2, size)

    def log_prob_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stage-1 log p per coarse sub-pixel (B, C, s, s), stage-2 log p per sub-pixel (B, C, n, n)), nats."""
        c = coarsen(x)
        return self.stage1.log_prob(c), self.conditional().log_prob(x, self.cond(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image log p1(c(x)) + log p2(x | c(x)) in nats, (B,): a lower bound on log p(x)."""
        p1, p2 = self.log_prob_parts(x)
        return p1.flatten(1).sum(1) + p2.flatten(1).sum(1)

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}

    def export_spec(self, image: ImageSpec) -> ExportSpec:
        """cond.onnx (coarse image -> bias field) and two parts: stage1 on the coarse image, stage2 on the
        image given the bias field (kind "multiscale")."""
        C, H, W = image.shape
        if H % 2 or W % 2:
            raise ValueError(f"multi-scale needs even image sides, got {H}x{W}")
        coarse = ImageSpec(C, H // 2, W // 2, image.levels)
        F = self.cond.k_cond.out_channels
        cond = GraphSpec("cond.onnx", (TensorSpec("coarse", "uint8", (BATCH, *coarse.shape)),),
                         (TensorSpec(CONTEXT, "float32", (BATCH, F, H, W)),))

        @torch.inference_mode()
        def given_bias(x: np.ndarray):
            return x, {CONTEXT: self.cond(coarsen(torch.from_numpy(x))).numpy()}

        parts = {"stage1": Part(autoregressive_spec(self.stage1, coarse), "stage 1: the coarse image", None,
                                lambda x: (coarsen(torch.from_numpy(x)).numpy(), {})),
                 "stage2": Part(autoregressive_spec(self.conditional((H, W)), image),
                                "stage 2: the image given the bias field", CONTEXT, given_bias)}
        return ExportSpec(self.kind, self, image, {"cond": Graph(self.cond, cond)},
                          HeadSpec("categorical", image.levels, "inverse-cdf"), parts=parts, notes={
                              "coarsen": {"factor": 2, "rule": "mean of each 2x2 block rounded half-down: floor((sum + 1) / 4)"},
                              "cond": {"graph": "cond", "input": "coarse", "output": CONTEXT, "runs": "once per image"},
                              "loglik": "log p1(coarse(x)) + log p2(x | coarse(x)): a lower bound on log p(x)"})


class GivenCoarse(nn.Module):
    """Stage 2 with the coarse image held fixed, as a plain ``logits_from_float(xf)`` model (for the
    causality audit and the receptive-field report: the bias field is a constant here)."""

    def __init__(self, model: MultiScale, coarse: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("coarse", coarse)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.model.config.levels)

    def logits_from_float(self, xf: torch.Tensor) -> torch.Tensor:
        bias = self.model.cond(self.coarse).expand(xf.shape[0], -1, -1, -1)
        return conditional_logits(self.model.stage2, xf, bias)
