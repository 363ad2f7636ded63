"""PixelVAE model: the objective, the bounds and the free-bits floor, against independent computations."""
import math

import pytest
import torch

from pixelrt.models import VAE, PixelVAEConfig
from pixelrt.models.causality import audit_model
from tests.conftest import tiny_pixelvae


def test_config_is_validated():
    with pytest.raises(ValueError, match="free_bits"):
        PixelVAEConfig(height=4, width=4, free_bits=-1.0).validate()
    with pytest.raises(ValueError, match="hidden"):
        PixelVAEConfig(height=4, width=4, channels=3, pixel_hidden=4).validate()  # not a multiple of 3 channels


@pytest.mark.parametrize("channels", [1, 3])
def test_bounds_use_the_autoregressive_likelihood(channels):
    model = tiny_pixelvae(channels, 4, 5, 5)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (3, channels, 4, 5), generator=g)
    eps = torch.randn(3, 6, 2, generator=g)
    b = model.bounds(x, eps)
    with torch.no_grad():  # recompute log w and the bounds independently, image by image, in float64
        mu, logvar = model.encoder(x)
        for i in range(3):
            z = mu[i] + torch.exp(0.5 * logvar[i]) * eps[i]
            cond = model.decoder.features(z)
            log_px = model.pixelcnn.log_prob(x[i:i + 1].expand(6, -1, -1, -1), cond=cond).double().flatten(1).sum(1)
            log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z.double()).sum(1)
            log_qz = torch.distributions.Normal(mu[i].double(), torch.exp(0.5 * logvar[i].double())).log_prob(
                z.double()).sum(1)
            lw = log_px + log_pz - log_qz
            assert torch.allclose(b["log_w"][i], lw, atol=1e-4)
            assert abs(float(b["iwae"][i]) - float(torch.logsumexp(lw, 0) - math.log(6))) < 1e-4
    # Jensen on the same samples: log mean exp >= mean
    assert bool((b["iwae"] >= b["log_w"].mean(1) - 1e-9).all())


def test_forward_is_the_elbo_in_eval_and_respects_the_free_bits_floor():
    model = tiny_pixelvae(1, 4, 5, 5, free_bits=50.0)  # a floor no dimension reaches
    x = torch.randint(0, 5, (4, 1, 4, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eps = torch.randn((4, 2), generator=torch.Generator().manual_seed(0))
        mu, logvar = model.encoder(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        elbo = model.log_px(x, z) - VAE.kl(mu, logvar)
        assert torch.allclose(model.eval()(x), elbo, atol=1e-5)  # eval: the true ELBO, whatever the floor
    model.train()
    torch.manual_seed(3)
    out = model(x)
    torch.manual_seed(3)
    eps = torch.randn((4, 2))
    with torch.no_grad():
        z = mu + torch.exp(0.5 * logvar) * eps
        want = model.log_px(x, z) - 2 * 50.0  # every dimension under the floor costs the floor
    assert torch.allclose(out.detach(), want, atol=1e-4)
    out.sum().backward()  # the floor is a constant: the encoder's gradient is log p(x|z)'s alone
    g_floor = model.encoder.out.weight.grad.clone()
    model.zero_grad()
    mu, logvar = model.encoder(x)
    model.log_px(x, mu + torch.exp(0.5 * logvar) * eps).sum().backward()
    assert torch.allclose(g_floor, model.encoder.out.weight.grad, atol=1e-6)
    assert float(g_floor.abs().max()) > 0


def test_decoder_is_causal_given_the_map():
    model = tiny_pixelvae(3, 4, 4, 4, pixel_hidden=6, head_hidden=6)
    audit = audit_model(model.pixelcnn, (3, 4, 4))
    assert audit.violations == 0 and audit.checked > 0
