"""PixelVAE (Gulrajani et al. 2017): a VAE whose decoder is a small Gated PixelCNN conditioned on z.

    x -> Encoder (models/vae.py) -> q(z|x) = N(mu, diag(sigma^2))
    z -> Decoder.features (models/vae.py, no factorised head) -> map (B, hidden, H, W)
      -> Gated PixelCNN (models/gated.py) with the map as its spatial conditioning ``cond``:
         p(x|z) = prod_i p(x_i | x_<i, map(z)), exact, autoregressive

The latent carries the global structure; the PixelCNN, kept small (few layers, short reach),
models the local correlations a factorised decoder cannot. Bounds are the VAE's
(``latent_bounds``): ELBO = E_q log p(x|z) - KL, IWAE-K, with the autoregressive log p(x|z).

Training can reserve ``free_bits`` nats per latent dimension (Kingma et al. 2016): a dimension
whose batch-mean KL is below the floor costs the floor, with no gradient pushing its KL
to zero. It is a training objective only; every reported number is the true ELBO / IWAE.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

import numpy as np

from pixelrt.bundle import BATCH, GraphSpec, HeadSpec, ImageSpec, LatentSpec, TensorSpec
from pixelrt.models.contract import ExportSpec, Graph, Part, autoregressive_spec
from pixelrt.models.gated import GatedPixelCNN, GatedPixelCNNConfig
from pixelrt.models.vae import (VAE, Decoder, Encoder, EncoderGraph, VAEConfig, check_geometry, encoder_graph,
                                latent_bounds)

CONTEXT = "cond"  # the Gated PixelCNN's spatial-conditioning input, fed by the features graph


@dataclass
class PixelVAEConfig:
    channels: int = 1          # image channels C
    levels: int = 256          # values per sub-pixel
    height: int = 28           # image height (the VAE's dense layers fix the geometry)
    width: int = 28
    latent: int = 8            # size of z (the plain VAE's digits default, for a like-for-like comparison)
    hidden: int = 32           # VAE conv width (first stage) = channels of the conditioning map
    downsample: int = 2        # stride-2 stages of the encoder / transposed convs of the decoder
    dense: int = 256           # fully connected units on each side of z
    pixel_hidden: int = 32     # Gated PixelCNN gate width per stack
    pixel_layers: int = 3      # gated layers: a short reach keeps global structure in z
    input_kernel: int = 5      # first gated layer's kernel
    kernel: int = 3            # later gated layers' kernel
    head_hidden: int = 32      # the PixelCNN head's first 1x1 conv
    free_bits: float = 0.25    # training only: KL floor per latent dimension, nats (0 = plain ELBO; docs/vae.md)

    def vae_config(self) -> VAEConfig:
        return VAEConfig(channels=self.channels, levels=self.levels, height=self.height, width=self.width,
                         latent=self.latent, hidden=self.hidden, downsample=self.downsample, dense=self.dense)

    def pixel_config(self) -> GatedPixelCNNConfig:
        return GatedPixelCNNConfig(channels=self.channels, levels=self.levels, hidden=self.pixel_hidden,
                                   layers=self.pixel_layers, input_kernel=self.input_kernel, kernel=self.kernel,
                                   head_hidden=self.head_hidden, cond_shape=[self.hidden, self.height, self.width])

    def validate(self) -> None:
        self.vae_config().validate()
        self.pixel_config().validate()
        if not self.free_bits >= 0.0:
            raise ValueError(f"free_bits={self.free_bits} must be >= 0 nats per latent dimension")


class PixelVAE(nn.Module):
    family = "pixelvae"
    kind = "pixelvae"
    train_defaults = {"epochs": 60, "lr": 2e-3, "weight_decay": 0.0}  # digits sweep in docs/vae.md
    metric = "bits/dim (negative ELBO)"

    def __init__(self, config: PixelVAEConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config.vae_config())
        self.decoder = Decoder(config.vae_config(), head=False)
        self.pixelcnn = GatedPixelCNN(config.pixel_config())

    def describe(self) -> dict:
        return {"family": self.family, "config": asdict(self.config)}

    def export_spec(self, image: ImageSpec) -> ExportSpec:
        """encoder and features graphs, and the part ``pixelcnn``: the Gated PixelCNN given features(z),
        whose reference is each image given the map at its posterior mean (kind "pixelvae")."""
        check_geometry(self.config, image)
        c = self.config
        features = GraphSpec("features.onnx", (TensorSpec("z", "float32", (BATCH, c.latent)),),
                             (TensorSpec(CONTEXT, "float32", (BATCH, c.hidden, c.height, c.width)),))
        graphs = {"encoder": Graph(EncoderGraph(self), encoder_graph(image, c.latent)),
                  "features": Graph(FeaturesGraph(self), features)}
        part = Part(autoregressive_spec(self.pixelcnn, image), "p(x|z): a Gated PixelCNN given features(z)", CONTEXT,
                    lambda x: (x, {CONTEXT: self.posterior_maps(x)}))
        head = HeadSpec("categorical", image.levels, "inverse-cdf", decoder="autoregressive (Gated PixelCNN given features(z))")
        return ExportSpec(self.kind, self, image, graphs, head, latent=LatentSpec(c.latent), parts={"pixelcnn": part},
                          notes={"log_px": "pixelcnn/full.onnx on (x, features(z))",
                                 "sampling": f"z ~ N(0, I) -> features.onnx once -> the step loop of pixelcnn/ with {CONTEXT}"})

    @torch.inference_mode()
    def posterior_maps(self, x: np.ndarray) -> np.ndarray:
        """The conditioning map at each image's posterior mean: what the PixelCNN sees for a typical z."""
        mu, _ = self.encoder(torch.from_numpy(x))
        return self.cond(mu).numpy()

    def cond(self, z: torch.Tensor) -> torch.Tensor:
        """The conditioning map of latents z (B, Z): (B, hidden, H, W)."""
        return self.decoder.features(z)

    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per image (B,), nats: the Gated PixelCNN's exact log-likelihood given map(z)."""
        return self.pixelcnn(x, cond=self.cond(z))

    def posterior_kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per image (B,), nats, the true one (no free-bits floor): the collapse check's."""
        return VAE.kl(*self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image objective (nats) for the trainer: the one-sample ELBO (fixed-seed noise in eval mode,
        so held-out numbers are deterministic); in training with ``free_bits`` > 0, the KL of each latent
        dimension whose batch mean is under the floor is replaced by the floor (a constant)."""
        shape = (x.shape[0], self.config.latent)
        gen = None if self.training else torch.Generator().manual_seed(0)
        eps = torch.randn(shape, generator=gen)
        mu, logvar = self.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)  # (B, Z)
        if self.training and self.config.free_bits > 0:
            floor = self.config.free_bits
            kl = torch.where(kl.mean(0, keepdim=True) < floor, torch.full_like(kl, floor), kl)
        return self.log_px(x, z) - kl.sum(1)

    @torch.no_grad()
    def bounds(self, x: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
        """``VAE.bounds`` with the autoregressive p(x|z): elbo, kl, log_w (N, K), iwae, float64."""
        K = eps.shape[1]
        mu, logvar = self.encoder(x)
        xk = x.repeat_interleave(K, dim=0)
        return latent_bounds(mu, logvar, eps, lambda z: self.pixelcnn.log_prob(xk, cond=self.cond(z))
                             .double().flatten(1).sum(1))


class FeaturesGraph(nn.Module):
    """features.onnx: z float32 (B, Z) -> cond float32 (B, hidden, H, W), run once per latent."""

    input_names = ["z"]
    output_names = [CONTEXT]

    def __init__(self, model: PixelVAE):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.cond(z)
