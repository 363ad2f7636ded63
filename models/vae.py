"""Variational autoencoder (Kingma & Welling 2014) with a discrete likelihood, as in the seed lecture.

Reads top-down: config, the convolutional encoder q(z|x), the decoder p(x|z), the
model with its bounds, then the two graph modules that export traces.

    x (uint8) -> [-1, 1] -> conv3x3 -> [stride-2 conv3x3] x d -> dense -> (mu, log sigma^2)    (encoder)
    z -> dense -> (w_d, H/2^d, W/2^d) -> [transposed conv, stride 2] x d -> conv3x3 -> features (B, w, H, W)
      -> 1x1 conv -> likelihood parameters per sub-pixel                                         (decoder)

Prior p(z) = N(0, I); posterior q(z|x) = N(mu, diag(sigma^2)); z = mu + sigma * eps.
ELBO = E_q[log p(x|z)] - KL(q || p) with the closed-form Gaussian KL.
IWAE-K = log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q, a tighter bound as K grows.

The likelihood is discrete over the image's levels, so the bounds are in the same
bits/dim as the autoregressive models: a discretized logistic per sub-pixel
(``models/logistic.py``) or a levels-way categorical. ``features(z)`` is a spatial
map at image resolution, so a later PixelVAE can condition an autoregressive
decoder on it instead of this factorised head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelrt.bundle import BATCH, GraphSpec, HeadSpec, ImageSpec, LatentSpec, TensorSpec
from pixelrt.models.contract import ExportSpec, Graph
from pixelrt.models.heads import gather_logp, inverse_cdf_sample, log_softmax
from pixelrt.models.logistic import (discretized_logistic_location, discretized_logistic_logp,
                                     discretized_logistic_sample, to_unit)

LIKELIHOODS = ("logistic", "categorical")
LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class VAEConfig:
    channels: int = 1             # image channels C: 1 grey, 3 RGB
    levels: int = 256             # values per sub-pixel
    height: int = 28              # image height H (the dense layers fix the geometry)
    width: int = 28               # image width W
    latent: int = 8               # size of z (digits sweep in docs/vae.md: 8 beat 4 and 16)
    hidden: int = 32              # channels of the first conv; doubled at each stride-2 stage
    downsample: int = 2           # stride-2 stages in the encoder, mirrored by the decoder
    dense: int = 256              # units of the fully connected layer on each side of z
    likelihood: str = "logistic"  # "logistic": discretized logistic per sub-pixel; "categorical": levels-way softmax

    def validate(self) -> None:
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels must be in 2..256 (uint8 images), got {self.levels}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={self.likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
        for name in ("channels", "height", "width", "latent", "hidden", "dense"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.downsample < 0:
            raise ValueError(f"downsample={self.downsample} must be 0 or more")

    def sizes(self) -> list[tuple[int, int]]:
        """Spatial size at each encoder stage: (H, W), then ceil-halved ``downsample`` times."""
        out = [(self.height, self.width)]
        for _ in range(self.downsample):
            h, w = out[-1]
            out.append(((h + 1) // 2, (w + 1) // 2))
        return out

    def widths(self) -> list[int]:
        return [self.hidden * 2 ** i for i in range(self.downsample + 1)]

    @property
    def params_per_subpixel(self) -> int:
        return 2 if self.likelihood == "logistic" else self.levels


class Encoder(nn.Module):
    """uint8 (B, C, H, W) -> mu, logvar (B, Z)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        w, (h_d, w_d) = cfg.widths(), cfg.sizes()[-1]
        self.levels = cfg.levels
        self.stem = nn.Conv2d(cfg.channels, w[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 3, stride=2, padding=1) for i in range(cfg.downsample))
        self.fc = nn.Linear(w[-1] * h_d * w_d, cfg.dense)
        self.out = nn.Linear(cfg.dense, 2 * cfg.latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.stem(to_unit(x, self.levels)))
        for conv in self.down:
            h = F.relu(conv(h))
        mu, logvar = self.out(F.relu(self.fc(h.flatten(1)))).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z (B, Z) -> features (B, hidden, H, W) -> likelihood parameters (B, C * P, H, W).

    ``head=False`` (the PixelVAE, ``models/pixelvae.py``) keeps only ``features``: an autoregressive
    decoder reads the map instead of a factorised head."""

    def __init__(self, cfg: VAEConfig, head: bool = True):
        super().__init__()
        w, sizes = cfg.widths(), cfg.sizes()
        self.base = (w[-1], *sizes[-1])
        self.fc = nn.Linear(cfg.latent, cfg.dense)
        self.fc_map = nn.Linear(cfg.dense, w[-1] * sizes[-1][0] * sizes[-1][1])
        # Stage i goes from sizes[i+1] to sizes[i]: out = 2 * in - 1 + output_padding, exact for odd sizes too.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(w[i + 1], w[i], 3, stride=2, padding=1,
                               output_padding=(1 - sizes[i][0] % 2, 1 - sizes[i][1] % 2))
            for i in reversed(range(cfg.downsample)))
        self.smooth = nn.Conv2d(w[0], w[0], 3, padding=1)
        self.head = nn.Conv2d(w[0], cfg.channels * cfg.params_per_subpixel, 1) if head else None

    def features(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc_map(F.relu(self.fc(z)))).reshape(-1, *self.base)
        for conv in self.up:
            h = F.relu(conv(h))
        return F.relu(self.smooth(h))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(z))


class VAE(nn.Module):
    family = "vae"
    kind = "vae"  # the bundle kind (pixelrt.bundle.KINDS); autoregressive models need not say
    # pixelrt train's defaults for this family (digits sweep in docs/vae.md); flags override them.
    train_defaults = {"epochs": 100, "lr": 2e-3, "weight_decay": 0.0}
    metric = "bits/dim (negative ELBO)"  # what the trainer's held-out number is for this family

    def __init__(self, config: VAEConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def describe(self) -> dict:
        from dataclasses import asdict

        return {"family": self.family, "config": asdict(self.config)}

    def export_spec(self, image: ImageSpec):
        """Two graphs, encoder and decoder (kind "vae"); the decoder's likelihood as the head."""
        check_geometry(self.config, image)
        c = self.config
        head = (HeadSpec("discretized-logistic", image.levels, "inverse-cdf", components=1) if c.likelihood == "logistic"
                else HeadSpec("categorical", image.levels, "inverse-cdf"))
        io = vae_graphs(image, c.latent)
        graphs = {"encoder": Graph(EncoderGraph(self), io["encoder"]),
                  "decoder": Graph(DecoderGraph(self), io["decoder"])}
        return ExportSpec(self.kind, self, image, graphs, head, latent=LatentSpec(c.latent))

    # -- decoder likelihood ------------------------------------------------------------
    def params(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logistic: (mean, log_scale), each (B, C, H, W). Categorical: (logits (B, C, L, H, W),)."""
        c = self.config
        out = self.decoder(z)
        B = out.shape[0]
        if c.likelihood == "logistic":
            p = out.reshape(B, c.channels, 2, c.height, c.width)
            return p[:, :, 0], p[:, :, 1]
        return (out.reshape(B, c.channels, c.levels, c.height, c.width),)

    def log_px(self, x: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """log p(x|z) per sub-pixel (B, C, H, W), nats."""
        if self.config.likelihood == "logistic":
            return discretized_logistic_logp(x, *params, self.config.levels)
        return gather_logp(log_softmax(params[0], dim=2), x.long(), dim=2)

    def sample_and_mean(self, params: tuple[torch.Tensor, ...], uniform: torch.Tensor):
        """Exact sample from p(x|z) by inverse CDF from ``uniform`` (B, C, H, W), and the decoder mean image.

        Returns (int64 levels, float32 mean in level units), both (B, C, H, W).
        """
        L = self.config.levels
        if self.config.likelihood == "logistic":
            mean, log_scale = params
            return discretized_logistic_sample(mean, log_scale, uniform, L), discretized_logistic_location(mean, L)
        logp = log_softmax(params[0], dim=2).permute(0, 1, 3, 4, 2)  # (B, C, H, W, L)
        levels = torch.arange(L, dtype=torch.float32)
        return inverse_cdf_sample(logp, uniform), (logp.exp() * levels).sum(-1)

    # -- bounds ----------------------------------------------------------------------------
    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, sigma^2) || N(0, I)) per image, closed form."""
        return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)

    def posterior_kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image (B,), nats: what the trainer's posterior-collapse check reads."""
        return self.kl(*self.encoder(x))

    def elbo(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO per image (B,), nats: log p(x | mu + sigma * eps) - KL."""
        mu, logvar = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.log_px(x, self.params(z)).flatten(1).sum(1) - self.kl(mu, logvar)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image ELBO (nats), the trainer's objective. Fresh noise in training; in eval mode a fixed
        seed, so the held-out ELBO the trainer compares across epochs is deterministic."""
        shape = (x.shape[0], self.config.latent)
        if self.training:
            eps = torch.randn(shape)
        else:
            eps = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        return self.elbo(x, eps)

    @torch.no_grad()
    def bounds(self, x: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """PyTorch reference of the runtime's estimators (``runtime/vae.py``) on the same noise.

        x: (N, C, H, W) levels; eps: (N, K, Z) standard normal. Returns float64 per image (N,):
        ``elbo`` (mean over the K samples of log p(x|z_k), minus the closed-form KL), ``kl``,
        ``log_w`` (N, K) = log p(x|z_k) + log p(z_k) - log q(z_k|x), and ``iwae`` = IWAE-K.
        """
        K = eps.shape[1]
        mu, logvar = self.encoder(x)
        xk = x.repeat_interleave(K, dim=0)
        return latent_bounds(mu, logvar, eps, lambda z: self.log_px(xk, self.params(z)).double().flatten(1).sum(1))


def latent_bounds(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor, log_px) -> dict[str, torch.Tensor]:
    """ELBO and IWAE-K per image from the posterior (mu, logvar (N, Z)), host noise eps (N, K, Z) and
    ``log_px(z (N*K, Z)) -> (N*K,)`` = log p(x_i | z) for the image each latent row belongs to (row
    n*K + k is image n's k-th sample). Shared by the VAE and the PixelVAE; float64 after log p(x|z)."""
    N, K, Z = eps.shape
    z = (mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps).reshape(N * K, Z)
    log_px = log_px(z).double().reshape(N, K)
    e, lv, zz = eps.double(), logvar.double()[:, None], z.double().reshape(N, K, Z)
    log_pz = -0.5 * (zz.square() + LOG_2PI).sum(-1)
    log_qz = -0.5 * (e.square() + lv + LOG_2PI).sum(-1)
    log_w = log_px + log_pz - log_qz
    m = log_w.amax(1, keepdim=True)
    iwae = (m + (log_w - m).exp().sum(1, keepdim=True).log()).squeeze(1) - math.log(K)
    kl = VAE.kl(mu.double(), logvar.double())
    return {"elbo": log_px.mean(1) - kl, "kl": kl, "log_w": log_w, "iwae": iwae}


# -- the two exported graphs ------------------------------------------------------------------
def check_geometry(config, image: ImageSpec) -> None:
    """A VAE's dense layers fix its image: the config must be the image's."""
    c = config
    if (c.channels, c.height, c.width, c.levels) != (*image.shape, image.levels):
        raise ValueError(f"the model was built for {c.channels}x{c.height}x{c.width}, {c.levels} levels, not "
                         f"{'x'.join(map(str, image.shape))}, {image.levels} levels")


def encoder_graph(image: ImageSpec, latent: int) -> GraphSpec:
    return GraphSpec("encoder.onnx", (TensorSpec("x", "uint8", (BATCH, *image.shape)),),
                     (TensorSpec("mu", "float32", (BATCH, latent)), TensorSpec("logvar", "float32", (BATCH, latent))))


def vae_graphs(image: ImageSpec, latent: int) -> dict[str, GraphSpec]:
    img = (BATCH, *image.shape)
    return {
        "encoder": encoder_graph(image, latent),
        "decoder": GraphSpec("decoder.onnx",
                             (TensorSpec("z", "float32", (BATCH, latent)),
                              TensorSpec("x", "uint8", img, note="image scored by loglik/logp"),
                              TensorSpec("noise", "float32", img, note="uniform [0, 1) for sample")),
                             (TensorSpec("loglik", "float32", (BATCH,), unit="nats"),
                              TensorSpec("logp", "float32", img, unit="nats"), TensorSpec("sample", "uint8", img),
                              TensorSpec("mean", "float32", img, unit="levels"))),
    }


class EncoderGraph(nn.Module):
    """encoder.onnx: x uint8 (B, C, H, W) -> mu, logvar float32 (B, Z)."""

    input_names = ["x"]
    output_names = ["mu", "logvar"]

    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.encoder(x)


class DecoderGraph(nn.Module):
    """decoder.onnx: (z (B, Z), x uint8 (B, C, H, W), noise float32 (B, C, H, W)) ->
    loglik (B,) = log p(x|z) nats, logp (B, C, H, W) nats, sample uint8 (B, C, H, W) drawn by inverse
    CDF from ``noise``, mean float32 (B, C, H, W) in level units. Scoring and sampling share one graph,
    as ``force``/``noise`` do in the autoregressive step graph."""

    input_names = ["z", "x", "noise"]
    output_names = ["loglik", "logp", "sample", "mean"]

    def __init__(self, model: VAE):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, x: torch.Tensor, noise: torch.Tensor):
        params = self.model.params(z)
        logp = self.model.log_px(x, params)
        sample, mean = self.model.sample_and_mean(params, noise)
        return logp.flatten(1).sum(1), logp, sample.to(torch.uint8), mean


class TorchGraphRunner:
    """A graph module run on numpy feeds, duck-typed to the runtime backends' ``infer`` so the
    torch-free estimators in ``runtime/vae.py`` drive PyTorch and ONNX Runtime alike."""

    name = "torch"

    def __init__(self, graph: nn.Module):
        self.graph = graph.eval()
        self.input_names, self.output_names = graph.input_names, graph.output_names

    @torch.inference_mode()
    def infer(self, feeds: dict, check: bool = True) -> dict:
        import numpy as np

        outs = self.graph(*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self.input_names))
        return {k: v.numpy() for k, v in zip(self.output_names, outs)}
