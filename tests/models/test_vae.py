"""The VAE: geometry for any image size, the closed-form KL, and the bounds' ordering (IWAE-K >= ELBO,
increasing with K), each against a budget derived from the Monte Carlo standard error."""
import math

import numpy as np
import pytest
import torch

from pixelrt.models import VAE, VAEConfig, get_model, model_names
from tests.conftest import tiny_vae


@pytest.mark.parametrize("name", [n for n in model_names() if get_model(n).kind == "vae"])
def test_every_registered_vae_builds_and_bounds_its_elbo(name):
    """Walks the registry's VAE entries (the autoregressive ones are walked in test_pixelcnn.py)."""
    entry = get_model(name)
    model = entry.build(entry.make_config(channels=1, levels=4, height=5, width=6, hidden=4, dense=8, latent=2)).eval()
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 4, (3, 1, 5, 6)).astype(np.uint8))
    b = model.bounds(x, torch.randn(3, 50, 2, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(b["elbo"]).all() and (b["elbo"] < 0).all()
    assert (b["iwae"] >= b["elbo"] - 1.0).all()


@pytest.mark.parametrize("likelihood", ["logistic", "categorical"])
@pytest.mark.parametrize("shape,downsample", [((1, 8, 8), 2), ((3, 5, 7), 2), ((1, 28, 28), 2), ((1, 3, 3), 0)])
def test_decoder_reproduces_any_image_size(shape, downsample, likelihood):
    C, H, W = shape
    model = VAE(VAEConfig(channels=C, levels=9, height=H, width=W, latent=2, hidden=4, dense=8,
                          downsample=downsample, likelihood=likelihood)).eval()
    z = torch.zeros(2, 2)
    assert model.decoder.features(z).shape == (2, 4, H, W)  # the spatial map a PixelVAE would condition on
    params = model.params(z)
    assert params[0].shape == ((2, C, H, W) if likelihood == "logistic" else (2, C, 9, H, W))
    x = torch.zeros(2, C, H, W, dtype=torch.uint8)
    assert model(x).shape == (2,)


def test_config_errors_name_the_field():
    for bad, match in [(dict(likelihood="gaussian"), "likelihood"), (dict(levels=1), "levels"),
                       (dict(latent=0), "latent"), (dict(downsample=-1), "downsample")]:
        with pytest.raises(ValueError, match=match):
            VAE(VAEConfig(**bad))


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g) * 0.5
    eps = torch.randn(4, 200_000, 3, generator=g).double()
    z = mu.double()[:, None] + torch.exp(0.5 * logvar.double())[:, None] * eps
    log_q = -0.5 * (eps.square() + logvar.double()[:, None] + math.log(2 * math.pi)).sum(-1)
    log_p = -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)
    mc = (log_q - log_p)
    se = mc.std(1) / math.sqrt(mc.shape[1])
    assert ((mc.mean(1) - VAE.kl(mu.double(), logvar.double())).abs() < 4 * se).all()


@pytest.fixture(scope="module")
def bounds():
    """A random-init tiny VAE on 24 images. Its decoder's first layer is scaled up so that p(x|z) depends
    strongly on z: the untrained q(z|x) is then far from the posterior and the bounds are far apart."""
    model = tiny_vae(1, 5, 6, 7, "logistic", seed=3)
    with torch.no_grad():
        model.decoder.fc.weight.mul_(10.0)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 7, (24, 1, 5, 6)).astype(np.uint8))
    eps = torch.randn(24, 400, 3, generator=torch.Generator().manual_seed(1))
    return model, x, eps, model.bounds(x, eps)


def test_iwae_1_is_the_elbo_in_expectation(bounds):
    """Same samples: IWAE-1 with sample k is log p(x|z_k) + log p(z_k) - log q(z_k|x); its mean over k
    is the ELBO estimate up to the Monte Carlo error of the KL, which the closed form removes."""
    _, _, _, b = bounds
    per_sample = b["log_w"]                                    # (N, K): IWAE-1 for each sample
    gap = per_sample.mean(1) - b["elbo"]
    se = (per_sample - per_sample.mean(1, keepdim=True)).std(1) / math.sqrt(per_sample.shape[1])
    assert (gap.abs() < 4 * se + 1e-9).all(), (gap, se)


def test_iwae_is_above_the_elbo_and_grows_with_k(bounds):
    """Paired over the same images: mean IWAE-k over 400/k independent estimates per image; each step
    of k must gain more than 3 standard errors of the paired difference."""
    model, x, eps, b = bounds
    per_k = {}
    for k in (1, 10, 100):
        lw = b["log_w"][:, :400 // k * k].reshape(len(x), -1, k)
        per_k[k] = (torch.logsumexp(lw, dim=2) - math.log(k)).mean(1)  # (N,)
    se = lambda d: float(d.std() / math.sqrt(len(d)))  # noqa: E731
    d0 = per_k[1] - b["elbo"]
    assert abs(float(d0.mean())) < 4 * se(d0) + 1e-9  # IWAE-1 = ELBO in expectation
    for lo, hi in ((1, 10), (10, 100)):
        d = per_k[hi] - per_k[lo]
        assert float(d.mean()) > 3 * se(d), (lo, hi, float(d.mean()), se(d))
    assert (b["iwae"] > b["elbo"]).float().mean() > 0.9  # IWAE-400 vs ELBO on the same samples, per image
